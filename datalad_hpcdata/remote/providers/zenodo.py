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

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Optional, Tuple
from urllib.parse import quote, unquote, urlsplit

from ..entries import Checksum, Entry, ProgressFn
from ..errors import HpcdataError, NotFound
from ..names import safe_relpath
from ..transfer import parse_checksum

if TYPE_CHECKING:
    from ..http import HttpClient

DEFAULT_BASE = "https://zenodo.org"

_HTTP_PATHS = [
    re.compile(r"^/api/records/(?P<rec>\d+)/files/(?P<key>.+)/content$"),
    re.compile(r"^/records?/(?P<rec>\d+)/files/(?P<key>.+)$"),
    re.compile(r"^/api/records/(?P<rec>\d+)/?$"),
    re.compile(r"^/records?/(?P<rec>\d+)/?$"),
]

# (file key, size or None, checksum or None) of one file of a record
FileInfo = Tuple[str, Optional[int], Optional[Checksum]]


def parse_zenodo_scheme(url: str) -> tuple[str, str | None] | None:
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
        raise HpcdataError(
            "malformed Zenodo URL %r: expected zenodo://RECORD[/FILE]" % url)
    return rec, unquote(key) if key else None


class Zenodo:
    def __init__(self, http: HttpClient, base_url: str | None = None,
                 token: str | None = None) -> None:
        self.http = http
        self.base = (base_url or DEFAULT_BASE).rstrip("/")
        self.token = (token if token is not None
                      else os.environ.get("ZENODO_TOKEN"))
        if self.token:
            self.http.session.headers["Authorization"] = (
                "Bearer " + self.token)

    # -- URLs -------------------------------------------------------------
    def parse(self, url: str) -> tuple[str, str | None] | None:
        """(record, key or None) for any accepted form, None if not Zenodo."""
        parsed = parse_zenodo_scheme(url)
        if parsed is not None:
            return parsed
        return self.parse_http(url)

    def parse_http(self, url: str) -> tuple[str, str | None] | None:
        """(record, key or None) for a URL under the base, else None."""
        base = urlsplit(self.base)
        parts = urlsplit(url)
        if ((parts.scheme.lower(), parts.netloc.lower())
                != (base.scheme.lower(), base.netloc.lower())):
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

    def content_url(self, record_id: str, key: str) -> str:
        return "%s/api/records/%s/files/%s/content" % (
            self.base, record_id, quote(key, safe="/"))

    def html_url(self, record_id: str, key: str) -> str:
        return "%s/records/%s/files/%s?download=1" % (
            self.base, record_id, quote(key, safe="/"))

    # -- metadata ---------------------------------------------------------
    def record(self, record_id: str) -> Any:
        """Record JSON for ``record_id``; a concept id gives the latest."""
        url = "%s/api/records/%s" % (self.base, record_id)
        try:
            return self.http.get_json(url)
        except NotFound:
            pass
        # Concept ids are not records in InvenioRDM; ask for the latest one.
        try:
            return self.http.get_json(url + "/versions/latest")
        except NotFound:
            raise NotFound("Zenodo record %s does not exist at %s"
                           % (record_id, self.base))

    def files(self, record_id: str) -> tuple[str, list[FileInfo]]:
        """(version id, [(key, size, checksum)]) for a record or concept."""
        rec = self.record(record_id)
        version = str(rec.get("id") or rec.get("recid") or record_id)
        if not version.isdigit():
            raise HpcdataError(
                "Zenodo returned an unusable record id %r" % version)
        raw = rec.get("files")
        if isinstance(raw, dict):
            raw = list((raw.get("entries") or {}).values())
        if not isinstance(raw, list):
            raw = []
        out = []
        source = "Zenodo record %s" % version
        for item in raw:
            if not isinstance(item, dict):
                continue
            key = item.get("key") or item.get("filename")
            if key is None:
                continue
            safe_relpath(key, source)
            out.append((key, _size(item.get("size", item.get("filesize"))),
                        parse_checksum(item.get("checksum"))))
        return version, out

    # -- entries ----------------------------------------------------------
    def entries(self, url: str) -> list[Entry]:
        parsed = self.parse(url)
        if parsed is None:
            raise HpcdataError("not a Zenodo URL: %s" % url)
        return self.entries_for(*parsed)

    def entries_for(self, record_id: str,
                    key: str | None = None) -> list[Entry]:
        if key is not None:
            safe_relpath(key, "the URL")
        version, files = self.files(record_id)
        if key is None:
            if not files:
                raise NotFound("Zenodo record %s has no files" % record_id)
            return [self._entry(version, *item) for item in files]
        for item in files:
            if item[0] == key:
                return [self._entry(version, *item)]
        raise NotFound("Zenodo record %s has no file %r" % (version, key))

    def _entry(self, version: str, key: str, size: int | None,
               checksum: Checksum | None) -> Entry:
        content = self.content_url(version, key)

        def fetch(path: str, progress: ProgressFn | None) -> int:
            return self.http.download(content, path, size=size,
                                      checksum=checksum, progress=progress)

        pin = "zenodo://%s/%s" % (version, quote(key, safe="/"))
        return Entry(url=pin, filename=key, size=size, checksum=checksum,
                     fetch=fetch, pin=pin,
                     public_url=self.html_url(version, key))


def _size(value: object) -> int | None:
    """A record's file size (number or digit string), else None."""
    if isinstance(value, (int, str)) and str(value).isdigit():
        return int(value)
    return None
