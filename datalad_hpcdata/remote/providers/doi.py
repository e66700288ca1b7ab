"""DOI URLs: ``doi:DOI[/FILE]`` and ``doi://DOI[/FILE]``.

* Zenodo DOIs (``10.5281/zenodo.N``) map to Zenodo record N without any
  network call; the rest of the path is the file key.  A concept DOI
  resolves to the latest version (see :mod:`.zenodo`).
* Any other DOI is looked up with the DOI resolver's handle API
  (``{resolver}/api/handles/{doi}?type=URL``).  Because DOI suffixes may
  contain ``/``, the longest prefix the resolver knows is the DOI and the
  remainder the file.  The landing URL is then dispatched by host: URLs
  under the configured Zenodo base are handled as Zenodo records.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional, Tuple
from urllib.parse import quote

from ..errors import HpcdataError, NotFound

if TYPE_CHECKING:
    from ..entries import Entry
    from ..http import HttpClient
    from .zenodo import Zenodo

DEFAULT_RESOLVER = "https://doi.org"
ZENODO_DOI = re.compile(r"^10\.5281/zenodo\.(?P<rec>\d+)(?:/(?P<key>.*))?$",
                        re.IGNORECASE)
ZENODO_LANDING_DOI = re.compile(r"^/doi/10\.5281/zenodo\.(?P<rec>\d+)/?$",
                                re.IGNORECASE)
MAX_DOI_SEGMENTS = 8  # bound on prefixes tried against the handle API

# ("zenodo", record id, file key or None)
Target = Tuple[str, str, Optional[str]]


def strip_scheme(url: str) -> str | None:
    """``doi:X`` / ``doi://X`` -> X, else None."""
    low = url.lower()
    for prefix in ("doi://", "doi:"):
        if low.startswith(prefix):
            rest = url[len(prefix):].lstrip("/")
            if not rest.startswith("10."):
                raise HpcdataError(
                    "malformed DOI URL %r: a DOI starts with '10.'" % url)
            return rest
    return None


class DoiResolver:
    def __init__(self, http: HttpClient, zenodo: Zenodo,
                 resolver_url: str | None = None) -> None:
        self.http = http
        self.zenodo = zenodo
        self.base = (resolver_url or DEFAULT_RESOLVER).rstrip("/")

    def claims(self, url: str) -> bool:
        return url.lower().startswith("doi:")

    def target(self, url: str) -> Target:
        """("zenodo", record, key or None) for a DOI URL."""
        rest = strip_scheme(url)
        if rest is None:
            raise HpcdataError("not a DOI URL: %s" % url)
        match = ZENODO_DOI.match(rest)
        if match:
            return "zenodo", match.group("rec"), match.group("key") or None
        return self._via_handles(rest)

    def entries(self, url: str) -> list[Entry]:
        kind, record, key = self.target(url)
        return self.zenodo.entries_for(record, key)

    def _via_handles(self, rest: str) -> Target:
        segments = rest.split("/")
        # shortest DOI is "prefix/suffix" = 2 segments
        longest = min(len(segments), MAX_DOI_SEGMENTS)
        for count in range(longest, 1, -1):
            doi = "/".join(segments[:count])
            key = "/".join(segments[count:]) or None
            landing = self._landing(doi)
            if landing is None:
                continue
            return self._dispatch(doi, landing, key)
        raise NotFound("DOI %r is not registered at %s" % (rest, self.base))

    def _landing(self, doi: str) -> str | None:
        """The URL the handle API records for ``doi``, or None."""
        url = "%s/api/handles/%s?type=URL" % (self.base, quote(doi, safe="/"))
        try:
            reply = self.http.get_json(url)
        except NotFound:
            return None
        if not isinstance(reply, dict) or reply.get("responseCode") != 1:
            return None
        for value in reply.get("values") or []:
            if isinstance(value, dict) and value.get("type") == "URL":
                data = value.get("data") or {}
                landing = data.get("value") if isinstance(data, dict) else None
                if landing:
                    return str(landing)
        return None

    def _dispatch(self, doi: str, landing: str, key: str | None) -> Target:
        parsed = self.zenodo.parse_http(landing)
        if parsed is not None:
            return "zenodo", parsed[0], key if key is not None else parsed[1]
        # https://zenodo.org/doi/10.5281/zenodo.N (concept DOI landing page)
        zbase = self.zenodo.base
        if landing.startswith(zbase + "/"):
            match = ZENODO_LANDING_DOI.match(landing[len(zbase):])
            if match:
                return "zenodo", match.group("rec"), key
        raise HpcdataError(
            "DOI %s resolves to %s, which this remote cannot fetch from "
            "(supported: Zenodo at %s)" % (doi, landing, zbase))
