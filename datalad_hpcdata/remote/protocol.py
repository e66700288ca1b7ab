"""Adjustments to annexremote 1.6.6's protocol handling.

* ``EXTENSIONS``: annexremote always answers a bare ``EXTENSIONS``; we
  announce ``INFO`` and ``GETGITREMOTENAME`` (both messages we may send).
* ``CLAIMURL`` and ``WHEREIS`` are not guarded by annexremote: any
  exception there would end the process.  They are answered with
  ``CLAIMURL-FAILURE`` / ``WHEREIS-FAILURE`` instead.
* Any other unexpected exception while handling a request is answered with
  the request's own failure reply (or ``ERROR`` for requests without one)
  and the remote keeps running instead of exiting.
* Every message goes out whole: ``HpcdataMaster`` writes each line with
  one ``write`` under a lock, so lines from worker threads (progress of
  parallel part uploads, log messages) never interleave.
* ``guarded`` turns a failure of a request handler into a one-line
  ``RemoteError``; ``Progress`` aggregates the byte counts of any number of
  threads into cumulative, monotonic, rate-limited ``PROGRESS`` messages.
"""

from __future__ import annotations

import functools
import logging
import threading
import traceback
from typing import Any, Callable, TypeVar

from annexremote import Master, RemoteError
from annexremote.annexremote import Protocol, ProtocolError, UnsupportedRequest

from .errors import describe, one_line

lgr = logging.getLogger("datalad.hpcdata.remote")

ANNOUNCED_EXTENSIONS = ("INFO", "GETGITREMOTENAME")
PROGRESS_STEP = 256 * 1024  # bytes between two PROGRESS messages

# failure replies for requests whose handler raised unexpectedly
_FAILURE_REPLY = {
    "INITREMOTE": "INITREMOTE-FAILURE %(msg)s",
    "PREPARE": "PREPARE-FAILURE %(msg)s",
    "CHECKPRESENT": "CHECKPRESENT-UNKNOWN %(arg)s %(msg)s",
    "REMOVE": "REMOVE-FAILURE %(arg)s %(msg)s",
    "CLAIMURL": "CLAIMURL-FAILURE",
    "CHECKURL": "CHECKURL-FAILURE %(msg)s",
    "WHEREIS": "WHEREIS-FAILURE",
}

Handler = TypeVar("Handler", bound=Callable[..., Any])


class HpcdataProtocol(Protocol):
    def do_EXTENSIONS(self, param: str) -> str:
        self.extensions = param.split(" ")
        return "EXTENSIONS " + " ".join(ANNOUNCED_EXTENSIONS)

    def command(self, line: str) -> Any:
        try:
            return super().command(line)
        except (UnsupportedRequest, ProtocolError):
            raise
        except Exception as exc:  # never let one request kill the remote
            return failure_reply(line, exc)


def failure_reply(line: str, exc: Exception) -> str:
    """The failure reply to request ``line`` whose handler raised ``exc``."""
    for text in traceback.format_exc().splitlines():
        lgr.debug("%s", text)
    parts = line.strip().split(" ")
    request = parts[0].upper() if parts else ""
    msg = describe(exc)
    if request == "TRANSFER" and len(parts) >= 3:
        return "TRANSFER-FAILURE %s %s %s" % (parts[1], parts[2], msg)
    template = _FAILURE_REPLY.get(request)
    if template is None:
        return "ERROR %s" % msg
    arg = parts[1] if len(parts) > 1 else ""
    return (template % {"arg": arg, "msg": msg}).rstrip()


class HpcdataMaster(Master):
    """annexremote's ``Master`` with thread-safe, whole-line output."""

    def __init__(self, output: Any) -> None:
        super().__init__(output)
        self._output_lock = threading.Lock()

    def LinkRemote(self, remote: Any) -> None:
        self.remote = remote
        self.protocol = HpcdataProtocol(remote)

    def _send(self, *args: Any, **kwargs: Any) -> None:
        """One message (a reply may be several lines, e.g. LISTCONFIGS's),
        written and flushed at once under a lock."""
        text = " ".join(str(arg) for arg in args) + "\n"
        with self._output_lock:
            self.output.write(text)
            self.output.flush()


def guarded(func: Handler) -> Handler:
    """Turn every failure of a request handler into a one-line RemoteError."""

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(self, *args, **kwargs)
        except RemoteError as exc:
            raise RemoteError(one_line(exc))
        except ProtocolError:
            raise
        except Exception as exc:
            lgr.debug("%s failed", func.__name__, exc_info=True)
            raise RemoteError(describe(exc))

    return wrapper  # type: ignore[return-value]


class Progress:
    """``PROGRESS`` for one transfer, fed from any number of threads.

    ``progress(done)`` reports a cumulative count, ``progress.add(n)`` adds
    ``n`` bytes (negative when a part is sent again).  A message goes out
    when the count has grown by ``PROGRESS_STEP`` since the last one, so the
    numbers git-annex sees only ever increase.  After ``close()`` (the
    transfer's reply is about to be sent) late calls are ignored.
    """

    def __init__(self, annex: Master, step: int = PROGRESS_STEP) -> None:
        self.annex = annex
        self.step = step
        self.done = 0
        self.sent = -1
        self.closed = False
        self._lock = threading.Lock()

    def __call__(self, done: int) -> None:
        with self._lock:
            self.done = done
            self._maybe_send()

    def add(self, count: int) -> None:
        with self._lock:
            self.done += count
            self._maybe_send()

    def close(self) -> None:
        with self._lock:
            self.closed = True

    def _maybe_send(self) -> None:
        # called with the lock held: messages leave in the order decided
        if self.closed or self.done <= self.sent:
            return
        if self.sent < 0 or self.done - self.sent >= self.step:
            self.annex.progress(self.done)
            self.sent = self.done
