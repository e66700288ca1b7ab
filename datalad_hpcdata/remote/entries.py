"""What a resolved URL turns into: one downloadable file."""


class Entry:
    """One file behind a URL.

    ``url``: canonical URL for this one file (used in CHECKURL-MULTI);
    ``filename``: suggested relative file name; ``size`` in bytes or None;
    ``checksum``: ``(algorithm, hexdigest)`` published by the service or None;
    ``pin``: URL that names exactly this version (recorded per key so a later
    ``get`` fetches the same version); ``fetch(path, progress)`` downloads and
    verifies into ``path`` (resuming), ``public_url``: an https URL or None.
    """

    def __init__(self, url, filename, size, checksum, fetch, pin=None, public_url=None):
        self.url = url
        self.filename = filename
        self.size = size
        self.checksum = checksum
        self.fetch = fetch
        self.pin = pin or url
        self.public_url = public_url

    @property
    def checksum_text(self):
        return "{}:{}".format(*self.checksum) if self.checksum else ""

    def __repr__(self):
        return "Entry({!r}, size={!r}, checksum={!r})".format(self.url, self.size, self.checksum_text)
