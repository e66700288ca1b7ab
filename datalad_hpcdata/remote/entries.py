"""What a resolved URL turns into: one downloadable file (an ``Entry``)."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

# ``(algorithm, hexdigest)`` as published by a service
Checksum = Tuple[str, str]
# called with the cumulative number of bytes transferred so far
ProgressFn = Callable[[int], object]
# ``fetch(path, progress)``: download and verify into ``path``; bytes written
FetchFn = Callable[[str, Optional[ProgressFn]], int]


class Entry:
    """One file behind a URL.

    ``url``: canonical URL for this one file (used in CHECKURL-MULTI);
    ``filename``: suggested relative file name; ``size`` in bytes or None;
    ``checksum``: ``(algorithm, hexdigest)`` published by the service or None;
    ``pin``: URL that names exactly this version (recorded per key so a later
    ``get`` fetches the same version); ``fetch(path, progress)`` downloads and
    verifies into ``path`` (resuming), ``public_url``: an https URL or None.
    """

    def __init__(self, url: str, filename: str, size: int | None,
                 checksum: Checksum | None, fetch: FetchFn,
                 pin: str | None = None,
                 public_url: str | None = None) -> None:
        self.url = url
        self.filename = filename
        self.size = size
        self.checksum = checksum
        self.fetch = fetch
        self.pin = pin or url
        self.public_url = public_url

    @property
    def checksum_text(self) -> str:
        """``"algorithm:hexdigest"``, or "" without a checksum."""
        if not self.checksum:
            return ""
        return "%s:%s" % (self.checksum[0], self.checksum[1])

    def __repr__(self) -> str:
        return "Entry(%r, size=%r, checksum=%r)" % (
            self.url, self.size, self.checksum_text)
