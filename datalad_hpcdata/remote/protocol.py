"""Adjustments to annexremote 1.6.6's protocol handling.

* ``EXTENSIONS``: annexremote always answers a bare ``EXTENSIONS``; we
  announce ``INFO`` and ``GETGITREMOTENAME`` (both messages we may send).
* ``CLAIMURL`` and ``WHEREIS`` are not guarded by annexremote: any
  exception there would end the process.  They are answered with
  ``CLAIMURL-FAILURE`` / ``WHEREIS-FAILURE`` instead.
* Any other unexpected exception while handling a request is answered with
  the request's own failure reply (or ``ERROR`` for requests without one)
  and the remote keeps running instead of exiting.
* ``guarded`` turns a failure of a request handler into a one-line
  ``RemoteError``; ``Progress`` sends rate-limited ``PROGRESS`` messages.
"""

from __future__ import annotations

import functools
import logging
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
    def LinkRemote(self, remote: Any) -> None:
        self.remote = remote
        self.protocol = HpcdataProtocol(remote)


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
    """Cumulative PROGRESS messages, rate-limited by byte count."""

    def __init__(self, annex: Master) -> None:
        self.annex = annex
        self.sent = -1

    def __call__(self, done: int) -> None:
        if self.sent < 0 or done - self.sent >= PROGRESS_STEP:
            self.annex.progress(done)
            self.sent = done
