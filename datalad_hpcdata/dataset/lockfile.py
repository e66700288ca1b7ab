"""The lock-file lock, for file systems without a usable ``flock``.

The lock file is created atomically (``link()`` of a fully written unique
file), holds the holder's host, pid, process start time and command, and
is touched every few seconds by a heartbeat thread.  A lock whose holder is
a dead process on this host is stale at once; one from another host when
its heartbeat has not moved for ``DATALAD_HPCDATA_LOCK_STALE`` seconds
(default 120, measured on this host's clock).  A stale lock is removed by
one breaker at a time.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

lgr = logging.getLogger("datalad.hpcdata.lock")

STALE_ENV = "DATALAD_HPCDATA_LOCK_STALE"
STALE_AFTER = 120.0


class LockTimeout(RuntimeError):
    pass


def _stale_after() -> float:
    try:
        return float(os.environ.get(STALE_ENV) or STALE_AFTER)
    except ValueError:
        return STALE_AFTER


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (None if gone or a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Does process `pid` (started at `start`, if given) still run here?"""
    now = _start_time(pid)
    if now is None:
        if os.path.isdir("/proc/self"):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return start is None or start == now


def holder_info(command: str = "") -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid,
            "start": _start_time(pid), "since": time.time(),
            "command": command}


def describe(holder: dict | None) -> str:
    if not holder:
        return "an unknown process"
    since = holder.get("since")
    return "pid %s on host %s%s%s" % (
        holder.get("pid"), holder.get("host"),
        " (%s)" % holder["command"] if holder.get("command") else "",
        time.strftime(", since %Y-%m-%d %H:%M:%S", time.localtime(since))
        if since else "")


def read_holder(path: Path) -> dict | None:
    try:
        with open(path) as f:
            data = json.loads(f.read() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stamp(path: Path):
    """What changes when a lock file is replaced or its heartbeat moves."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def create_exclusive(path: Path, content: str) -> bool:
    """Create `path` with `content` atomically; False if it exists.

    The content is written to a unique file first and ``link()``ed into
    place, so the lock file is never seen half-written; this works on NFS
    (where ``O_EXCL`` was unreliable before NFSv3) and Lustre/GPFS."""
    tmp = path.with_name(".%s.%s.%d.%s" % (
        path.name, socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8]))
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, content.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(str(tmp), str(path))
        return True
    except FileExistsError:
        return False
    except OSError:
        # NFS may report an error for a link that was made (lost reply)
        try:
            return os.stat(str(tmp)).st_nlink == 2
        except OSError:
            return False
    finally:
        try:
            os.unlink(str(tmp))
        except OSError:
            pass


class Waiter:
    """Polling with backoff, a deadline and one 'waiting' message."""

    def __init__(self, path: Path, timeout: float, poll: float):
        self.path, self.timeout, self.poll = path, timeout, poll
        self.deadline = time.monotonic() + timeout
        self.announced = False

    def wait(self, holder: dict | None, hint: str = "") -> None:
        if not self.announced:
            lgr.info("waiting for the repository lock %s held by %s",
                     self.path, describe(holder))
            self.announced = True
        if time.monotonic() > self.deadline:
            raise LockTimeout(
                "could not get the repository lock %s within %.0f s: it is "
                "held by %s%s" % (self.path, self.timeout, describe(holder),
                                  hint))
        time.sleep(self.poll)
        self.poll = min(self.poll * 1.5, 1.0)


class FileLock:
    """The lock-file lock for file systems without a usable flock."""

    def __init__(self, path: Path, command: str = ""):
        self.path = path
        self.command = command
        self.stale_after = _stale_after()
        self._stop = threading.Event()
        self._beat = None
        self._mine = None

    def acquire(self, timeout: float, poll: float) -> None:
        waiter = Waiter(self.path, timeout, poll)
        seen = {}   # stamp -> monotonic time first seen
        while True:
            info = holder_info(self.command)
            if create_exclusive(self.path, json.dumps(info)):
                self._mine = _stamp(self.path)
                self._start_heartbeat()
                return
            holder = read_holder(self.path)
            stamp = _stamp(self.path)
            if stamp is not None and self._is_stale(holder, stamp, seen):
                self._break(stamp, holder)
                continue
            waiter.wait(holder, "; a lock whose holder is gone is taken "
                        "over after %.0f s without its heartbeat (or at once "
                        "on the holder's host)" % self.stale_after)

    def _is_stale(self, holder, stamp, seen) -> bool:
        if holder and holder.get("host") == socket.gethostname():
            pid = holder.get("pid")
            if isinstance(pid, int) and not pid_alive(pid,
                                                      holder.get("start")):
                return True
        first = seen.setdefault(stamp, time.monotonic())
        return time.monotonic() - first > self.stale_after

    def _break(self, stamp, holder) -> None:
        """Remove a stale lock, one breaker at a time."""
        breaker = self.path.with_name(self.path.name + ".break")
        if not create_exclusive(breaker, json.dumps(holder_info())):
            other = read_holder(breaker)
            if other and other.get("host") == socket.gethostname() and \
                    not pid_alive(other.get("pid", -1), other.get("start")):
                _unlink(breaker)
            elif time.time() - _mtime(breaker) > self.stale_after:
                _unlink(breaker)
            time.sleep(0.05)
            return
        try:
            if _stamp(self.path) == stamp:
                lgr.warning("removing the stale repository lock %s of %s",
                            self.path, describe(holder))
                _unlink(self.path)
        finally:
            _unlink(breaker)

    def _start_heartbeat(self) -> None:
        interval = max(min(self.stale_after / 6.0, 10.0), 0.2)

        def beat():
            while not self._stop.wait(interval):
                try:
                    if _stamp(self.path) is None or \
                            _stamp(self.path)[0] != self._mine[0]:
                        lgr.error("the repository lock %s was taken away",
                                  self.path)
                        return
                    os.utime(self.path)
                except OSError:
                    pass

        self._beat = threading.Thread(target=beat, daemon=True,
                                      name="hpcdata-lock-heartbeat")
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        now = _stamp(self.path)
        if now is not None and self._mine and now[0] == self._mine[0]:
            _unlink(self.path)


def _unlink(path: Path) -> None:
    try:
        os.unlink(str(path))
    except FileNotFoundError:
        pass


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return time.time()
