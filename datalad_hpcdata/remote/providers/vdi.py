"""vdi backend views: ``vdi://NAMESPACE/VIEW/FILE`` and ``vdi://NAMESPACE/VIEW``.

NAMESPACE is an alias for a vdi server base URL, configured with
``vdi-servers=NAME=URL[,NAME=URL...]`` (remote config) or the environment
variable ``DATALAD_HPCDATA_VDI_SERVERS`` (same syntax; wins over the
remote config for the aliases it names).

REST calls used (the vdi Flask backend):
``GET {base}/views/{view}/files`` (existence and listing) and
``GET {base}/download/{view}/{file}`` (content; ``HEAD`` for the size).
vdi stores no checksums, so a download is verified by its announced length;
the key's own hash is then checked by git-annex.
"""

from urllib.parse import quote, unquote

from ..entries import Entry
from ..errors import ConfigError, HpcdataError, NotFound
from ..names import safe_relpath


def parse_servers(text):
    """``"a=http://x,b=http://y"`` -> {"a": "http://x", "b": "http://y"}."""
    servers = {}
    for item in (text or "").replace(" ", ",").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, url = item.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ConfigError("bad vdi-servers entry {!r}: expected NAME=http(s)://HOST[:PORT]"
                              .format(item))
        servers[name] = url.rstrip("/")
    return servers


def parse_vdi(url):
    """``vdi://ns/view[/file]`` -> (ns, view, file or None)."""
    if not url.lower().startswith("vdi://"):
        return None
    parts = url[len("vdi://"):].split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise HpcdataError("malformed vdi URL {!r}: expected vdi://NAMESPACE/VIEW/FILE".format(url))
    name = unquote(parts[2]) if len(parts) == 3 and parts[2] else None
    return parts[0], unquote(parts[1]), name


class Vdi:
    def __init__(self, http, servers):
        self.http = http
        self.servers = servers

    def base(self, namespace):
        try:
            return self.servers[namespace]
        except KeyError:
            known = ", ".join(sorted(self.servers)) or "none configured"
            raise ConfigError("unknown vdi namespace {!r} (known: {}); set vdi-servers={}=URL"
                              .format(namespace, known, namespace))

    def entries(self, url):
        namespace, view, name = parse_vdi(url)
        base = self.base(namespace)
        listing = self.http.get_json("{}/views/{}/files".format(base, quote(view, safe="")))
        files = listing.get("files") if isinstance(listing, dict) else None
        if not isinstance(files, list):
            raise HpcdataError("vdi server {} returned an unexpected file listing".format(base))
        names = []
        for item in files:
            fname = item.get("filename") if isinstance(item, dict) else None
            if fname and fname not in names:
                names.append(fname)
        source = "vdi view {} at {}".format(view, base)
        if name is not None:
            safe_relpath(name, "the URL")
            if name not in names:
                raise NotFound("vdi view {} has no file {!r}".format(view, name))
            return [self._entry(namespace, base, view, name)]
        for fname in names:
            safe_relpath(fname, source)
        if not names:
            raise NotFound("vdi view {} has no files".format(view))
        return [self._entry(namespace, base, view, fname) for fname in names]

    def _entry(self, namespace, base, view, name):
        download = "{}/download/{}/{}".format(base, quote(view, safe=""), quote(name, safe=""))
        size = self.http.head_size(download)
        url = "vdi://{}/{}/{}".format(namespace, quote(view, safe=""), quote(name, safe=""))

        def fetch(path, progress):
            return self.http.download(download, path, size=size, checksum=None, progress=progress)

        return Entry(url=url, filename=name, size=size, checksum=None, fetch=fetch,
                     public_url=download)
