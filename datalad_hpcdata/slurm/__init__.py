"""Slurm: the backends (command-line tools, pyslurm) and their selection.

Every module of this package imports only from within it (and the
package's runner); nothing here knows about datasets or git.
"""

from __future__ import annotations

import logging

from .cli import CLIBackend
from .pyslurm import PyslurmBackend, pyslurm_usable
from .types import Backend, JobInfo, SlurmError, Submission, SubmissionError

__all__ = ["Backend", "CLIBackend", "JobInfo", "PyslurmBackend", "SlurmError",
           "Submission", "SubmissionError", "get_backend"]

lgr = logging.getLogger("datalad.hpcdata.slurm")


def get_backend(choice: str = "auto") -> Backend:
    """`datalad.hpcdata.backend`: auto | cli | pyslurm."""
    choice = (choice or "auto").lower()
    if choice not in ("auto", "cli", "pyslurm"):
        raise ValueError(
            "datalad.hpcdata.backend must be auto, cli or pyslurm, not %r"
            % choice)
    if choice == "cli":
        return CLIBackend()
    ok, why = pyslurm_usable()
    if ok:
        return PyslurmBackend()
    if choice == "pyslurm":
        raise SlurmError("pyslurm backend requested but unusable: %s" % why)
    lgr.debug("pyslurm not used (%s); using the Slurm command-line tools", why)
    return CLIBackend()
