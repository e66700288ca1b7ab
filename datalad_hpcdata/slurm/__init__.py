"""Slurm: the backends (command-line tools, pyslurm) and their selection.

Every module of this package imports only from within it (and the
package's runner); nothing here knows about datasets or git.
"""

from __future__ import annotations

import logging

from .cli import CLIBackend
from .probe import pyslurm_usable
from .pyslurm import PyslurmBackend
from .types import Backend, JobInfo, SlurmError, Submission, SubmissionError

__all__ = ["Backend", "CLIBackend", "JobInfo", "PyslurmBackend", "SlurmError",
           "Submission", "SubmissionError", "get_backend"]

lgr = logging.getLogger("datalad.hpcdata.slurm")


def get_backend(choice: str = "auto") -> Backend:
    """`datalad.hpcdata.backend`: auto | cli | pyslurm.

    ``cli`` never looks at pyslurm; ``auto`` uses pyslurm only when
    :mod:`.probe` says it matches the running Slurm (debug messages say
    why or why not); ``pyslurm`` makes "it does not" an error."""
    choice = (choice or "auto").lower()
    if choice not in ("auto", "cli", "pyslurm"):
        raise ValueError(
            "datalad.hpcdata.backend must be auto, cli or pyslurm, not %r"
            % choice)
    cli = CLIBackend()
    if choice == "cli":
        return cli
    ok, why = pyslurm_usable(cli.call)
    if ok:
        lgr.debug("using the pyslurm backend: %s", why)
        backend = PyslurmBackend()
        backend.calls = cli.calls      # the probe's sinfo call counts too
        return backend
    if choice == "pyslurm":
        raise SlurmError(
            "datalad.hpcdata.backend is 'pyslurm', but pyslurm cannot be "
            "used here: %s (see docs/pyslurm.md; 'auto' or 'cli' use the "
            "Slurm command-line tools)" % why)
    lgr.debug("pyslurm not used (%s); using the Slurm command-line tools",
              why)
    return cli
