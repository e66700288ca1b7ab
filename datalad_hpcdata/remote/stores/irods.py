"""iRODS data objects: a key store and ``irods://ZONE/PATH`` URLs.

URL form: ``irods://ZONE/PATH`` names the logical path ``/ZONE/PATH``.  The
server to talk to is *not* part of the URL; it comes from the iRODS
environment file (``irods-env-file=`` or ``$IRODS_ENVIRONMENT_FILE`` or
``~/.irods/irods_environment.json``), so the same URL works for every
member of a site and no host names or secrets end up in recorded URLs.

Password: ``$IRODS_PASSWORD``, else git-annex's local credential store
(filled at ``initremote`` from ``$IRODS_PASSWORD``), else the obfuscated
``~/.irods/.irodsA`` written by ``iinit`` (python-irodsclient reads it).
The first two are looked up in ``remote/config.py``.

Store layout: ``{collection}/{key}``.  Uploads are written to
``{collection}/.hpcdata-tmp-{random}-{key}`` and renamed after the server
checksum of the temporary object matched the local file, so an object with
the final name is always complete.  Downloads resume by seeking in the data
object and are checked against the server checksum (``sha2:`` base64 SHA-256
or MD5 hex) before success is reported.  Both hash the data while it
streams; the local file is not read a second time.

python-irodsclient is imported only when the first session is opened.
Verified only against a fake session object with the python-irodsclient
session API (see tests/remote/servers/fake_irods.py, which the tests put in
place of ``Irods._connect``); not against a server.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from typing import Any, Callable, Iterator
from urllib.parse import quote, unquote

from ..entries import Checksum, Entry, ProgressFn
from ..errors import (
    ConfigError,
    HpcdataError,
    NotFound,
    VerificationError,
    translated_call,
)
from ..transfer import (
    check_length,
    copy_chunks,
    discard,
    hash_file,
    resume_offset,
)

CHUNK = 1 << 20


def parse_irods(url: str) -> str | None:
    """``irods://zone/a/b`` -> "/zone/a/b"; None if not this scheme."""
    if not url.lower().startswith("irods://"):
        return None
    rest = url[len("irods://"):]
    zone, _, path = rest.partition("/")
    if not zone or not path or "@" in zone or ":" in zone:
        raise HpcdataError(
            "malformed iRODS URL %r: expected irods://ZONE/PATH (the server "
            "comes from the iRODS environment file)" % url)
    logical = "/%s/%s" % (zone, unquote(path))
    if any(part in (".", "..") for part in logical.split("/")):
        raise HpcdataError("refusing iRODS path with '.' or '..' "
                           "components: %r" % logical)
    return logical


def _split_checksum(value: str) -> tuple[str, str]:
    """An iRODS checksum as (hashlib name, digest in the server's form).

    ``sha2:BASE64`` is a SHA-256 in base64; anything else is an MD5 in hex,
    optionally after a ``NAME:`` prefix.
    """
    if value.startswith("sha2:"):
        return "sha256", value[len("sha2:"):]
    return "md5", value.split(":", 1)[-1].lower()


def checksum_hasher(server_checksum: str | None) -> Any:
    """A hashlib object for the algorithm of an iRODS checksum, or None."""
    value = (server_checksum or "").strip()
    if not value:
        return None
    return hashlib.new(_split_checksum(value)[0])


def digest_matches(server_checksum: str | None, hashers: Any) -> bool | None:
    """Compare an iRODS checksum with data hashed into ``hashers``.

    ``hashers`` maps hashlib names to objects fed with the data (or is one
    such object).  True/False, or None when the server has no checksum.
    """
    value = (server_checksum or "").strip()
    if not value:
        return None
    algorithm, expected = _split_checksum(value)
    if not isinstance(hashers, dict):
        hashers = {hashers.name: hashers}
    digest = hashers[algorithm]
    if algorithm == "sha256":
        return base64.b64encode(digest.digest()).decode() == expected
    return digest.hexdigest() == expected


def checksum_matches(server_checksum: str | None, path: str) -> bool | None:
    """Compare an iRODS checksum string with a local file."""
    hasher = checksum_hasher(server_checksum)
    if hasher is None:
        return None
    return digest_matches(server_checksum, hash_file(hasher, path))


def published_checksum(server_checksum: str) -> Checksum | None:
    """An iRODS checksum as ``(algorithm, hexdigest)`` for an ``Entry``."""
    if not server_checksum:
        return None
    algorithm, digest = _split_checksum(server_checksum)
    if algorithm == "sha256":
        return algorithm, base64.b64decode(digest).hex()
    return algorithm, digest


def _irods_error(exc: Exception, what: str) -> HpcdataError | None:
    """Translate python-irodsclient exceptions into our failure types."""
    name = type(exc).__name__
    if name in ("DataObjectDoesNotExist", "CollectionDoesNotExist",
                "CAT_NO_ROWS_FOUND", "DoesNotExist"):
        return NotFound("%s: does not exist in iRODS" % what)
    if name.startswith(("CAT_INVALID_AUTHENTICATION", "CAT_INVALID_USER",
                        "CAT_PASSWORD", "PAM_AUTH",
                        "CAT_INVALID_CLIENT_USER")) or "AUTH" in name:
        return HpcdataError(
            "%s: iRODS authentication failed (%s); check IRODS_PASSWORD, "
            "'iinit' or the iRODS environment file" % (what, name))
    if name == "CAT_NO_ACCESS_PERMISSION":
        return HpcdataError("%s: permission denied by iRODS" % what)
    if name == "NetworkException" or isinstance(exc,
                                                (OSError, ConnectionError)):
        return HpcdataError("%s: cannot reach the iRODS server (%s)"
                            % (what, exc or name))
    if type(exc).__module__.startswith("irods"):
        return HpcdataError(
            ("%s: iRODS error %s %s" % (what, name, exc)).strip())
    return None


class Irods:
    def __init__(self, env_file: str | None = None,
                 password: str | None = None) -> None:
        self.env_file = (
            env_file or os.environ.get("IRODS_ENVIRONMENT_FILE")
            or os.path.expanduser("~/.irods/irods_environment.json"))
        self.password = password
        self._session = None

    def session(self) -> Any:
        """The iRODS session, opened on first use."""
        if self._session is None:
            self._session = self._connect()
        return self._session

    def _connect(self) -> Any:
        try:
            from irods.session import iRODSSession
        except ImportError:
            raise ConfigError("iRODS support needs python-irodsclient: "
                              "pip install 'datalad-hpcdata[irods]'")
        if not os.path.exists(self.env_file):
            raise ConfigError(
                "iRODS environment file %s not found (run iinit or set "
                "irods-env-file=)" % self.env_file)
        kwargs = {"irods_env_file": self.env_file}
        if self.password:
            kwargs["password"] = self.password
        return self.call("connect", iRODSSession, **kwargs)

    def call(self, what: str, func: Callable[..., Any], *args: Any,
             **kwargs: Any) -> Any:
        """``func(*args, **kwargs)`` with iRODS errors translated."""
        return translated_call(_irods_error, what, func, *args, **kwargs)

    # -- objects ----------------------------------------------------------
    def exists(self, path: str) -> bool:
        s = self.session()
        return bool(self.call(path, s.data_objects.exists, path))

    def info(self, path: str) -> tuple[int, str]:
        """(size, server checksum or "") of a data object."""
        s = self.session()
        obj = self.call(path, s.data_objects.get, path)
        checksum = (getattr(obj, "checksum", None)
                    or self.call(path, s.data_objects.chksum, path))
        return int(obj.size), checksum or ""

    def ensure_collection(self, collection: str) -> None:
        s = self.session()
        if not self.call(collection, s.collections.exists, collection):
            self.call(collection, s.collections.create, collection,
                      recurse=True)

    def download(self, path: str, local: str,
                 progress: ProgressFn | None = None) -> int:
        """Resumable download, verified by size and server checksum."""
        size, checksum = self.info(path)
        have = resume_offset(local, size)
        hasher = checksum_hasher(checksum)
        if not have:
            discard(local)
        elif hasher is not None:
            hash_file(hasher, local)  # the part already there
        s = self.session()
        if have < size:
            stream = self.call(path, s.data_objects.open, path, "r")
            try:
                with open(local, "ab") as out:
                    if have:
                        stream.seek(have)

                    def write(chunk: bytes) -> None:
                        out.write(chunk)
                        if hasher is not None:
                            hasher.update(chunk)

                    have = copy_chunks(self._read(path, stream, size),
                                       write, have, progress)
            finally:
                stream.close()
        check_length(path, have, size)
        if hasher is not None and digest_matches(checksum, hasher) is False:
            discard(local)
            raise VerificationError(
                "%s: checksum mismatch against the iRODS server checksum %s; "
                "the data was discarded" % (path, checksum))
        return have

    def _read(self, path: str, stream: Any, size: int) -> Iterator[bytes]:
        """Chunks of an open data object (bounded: size/CHUNK + 2 reads)."""
        for _ in range(size // CHUNK + 2):
            chunk = self.call(path, stream.read, CHUNK)
            if not chunk:
                return
            yield chunk

    def upload(self, local: str, path: str,
               progress: ProgressFn | None = None) -> None:
        """Write to a temporary object, verify the server checksum, rename."""
        s = self.session()
        collection, _, name = path.rpartition("/")
        tmp = "%s/.hpcdata-tmp-%s-%s" % (collection, uuid.uuid4().hex[:12],
                                         name)
        # the server may answer with either algorithm: hash with both
        hashers = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}

        def write(chunk: bytes) -> None:
            for hasher in hashers.values():
                hasher.update(chunk)
            self.call(tmp, stream.write, chunk)

        try:
            stream = self.call(tmp, s.data_objects.open, tmp, "w")
            try:
                with open(local, "rb") as handle:
                    copy_chunks(iter(lambda: handle.read(CHUNK), b""),
                                write, 0, progress)
            finally:
                stream.close()
            checksum = self.call(tmp, s.data_objects.chksum, tmp)
            if digest_matches(checksum, hashers) is not True:
                raise VerificationError(
                    "%s: server checksum %r of the uploaded object does not "
                    "match the local file" % (path, checksum))
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

    def delete(self, path: str) -> None:
        if self.exists(path):
            s = self.session()
            self.call(path, s.data_objects.unlink, path, force=True)

    # -- URL entries --------------------------------------------------------
    def entries(self, url: str) -> list[Entry]:
        path = parse_irods(url)
        size, checksum = self.info(path)

        def fetch(local: str, progress: ProgressFn | None) -> int:
            return self.download(path, local, progress)

        return [Entry(url="irods://" + quote(path.lstrip("/"), safe="/"),
                      filename=path.rsplit("/", 1)[-1], size=size,
                      checksum=published_checksum(checksum), fetch=fetch,
                      public_url=None)]


class IrodsStore:
    """Annex keys stored as data objects ``{collection}/{key}``."""

    def __init__(self, irods: Irods, collection: str) -> None:
        if not collection or not collection.startswith("/"):
            raise ConfigError("store=irods needs irods-collection=/ZONE/PATH")
        self.irods = irods
        self.collection = collection.rstrip("/")

    def name(self, key: str) -> str:
        return "%s/%s" % (self.collection, key)

    def setup(self) -> None:
        self.irods.ensure_collection(self.collection)

    def store(self, key: str, path: str, progress: ProgressFn | None) -> None:
        self.irods.upload(path, self.name(key), progress)

    def retrieve(self, key: str, path: str,
                 progress: ProgressFn | None) -> None:
        self.irods.download(self.name(key), path, progress)

    def present(self, key: str) -> bool:
        return self.irods.exists(self.name(key))

    def remove(self, key: str) -> None:
        self.irods.delete(self.name(key))

    def public_url(self, key: str) -> str | None:
        return None

    def describe(self) -> str:
        return "iRODS collection %s" % self.collection
