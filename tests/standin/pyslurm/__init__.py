"""A stand-in for pyslurm in the tests (no pyslurm matches Slurm 22.05).

Follows the public API of pyslurm at tags v25.11.2 and v24.11.0
(github.com/PySlurm/pyslurm), as read in pyslurm/__init__.py,
pyslurm/version.py, pyslurm/db/job.pyx, pyslurm/db/stats.pyx,
pyslurm/core/job/job.pyx, pyslurm/core/error.pyx and pyslurm/utils/
(uint.pyx, ctime.pyx, helpers.pyx); written from that reading, no code
taken.  What matters for the backend:

* the version is ``pyslurm.__version__`` (and the package metadata);
  there is no ``pyslurm.version()`` (removed in 23.2.3 / 23.11.1 /
  24.5.1);
* ``pyslurm.db.Jobs.load(pyslurm.db.JobFilter(ids=..., start_time=...,
  end_time=...))`` returns a collection keyed by cluster, then job id,
  whose ``values()`` are ``pyslurm.db.Job`` objects; see db.py for each
  property's parsing (task 0, pending remainders, exit codes, times);
* ``pyslurm.Job(job_id).cancel()`` raises ``pyslurm.RPCError`` on failure.

Which release it imitates comes from its metadata version (24.11.x lacks
``db.Job.heterogeneous_id``/``heterogeneous_offset``).  The environment
variable ``PYSLURM_STANDIN`` selects a broken build for the probe tests:
``abort`` (the process dies in the import, as a pyslurm built against
another libslurm can), ``raise`` (the import raises), ``old-filter`` (only
``db.JobSearchFilter``, as before 23.x).
"""

import importlib.metadata
import os
import sys

_mode = os.environ.get("PYSLURM_STANDIN", "")
with open(os.environ.get("PYSLURM_STANDIN_LOG", os.devnull), "a") as _f:
    _f.write("import %d\n" % os.getpid())   # who imported it, how often
if _mode == "abort":
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # no core file
    os.abort()
if _mode == "raise":
    raise RuntimeError("Slurm version mismatch: requires Slurm 25.11, "
                       "found 22.5")

# real pyslurm changes the dlopen flags on import; so does the stand-in,
# so a test can tell whether a process imported it
sys.setdlopenflags(sys.getdlopenflags() | os.RTLD_GLOBAL)

__version__ = importlib.metadata.version("pyslurm")

from . import db  # noqa: E402
from .core import Job, PyslurmError, RPCError  # noqa: E402

if _mode == "old-filter":
    del db.JobFilter

__all__ = ["Job", "PyslurmError", "RPCError", "db", "__version__"]
