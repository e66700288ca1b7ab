"""Zenodo (InvenioRDM) records: URL parsing, metadata and verified download.

Accepted URL forms (RECORD is the numeric record id, FILE the file key,
which may contain ``/``; percent-escapes in FILE are decoded):

* ``zenodo://RECORD/FILE`` and ``zenodo://RECORD?FILE``
* ``zenodo://RECORD`` -- every file of the record
* ``{base}/records/RECORD/files/FILE?download=1`` (also ``/record/``),
  ``{base}/api/records/RECORD/files/FILE/content``, ``{base}/records/RECORD``

where ``{base}`` is the configured Zenodo URL (default https://zenodo.org).
A concept record id (all versions) resolves to its latest version; the
version used is reported as the entry's ``pin`` (``zenodo://VERSION/FILE``).
"""

import os
import re
from urllib.parse import quote, unquote, urlsplit

from ..entries import Entry
from ..errors import HpcdataError, NotFound
from ..http import parse_checksum
from ..names import safe_relpath

DEFAULT_BASE = "https://zenodo.org"

_HTTP_PATHS = [
    re.compile(r"^/api/records/(?P<rec>\d+)/files/(?P<key>.+)/content$"),
    re.compile(r"^/records?/(?P<rec>\d+)/files/(?P<key>.+)$"),
    re.compile(r"^/api/records/(?P<rec>\d+)/?$"),
    re.compile(r"^/records?/(?P<rec>\d+)/?$"),
]


def parse_zenodo_scheme(url):
    """``zenodo://R/F`` -> ("R", "F" or None); None if not this scheme."""
    if not url.lower().startswith("zenodo://"):
        return None
    rest = url[len("zenodo://"):]
    if "?" in rest:
        rec, _, key = rest.partition("?")
    else:
        rec, _, key = rest.partition("/")
    rec = rec.strip("/")
    if not rec.isdigit():
        raise HpcdataError("malformed Zenodo URL {!r}: expected zenodo://RECORD[/FILE]".format(url))
    key = unquote(key) if key else None
    return rec, key


class Zenodo:
    def __init__(self, http, base_url=None, token=None):
        self.http = http
        self.base = (base_url or DEFAULT_BASE).rstrip("/")
        self.token = token if token is not None else os.environ.get("ZENODO_TOKEN")
        if self.token:
            self.http.session.headers["Authorization"] = "Bearer " + self.token
        self._latest = {}

    # -- URLs -------------------------------------------------------------
    def parse(self, url):
        """(record, key or None) for any accepted form, None if not Zenodo."""
        parsed = parse_zenodo_scheme(url)
        if parsed is not None:
            return parsed
        return self.parse_http(url)

    def parse_http(self, url):
        base = urlsplit(self.base)
        parts = urlsplit(url)
        if (parts.scheme.lower(), parts.netloc.lower()) != (base.scheme.lower(), base.netloc.lower()):
            return None
        path = parts.path
        prefix = base.path.rstrip("/")
        if prefix:
            if not path.startswith(prefix + "/"):
                return None
            path = path[len(prefix):]
        for pattern in _HTTP_PATHS:
            match = pattern.match(path)
            if match:
                key = match.groupdict().get("key")
                return match.group("rec"), unquote(key) if key else None
        return None

    def content_url(self, record_id, key):
        return "{}/api/records/{}/files/{}/content".format(self.base, record_id, quote(key, safe="/"))

    def html_url(self, record_id, key):
        return "{}/records/{}/files/{}?download=1".format(self.base, record_id, quote(key, safe="/"))

    # -- metadata ---------------------------------------------------------
    def record(self, record_id):
        """Record JSON for ``record_id``; a concept id gives the latest version."""
        url = "{}/api/records/{}".format(self.base, record_id)
        try:
            return self.http.get_json(url)
        except NotFound:
            pass
        # Concept ids are not records in InvenioRDM; ask for the latest version.
        try:
            return self.http.get_json(url + "/versions/latest")
        except NotFound:
            raise NotFound("Zenodo record {} does not exist at {}".format(record_id, self.base))

    def files(self, record_id):
        """(version id, [(key, size, checksum)]) for a record or concept id."""
        rec = self.record(record_id)
        version = str(rec.get("id") or rec.get("recid") or record_id)
        if not version.isdigit():
            raise HpcdataError("Zenodo returned an unusable record id {!r}".format(version))
        raw = rec.get("files")
        if isinstance(raw, dict):
            raw = list((raw.get("entries") or {}).values())
        if not isinstance(raw, list):
            raw = []
        out = []
        source = "Zenodo record {}".format(version)
        for item in raw:
            if not isinstance(item, dict):
                continue
            key = item.get("key") or item.get("filename")
            if key is None:
                continue
            safe_relpath(key, source)
            size = item.get("size", item.get("filesize"))
            size = int(size) if isinstance(size, (int, str)) and str(size).isdigit() else None
            out.append((key, size, parse_checksum(item.get("checksum"))))
        return version, out

    # -- entries ----------------------------------------------------------
    def entries(self, url):
        parsed = self.parse(url)
        if parsed is None:
            raise HpcdataError("not a Zenodo URL: {}".format(url))
        return self.entries_for(*parsed)

    def entries_for(self, record_id, key=None):
        if key is not None:
            safe_relpath(key, "the URL")
        version, files = self.files(record_id)
        if key is None:
            if not files:
                raise NotFound("Zenodo record {} has no files".format(record_id))
            return [self._entry(version, *item) for item in files]
        for item in files:
            if item[0] == key:
                return [self._entry(version, *item)]
        raise NotFound("Zenodo record {} has no file {!r}".format(version, key))

    def _entry(self, version, key, size, checksum):
        content = self.content_url(version, key)

        def fetch(path, progress):
            return self.http.download(content, path, size=size, checksum=checksum,
                                      progress=progress)

        pin = "zenodo://{}/{}".format(version, quote(key, safe="/"))
        return Entry(url=pin, filename=key, size=size, checksum=checksum, fetch=fetch,
                     pin=pin, public_url=self.html_url(version, key))
