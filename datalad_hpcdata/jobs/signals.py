"""Turn SIGTERM and SIGHUP into an exception while a job is half-done.

A command killed with SIGTERM (``kill``, a batch system's time limit, a
closed terminal for SIGHUP) would otherwise die without running its
clean-up; inside :func:`interruptible` the signal raises
:class:`Interrupted` (a ``BaseException``, like ``KeyboardInterrupt``), so
the claim is released or resolved and the worktree restored.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Interrupted(BaseException):
    """The process received SIGTERM or SIGHUP."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__("interrupted by %s" % signal.Signals(signum).name)


def _raise(signum, frame):
    raise Interrupted(signum)


@contextmanager
def interruptible():
    """SIGTERM/SIGHUP raise Interrupted inside (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            old[sig] = signal.signal(sig, _raise)
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
