"""vdi backend views: ``vdi://NAMESPACE/VIEW/FILE``, ``vdi://NAMESPACE/VIEW``.

NAMESPACE is an alias for a vdi server base URL, configured with
``vdi-servers=NAME=URL[,NAME=URL...]`` (remote config) or the environment
variable ``DATALAD_HPCDATA_VDI_SERVERS`` (same syntax; wins over the
remote config for the aliases it names); parsed in ``remote/config.py``.

REST calls used (the vdi Flask backend):
``GET {base}/views/{view}/files`` (existence and listing) and
``GET {base}/download/{view}/{file}`` (content; ``HEAD`` for the size).
vdi stores no checksums, so a download is verified by its announced length;
the key's own hash is then checked by git-annex.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from ..entries import Entry, ProgressFn
from ..errors import ConfigError, HpcdataError, NotFound
from ..names import safe_relpath

if TYPE_CHECKING:
    from ..http import HttpClient


def parse_vdi(url: str) -> tuple[str, str, str | None] | None:
    """``vdi://ns/view[/file]`` -> (ns, view, file or None)."""
    if not url.lower().startswith("vdi://"):
        return None
    parts = url[len("vdi://"):].split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise HpcdataError("malformed vdi URL %r: expected "
                           "vdi://NAMESPACE/VIEW/FILE" % url)
    name = unquote(parts[2]) if len(parts) == 3 and parts[2] else None
    return parts[0], unquote(parts[1]), name


class Vdi:
    def __init__(self, http: HttpClient, servers: dict[str, str]) -> None:
        self.http = http
        self.servers = servers

    def base(self, namespace: str) -> str:
        try:
            return self.servers[namespace]
        except KeyError:
            known = ", ".join(sorted(self.servers)) or "none configured"
            raise ConfigError(
                "unknown vdi namespace %r (known: %s); set vdi-servers=%s=URL"
                % (namespace, known, namespace))

    def entries(self, url: str) -> list[Entry]:
        namespace, view, name = parse_vdi(url)
        base = self.base(namespace)
        names = self._listing(base, view)
        if name is not None:
            safe_relpath(name, "the URL")
            if name not in names:
                raise NotFound("vdi view %s has no file %r" % (view, name))
            return [self._entry(namespace, base, view, name)]
        source = "vdi view %s at %s" % (view, base)
        for fname in names:
            safe_relpath(fname, source)
        if not names:
            raise NotFound("vdi view %s has no files" % view)
        return [self._entry(namespace, base, view, fname) for fname in names]

    def _listing(self, base: str, view: str) -> list[str]:
        """File names of ``view`` in listing order, without repeats."""
        listing = self.http.get_json(
            "%s/views/%s/files" % (base, quote(view, safe="")))
        files = listing.get("files") if isinstance(listing, dict) else None
        if not isinstance(files, list):
            raise HpcdataError(
                "vdi server %s returned an unexpected file listing" % base)
        names: list[str] = []
        for item in files:
            fname = item.get("filename") if isinstance(item, dict) else None
            if fname and fname not in names:
                names.append(fname)
        return names

    def _entry(self, namespace: str, base: str, view: str,
               name: str) -> Entry:
        download = "%s/download/%s/%s" % (
            base, quote(view, safe=""), quote(name, safe=""))
        size = self.http.head_size(download)
        url = "vdi://%s/%s/%s" % (
            namespace, quote(view, safe=""), quote(name, safe=""))

        def fetch(path: str, progress: ProgressFn | None) -> int:
            return self.http.download(download, path, size=size,
                                      checksum=None, progress=progress)

        return Entry(url=url, filename=name, size=size, checksum=None,
                     fetch=fetch, public_url=download)
