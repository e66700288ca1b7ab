"""Adjustments to annexremote 1.6.6's protocol handling.

* ``EXTENSIONS``: annexremote always answers a bare ``EXTENSIONS``; we
  announce ``INFO`` and ``GETGITREMOTENAME`` (both messages we may send).
* ``CLAIMURL`` and ``WHEREIS`` are not guarded by annexremote: any
  exception there would end the process.  They are answered with
  ``CLAIMURL-FAILURE`` / ``WHEREIS-FAILURE`` instead.
* Any other unexpected exception while handling a request is answered with
  the request's own failure reply (or ``ERROR`` for requests without one)
  and the remote keeps running instead of exiting.
"""

import logging
import traceback

from annexremote import Master
from annexremote.annexremote import Protocol, ProtocolError, UnsupportedRequest

from .errors import describe

log = logging.getLogger("datalad_hpcdata.remote")

ANNOUNCED_EXTENSIONS = ("INFO", "GETGITREMOTENAME")

# failure replies for requests whose handler raised unexpectedly
_FAILURE_REPLY = {
    "INITREMOTE": "INITREMOTE-FAILURE {msg}",
    "PREPARE": "PREPARE-FAILURE {msg}",
    "CHECKPRESENT": "CHECKPRESENT-UNKNOWN {arg} {msg}",
    "REMOVE": "REMOVE-FAILURE {arg} {msg}",
    "CLAIMURL": "CLAIMURL-FAILURE",
    "CHECKURL": "CHECKURL-FAILURE {msg}",
    "WHEREIS": "WHEREIS-FAILURE",
}


class HpcdataProtocol(Protocol):
    def do_EXTENSIONS(self, param):
        self.extensions = param.split(" ")
        return "EXTENSIONS " + " ".join(ANNOUNCED_EXTENSIONS)

    def command(self, line):
        try:
            return super().command(line)
        except (UnsupportedRequest, ProtocolError):
            raise
        except Exception as exc:  # never let one request kill the remote
            return failure_reply(line, exc)


def failure_reply(line, exc):
    for text in traceback.format_exc().splitlines():
        log.debug(text)
    parts = line.strip().split(" ")
    request = parts[0].upper() if parts else ""
    msg = describe(exc)
    if request == "TRANSFER" and len(parts) >= 3:
        return "TRANSFER-FAILURE {} {} {}".format(parts[1], parts[2], msg)
    template = _FAILURE_REPLY.get(request)
    if template is None:
        return "ERROR {}".format(msg)
    return template.format(arg=parts[1] if len(parts) > 1 else "", msg=msg).rstrip()


class HpcdataMaster(Master):
    def LinkRemote(self, remote):
        self.remote = remote
        self.protocol = HpcdataProtocol(remote)
