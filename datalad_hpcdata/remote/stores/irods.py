"""iRODS data objects: a key store and ``irods://ZONE/PATH`` URLs.

URL form: ``irods://ZONE/PATH`` names the logical path ``/ZONE/PATH``.  The
server to talk to is *not* part of the URL; it comes from the iRODS
environment file (``irods-env-file=`` or ``$IRODS_ENVIRONMENT_FILE`` or
``~/.irods/irods_environment.json``), so the same URL works for every
member of a site and no host names or secrets end up in recorded URLs.

Password: ``$IRODS_PASSWORD``, else git-annex's local credential store
(filled at ``initremote`` from ``$IRODS_PASSWORD``), else the obfuscated
``~/.irods/.irodsA`` written by ``iinit`` (python-irodsclient reads it).

Store layout: ``{collection}/{key}``.  Uploads are written to
``{collection}/.hpcdata-tmp-{random}-{key}`` and renamed after the server
checksum of the temporary object matched the local file, so an object with
the final name is always complete.  Downloads resume by seeking in the data
object and are checked against the server checksum (``sha2:`` base64 SHA-256
or MD5 hex) before success is reported.

Verified only against a fake session object with the python-irodsclient
session API (see tests/remote/servers/fake_irods.py); not against a server.
"""

import base64
import hashlib
import importlib
import os
import uuid
from urllib.parse import quote, unquote

from ..entries import Entry
from ..errors import ConfigError, HpcdataError, NotFound, VerificationError

CHUNK = 1 << 20
FACTORY_ENV = "DATALAD_HPCDATA_IRODS_SESSION_FACTORY"  # "module:callable", for tests


def parse_irods(url):
    """``irods://zone/a/b`` -> "/zone/a/b"; None if not this scheme."""
    if not url.lower().startswith("irods://"):
        return None
    rest = url[len("irods://"):]
    zone, _, path = rest.partition("/")
    if not zone or not path or "@" in zone or ":" in zone:
        raise HpcdataError("malformed iRODS URL {!r}: expected irods://ZONE/PATH (the server comes "
                           "from the iRODS environment file)".format(url))
    logical = "/{}/{}".format(zone, unquote(path))
    if any(part in (".", "..") for part in logical.split("/")):
        raise HpcdataError("refusing iRODS path with '.' or '..' components: {!r}".format(logical))
    return logical


def checksum_matches(server_checksum, path):
    """Compare an iRODS checksum string with a local file.

    Returns True/False, or None when the server has no (known) checksum.
    """
    value = (server_checksum or "").strip()
    if not value:
        return None
    if value.startswith("sha2:"):
        digest = hashlib.sha256()
        expected = value[len("sha2:"):]
        render = lambda d: base64.b64encode(d.digest()).decode()  # noqa: E731
    else:
        digest = hashlib.md5()
        expected = value.split(":", 1)[-1].lower()
        render = lambda d: d.hexdigest()  # noqa: E731
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return render(digest) == expected


def _irods_error(exc, what):
    """Translate python-irodsclient exceptions into our failure types."""
    name = type(exc).__name__
    if name in ("DataObjectDoesNotExist", "CollectionDoesNotExist", "CAT_NO_ROWS_FOUND",
                "DoesNotExist"):
        return NotFound("{}: does not exist in iRODS".format(what))
    if name.startswith(("CAT_INVALID_AUTHENTICATION", "CAT_INVALID_USER", "CAT_PASSWORD",
                        "PAM_AUTH", "CAT_INVALID_CLIENT_USER")) or "AUTH" in name:
        return HpcdataError("{}: iRODS authentication failed ({}); check IRODS_PASSWORD, "
                            "'iinit' or the iRODS environment file".format(what, name))
    if name == "CAT_NO_ACCESS_PERMISSION":
        return HpcdataError("{}: permission denied by iRODS".format(what))
    if name == "NetworkException" or isinstance(exc, (OSError, ConnectionError)):
        return HpcdataError("{}: cannot reach the iRODS server ({})".format(what, exc or name))
    if type(exc).__module__.startswith("irods"):
        return HpcdataError("{}: iRODS error {} {}".format(what, name, exc).strip())
    return None


class Irods:
    def __init__(self, env_file=None, password=None):
        self.env_file = (env_file or os.environ.get("IRODS_ENVIRONMENT_FILE")
                         or os.path.expanduser("~/.irods/irods_environment.json"))
        self.password = password
        self._session = None

    def session(self):
        if self._session is None:
            factory = os.environ.get(FACTORY_ENV)
            if factory:
                module, _, name = factory.partition(":")
                self._session = getattr(importlib.import_module(module), name)(
                    env_file=self.env_file, password=self.password)
            else:
                try:
                    from irods.session import iRODSSession
                except ImportError:
                    raise ConfigError("iRODS support needs python-irodsclient: "
                                      "pip install 'datalad-hpcdata[irods]'")
                if not os.path.exists(self.env_file):
                    raise ConfigError("iRODS environment file {} not found (run iinit or set "
                                      "irods-env-file=)".format(self.env_file))
                kwargs = {"irods_env_file": self.env_file}
                if self.password:
                    kwargs["password"] = self.password
                self._session = self.call("connect", iRODSSession, **kwargs)
        return self._session

    def call(self, what, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except HpcdataError:
            raise
        except Exception as exc:
            translated = _irods_error(exc, what)
            if translated is None:
                raise
            raise translated from exc

    # -- objects ----------------------------------------------------------
    def exists(self, path):
        s = self.session()
        return bool(self.call(path, s.data_objects.exists, path))

    def info(self, path):
        """(size, server checksum or "") of a data object."""
        s = self.session()
        obj = self.call(path, s.data_objects.get, path)
        checksum = getattr(obj, "checksum", None) or self.call(path, s.data_objects.chksum, path)
        return int(obj.size), checksum or ""

    def ensure_collection(self, collection):
        s = self.session()
        if not self.call(collection, s.collections.exists, collection):
            self.call(collection, s.collections.create, collection, recurse=True)

    def download(self, path, local, progress=None):
        size, checksum = self.info(path)
        have = os.path.getsize(local) if os.path.exists(local) else 0
        if have > size:
            have = 0
        s = self.session()
        if have < size:
            stream = self.call(path, s.data_objects.open, path, "r")
            try:
                with open(local, "ab" if have else "wb") as out:
                    if have:
                        stream.seek(have)
                    for _ in range(size // CHUNK + 2):  # bounded: at most size/CHUNK reads
                        chunk = self.call(path, stream.read, CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        have += len(chunk)
                        if progress is not None:
                            progress(have)
            finally:
                stream.close()
        if have != size:
            raise HpcdataError("{}: transfer truncated: received {} of {} bytes"
                               .format(path, have, size))
        if checksum_matches(checksum, local) is False:
            with open(local, "wb"):
                pass
            raise VerificationError("{}: checksum mismatch against the iRODS server checksum {}; "
                                    "the data was discarded".format(path, checksum))
        return have

    def upload(self, local, path, progress=None):
        """Write to a temporary object, verify the server checksum, rename."""
        s = self.session()
        collection, _, name = path.rpartition("/")
        tmp = "{}/.hpcdata-tmp-{}-{}".format(collection, uuid.uuid4().hex[:12], name)
        done = 0
        try:
            stream = self.call(tmp, s.data_objects.open, tmp, "w")
            try:
                with open(local, "rb") as handle:
                    for chunk in iter(lambda: handle.read(CHUNK), b""):
                        self.call(tmp, stream.write, chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done)
            finally:
                stream.close()
            checksum = self.call(tmp, s.data_objects.chksum, tmp)
            if checksum_matches(checksum, local) is not True:
                raise VerificationError("{}: server checksum {!r} of the uploaded object does not "
                                        "match the local file".format(path, checksum))
            if self.exists(path):
                self.call(path, s.data_objects.unlink, path, force=True)
            self.call(path, s.data_objects.move, tmp, path)
        except BaseException:
            try:
                if s.data_objects.exists(tmp):
                    s.data_objects.unlink(tmp, force=True)
            except Exception:
                pass
            raise

    def delete(self, path):
        if self.exists(path):
            s = self.session()
            self.call(path, s.data_objects.unlink, path, force=True)

    # -- URL entries --------------------------------------------------------
    def entries(self, url):
        path = parse_irods(url)
        size, checksum = self.info(path)

        def fetch(local, progress):
            return self.download(path, local, progress)

        pub = None
        if checksum.startswith("sha2:"):
            check = ("sha256", base64.b64decode(checksum[5:]).hex())
        elif checksum:
            check = ("md5", checksum.split(":", 1)[-1].lower())
        else:
            check = None
        return [Entry(url="irods://" + quote(path.lstrip("/"), safe="/"),
                      filename=path.rsplit("/", 1)[-1], size=size, checksum=check,
                      fetch=fetch, public_url=pub)]


class IrodsStore:
    """Annex keys stored as data objects ``{collection}/{key}``."""

    def __init__(self, irods, collection):
        if not collection or not collection.startswith("/"):
            raise ConfigError("store=irods needs irods-collection=/ZONE/PATH")
        self.irods = irods
        self.collection = collection.rstrip("/")

    def name(self, key):
        return "{}/{}".format(self.collection, key)

    def setup(self):
        self.irods.ensure_collection(self.collection)

    def store(self, key, path, progress):
        self.irods.upload(path, self.name(key), progress)

    def retrieve(self, key, path, progress):
        self.irods.download(self.name(key), path, progress)

    def present(self, key):
        return self.irods.exists(self.name(key))

    def remove(self, key):
        self.irods.delete(self.name(key))

    def public_url(self, key):
        return None

    def describe(self):
        return "iRODS collection {}".format(self.collection)
