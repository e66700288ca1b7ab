"""One lock per repository for every git/annex step and job store write.

Two kinds, chosen by the file system the git directory is on
(:func:`lock_mode`; ``DATALAD_HPCDATA_LOCK=flock|file`` forces one):

* ``flock`` on local file systems: an advisory ``flock`` the kernel
  releases when the holder dies, so a killed command never leaves a stale
  lock behind;
* ``file`` on network file systems (NFS, Lustre, GPFS, BeeGFS, CephFS,
  CIFS, ...), where ``flock`` may be missing (Lustre without the ``flock``
  mount option), node-local only (``localflock``) or unreliable: a lock
  file created atomically with ``link()``, holding its holder's host, pid,
  process start time and command.  The holder touches it every few seconds
  (heartbeat).  A lock whose holder is a dead process on this host is
  stale at once; one from another host is stale when its heartbeat has not
  moved for ``DATALAD_HPCDATA_LOCK_STALE`` seconds (default 120; measured
  on this host's clock, so clock skew between hosts does not matter).

The lock is re-entrant within a process.  Waiting and timing out name the
holder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path

from .lockfile import (
    FileLock,
    LockTimeout,
    Waiter,
    holder_info,
    pid_alive,
    read_holder,
)

__all__ = ["LockTimeout", "lock_mode", "pid_alive", "repository_lock"]

lgr = logging.getLogger("datalad.hpcdata.lock")

MODE_ENV = "DATALAD_HPCDATA_LOCK"
NETWORK_FS = frozenset((
    "nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs",
    "ceph", "glusterfs", "afs", "ocfs2", "gfs2", "9p", "panfs", "wekafs",
    "orangefs", "pvfs2", "quobyte", "vxfs"))
# flock errors that mean "not supported here", not "held by someone"
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _unescape(field: str) -> str:
    """Mount points in /proc/mounts escape space, tab, newline, \\."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_type(path: str | os.PathLike) -> str:
    """The type of the file system `path` is on ('' if unknown)."""
    real = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = _unescape(parts[1])
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) \
                        and len(mnt) >= len(best):
                    best, fstype = mnt, parts[2]
    except OSError:
        return ""
    return fstype


def is_network_fs(fstype: str) -> bool:
    return fstype in NETWORK_FS or fstype.startswith("fuse")


def lock_mode(path: str | os.PathLike) -> str:
    """'flock' or 'file' for a lock in directory `path`."""
    forced = os.environ.get(MODE_ENV, "auto").strip().lower()
    if forced in ("flock", "file"):
        return forced
    if forced not in ("", "auto"):
        raise ValueError("%s must be auto, flock or file, not %r"
                         % (MODE_ENV, forced))
    return "file" if is_network_fs(filesystem_type(path)) else "flock"


class FlockLock:
    """flock on a file; holder info written into it for messages."""

    def __init__(self, path: Path, command: str = ""):
        self.path, self.command = path, command
        self.fd = None

    def acquire(self, timeout: float, poll: float) -> None:
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        waiter = Waiter(self.path, timeout, poll)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                waiter.wait(read_holder(self.path))
            data = json.dumps(holder_info(self.command)).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


_guard = threading.Lock()
_held: dict = {}    # path -> [RLock, depth, lock object]


def lock_path(git_dir) -> Path:
    return Path(git_dir) / "datalad-hpcdata" / "repo.lock"


@contextmanager
def repository_lock(git_dir, timeout: float = 3600.0, poll: float = 0.05,
                    command: str = ""):
    """Hold the repository lock (re-entrant within this process)."""
    path = lock_path(git_dir)
    key = str(path)
    with _guard:
        entry = _held.setdefault(key, [threading.RLock(), 0, None])
    rlock = entry[0]
    if not rlock.acquire(timeout=timeout):
        raise LockTimeout("could not get the repository lock %s within "
                          "%.0f s (held by another thread)" % (path, timeout))
    try:
        if entry[1] == 0:
            entry[2] = _acquire(path, timeout, poll, command)
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                lock, entry[2] = entry[2], None
                lock.release()
    finally:
        rlock.release()


def _acquire(path: Path, timeout: float, poll: float, command: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    if lock_mode(path.parent) == "flock":
        lock = FlockLock(path, command)
        try:
            lock.acquire(timeout, poll)
            return lock
        except OSError as e:
            if e.errno not in UNSUPPORTED:
                raise
            lgr.warning("flock is not supported on %s (%s); using a lock "
                        "file instead", path.parent, e.strerror)
        path = path.with_name("repo.lockfile")
    else:
        path = path.with_name("repo.lockfile")
    lock = FileLock(path, command)
    lock.acquire(timeout, poll)
    return lock
