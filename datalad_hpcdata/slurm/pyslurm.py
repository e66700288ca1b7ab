"""Slurm through pyslurm (>= 23.x API), used when a matching pyslurm imports.

pyslurm must match the running Slurm's major.minor version; PyPI only
offers pyslurm 25.11.x and Debian 12 ships Slurm 22.05, so on such systems
this backend is never selected and the CLI backend is used.  Sites that
build a matching pyslurm get faster queries (no process start per query).

Submission still goes through ``sbatch``: the user's command *is* an sbatch
command line (options, ``#SBATCH`` lines, script arguments), which pyslurm
cannot interpret.  Queries and cancellation use pyslurm.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

from .cli import CLIBackend, run
from .states import normalize_state
from .types import JobInfo, SlurmError

lgr = logging.getLogger("datalad.hpcdata.slurm.pyslurm")


def _major_minor(version: str):
    nums = re.findall(r"\d+", version or "")
    if len(nums) < 2:
        return None
    return int(nums[0]), int(nums[1])


def slurm_version() -> str:
    try:
        out = run(["sinfo", "--version"], timeout=30).stdout
    except SlurmError:
        return ""
    return out.strip().split()[-1] if out.strip() else ""


_usable = None


def pyslurm_usable():
    """(True, "") if pyslurm imports and matches the running Slurm.

    Decided once per process."""
    global _usable
    if _usable is None:
        _usable = _check_pyslurm()
    return _usable


def _check_pyslurm():
    try:
        import pyslurm  # noqa: F401
    except Exception as e:  # ImportError, or a version mismatch RuntimeError
        return False, "pyslurm does not import: %s" % e
    try:
        have = _major_minor(pyslurm.version())
    except Exception as e:
        return False, "pyslurm.version() failed: %s" % e
    running = _major_minor(slurm_version())
    if not have or not running or have != running:
        return False, ("pyslurm %s does not match Slurm %s"
                       % (have, running))
    if not hasattr(pyslurm, "db") or not hasattr(pyslurm.db, "Jobs"):
        return False, "pyslurm lacks the pyslurm.db.Jobs API (needs >= 23.2)"
    return True, ""


def _time(ts):
    if not ts:
        return None
    try:
        return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S")
    except (TypeError, ValueError, OSError):
        return str(ts)


def _elapsed(seconds):
    if seconds is None:
        return None
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return ("%d-" % d if d else "") + "%02d:%02d:%02d" % (h, m, s)


def job_info_from_db(job) -> JobInfo:
    """pyslurm.db.Job -> JobInfo (attribute names per pyslurm's docs)."""
    code = getattr(job, "exit_code", None)
    sig = getattr(job, "exit_code_signal", None) or 0
    stats = getattr(job, "stats", None)
    rss = getattr(stats, "max_resident_memory", None) if stats else None
    return JobInfo(
        job_id=str(job.id),
        state=normalize_state(str(job.state)),
        exit_code=None if code is None else "%d:%d" % (code, sig),
        submit_time=_time(getattr(job, "submit_time", None)),
        start_time=_time(getattr(job, "start_time", None)),
        end_time=_time(getattr(job, "end_time", None)),
        elapsed=_elapsed(getattr(job, "elapsed_time", None)),
        nodes=getattr(job, "nodelist", None) or None,
        max_rss=int(rss) if rss else None,
        source="pyslurm")


def group_db_jobs(jobs, wanted) -> dict[str, JobInfo]:
    """Group pyslurm.db.Job objects (array tasks share array_id)."""
    wanted = {str(w) for w in wanted}
    result = {}
    for job in jobs:
        array_id = getattr(job, "array_id", None)
        task = getattr(job, "array_task_id", None)
        info = job_info_from_db(job)
        if array_id and str(array_id) in wanted and task is not None:
            master = result.setdefault(
                str(array_id), JobInfo(job_id=str(array_id), source="pyslurm"))
            master.tasks[str(task)] = info
        elif str(job.id) in wanted:
            result[str(job.id)] = info
    for info in result.values():
        if info.tasks:
            info.state = info.summary_state
    return result


class PyslurmBackend(CLIBackend):
    name = "pyslurm"

    def query(self, job_ids, steps=True):
        import pyslurm
        job_ids = [str(j) for j in job_ids]
        if not job_ids:
            return {}
        try:
            jobs = pyslurm.db.Jobs.load(
                pyslurm.db.JobFilter(ids=[int(j) for j in job_ids]))
        except Exception as e:
            lgr.debug("pyslurm accounting query failed (%s); falling back to "
                      "the command-line tools", e)
            return super().query(job_ids)
        result = group_db_jobs(jobs.values(), job_ids)
        missing = [j for j in job_ids if j not in result]
        if missing:
            result.update(self._query_controller(missing))
        return result

    def cancel(self, job_ids):
        import pyslurm
        for j in job_ids:
            try:
                pyslurm.Job(int(j)).cancel()
            except Exception as e:
                raise SlurmError("cancelling job %s failed: %s" % (j, e))
