"""One lock per repository for every git/annex-mutating step.

Commands started in parallel on the login node run their git parts one at a
time.  The lock is an advisory ``flock`` on a file in the git directory, so it
is released by the kernel when a process dies: a killed command never leaves
a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

lgr = logging.getLogger("datalad.hpcdata.lock")


class LockTimeout(RuntimeError):
    pass


@contextmanager
def repository_lock(git_dir, timeout: float = 3600.0, poll: float = 0.05):
    path = Path(git_dir) / "datalad-hpcdata" / "repo.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if not announced:
                lgr.info("waiting for the repository lock %s", path)
                announced = True
            if time.monotonic() > deadline:
                raise LockTimeout(
                    "could not get the repository lock %s within %.0f s; "
                    "another datalad-hpcdata command is still working on "
                    "this dataset" % (path, timeout))
            time.sleep(poll)
            poll = min(poll * 1.5, 1.0)
        # the holder's pid, for people; fixed width, so no truncation
        # (an ftruncate costs milliseconds, once per job of a batch)
        os.pwrite(fd, b"%-20d\n" % os.getpid(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
