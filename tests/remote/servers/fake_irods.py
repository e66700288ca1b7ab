"""A stand-in for ``irods.session.iRODSSession`` backed by a local directory.

Implements the subset of the python-irodsclient 3.x session API the remote
uses: ``data_objects.exists/get/open/chksum/unlink/move`` and
``collections.exists/create``, raising python-irodsclient's own exception
classes.  Logical path ``/zone/a/b`` lives at ``$HPCDATA_FAKE_IRODS_ROOT/zone/a/b``.

Knobs (environment, read per session so git-annex's child process sees them):
``HPCDATA_FAKE_IRODS_PASSWORD``: if set, sessions with another password fail
every call with CAT_INVALID_AUTHENTICATION;
``HPCDATA_FAKE_IRODS_CORRUPT``: if "1", reads return a flipped first byte;
``HPCDATA_FAKE_IRODS_CHECKSUM``: "sha2" (default) or "md5".
``fake_irods_remote.py`` runs the remote with this session in place of
python-irodsclient's.
"""

import base64
import hashlib
import os

from irods import exception as irods_exc


class FakeSession:
    def __init__(self, root, password=None):
        self.root = root
        self.password = password
        self.required = os.environ.get("HPCDATA_FAKE_IRODS_PASSWORD")
        self.corrupt = os.environ.get("HPCDATA_FAKE_IRODS_CORRUPT") == "1"
        self.scheme = os.environ.get("HPCDATA_FAKE_IRODS_CHECKSUM", "sha2")
        self.data_objects = _DataObjects(self)
        self.collections = _Collections(self)

    def local(self, path):
        if not path.startswith("/") or ".." in path.split("/"):
            raise irods_exc.CAT_INVALID_ARGUMENT("bad path {}".format(path))
        self.check_auth()
        return os.path.join(self.root, path.lstrip("/"))

    def check_auth(self):
        if self.required is not None and self.password != self.required:
            raise irods_exc.CAT_INVALID_AUTHENTICATION("bad password")

    def cleanup(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


class _Obj:
    def __init__(self, path, size):
        self.path = path
        self.name = path.rsplit("/", 1)[-1]
        self.size = size
        self.checksum = None  # like a fresh object without a registered checksum


class _Reader:
    def __init__(self, handle, corrupt):
        self.handle = handle
        self.corrupt = corrupt

    def seek(self, offset, whence=0):
        return self.handle.seek(offset, whence)

    def read(self, n=-1):
        pos = self.handle.tell()
        data = self.handle.read(n)
        if self.corrupt and pos == 0 and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    def write(self, data):
        return self.handle.write(data)

    def close(self):
        self.handle.close()


class _DataObjects:
    def __init__(self, session):
        self.s = session

    def _object(self, path):
        """The local file of data object `path`; iRODS's error if none."""
        local = self.s.local(path)
        if not os.path.isfile(local):
            raise irods_exc.DataObjectDoesNotExist(path)
        return local

    def exists(self, path):
        return os.path.isfile(self.s.local(path))

    def get(self, path, local_path=None, **options):
        local = self._object(path)
        return _Obj(path, os.path.getsize(local))

    def open(self, path, mode, **options):
        local = self.s.local(path)
        if mode.startswith("r"):
            if not os.path.isfile(local):
                raise irods_exc.DataObjectDoesNotExist(path)
            return _Reader(open(local, "rb"), self.s.corrupt)
        if not os.path.isdir(os.path.dirname(local)):
            raise irods_exc.CollectionDoesNotExist(os.path.dirname(path))
        return _Reader(open(local, "wb"), False)

    def chksum(self, path, **options):
        local = self._object(path)
        with open(local, "rb") as handle:
            data = handle.read()
        if self.s.scheme == "md5":
            return hashlib.md5(data).hexdigest()
        return "sha2:" + base64.b64encode(hashlib.sha256(data).digest()).decode()

    def unlink(self, path, force=False, **options):
        local = self._object(path)
        os.unlink(local)

    def move(self, src, dest):
        a, b = self.s.local(src), self.s.local(dest)
        if not os.path.isfile(a):
            raise irods_exc.DataObjectDoesNotExist(src)
        if os.path.exists(b):
            raise irods_exc.CAT_NAME_EXISTS_AS_DATAOBJ(dest)
        os.rename(a, b)


class _Collections:
    def __init__(self, session):
        self.s = session

    def exists(self, path):
        return os.path.isdir(self.s.local(path))

    def create(self, path, recurse=True, **options):
        os.makedirs(self.s.local(path), exist_ok=True)
