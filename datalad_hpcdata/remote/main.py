"""``git-annex-remote-hpcdata``: entry point of the external special remote.

Resolver for ``zenodo://``, ``doi:``, ``vdi://``, ``s3://``, ``irods://``
and Zenodo https URLs, plus an optional content store (``store=s3`` or
``store=irods``); the remote itself is :class:`.remote.HpcdataRemote`.
See docs/remote/ for usage.  ``DATALAD_HPCDATA_REMOTE_DEBUG=1`` sends debug
messages to ``git annex --debug``.

SIGTERM and SIGHUP end the remote like Ctrl-C (SIGINT) does: as an
exception in the main thread, so a transfer in progress cleans up (an S3
multipart upload is aborted, a download keeps its verified prefix) before
the process exits.  A second such signal ends it at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from .protocol import HpcdataMaster
from .remote import HpcdataRemote

LOGGER = "datalad.hpcdata.remote"


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived."""


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process
    raise Terminated("signal %s" % signum)


def main() -> None:
    """Entry point of ``git-annex-remote-hpcdata``."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    output = sys.stdout
    sys.stdout = sys.stderr  # nothing but the protocol may reach stdout
    master = HpcdataMaster(output)
    remote = HpcdataRemote(master)
    master.LinkRemote(remote)
    _log_to_annex(master)
    try:
        master.Listen()
    except KeyboardInterrupt:
        pass


def _log_to_annex(master: HpcdataMaster) -> None:
    """Send the remote's log messages to git-annex (DEBUG with --debug)."""
    logger = logging.getLogger(LOGGER)
    logger.addHandler(master.LoggingHandler())
    debug = os.environ.get("DATALAD_HPCDATA_REMOTE_DEBUG")
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False


if __name__ == "__main__":
    main()
