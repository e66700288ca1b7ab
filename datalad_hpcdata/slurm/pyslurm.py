"""Slurm through pyslurm (the 24.11 / 25.11 API), when it matches Slurm.

Used only when :mod:`.probe` found a pyslurm built for the running Slurm
(docs/pyslurm.md).  Queries go to accounting with one
``pyslurm.db.Jobs.load(pyslurm.db.JobFilter(ids=..., start_time=...,
end_time=...))`` and give exactly the :class:`JobInfo` the command-line
backend gives for the same jobs: every ``pyslurm.db.Job`` is named as
sacct names it (``123``, ``123_4``, ``123_[5-7]``, ``123+1``) and grouped
by the same code, with sacct's conventions for the raw values:

* times: epoch seconds -> local ISO time (sacct prints local time);
* exit code: ``exit_code:exit_code_signal`` (pyslurm already takes 128
  off codes >= 128, as sacct does);
* MaxRSS: ``stats.resident_memory`` (bytes; the maximum over the steps);
* array task 0: pyslurm reads ``array_task_id`` 0 as "no value", so a
  record of an array with no task id and no ``array_tasks_waiting`` is
  task 0; the pending remainder is the record with
  ``array_tasks_waiting`` (accounting's hex mask, shown as sacct does);
* heterogeneous jobs: every component, by ``heterogeneous_id`` /
  ``heterogeneous_offset`` (25.11); 24.11 lacks those, and a component is
  recognised as a record that matched none of the ids asked for (the
  filter matches a leader's components), its leader being the nearest
  lower id asked for (components get consecutive ids).

Jobs accounting does not know yet are asked of the controller with the
command-line backend's one ``squeue --jobs`` call.  Cancelling is
``pyslurm.Job(id).cancel()`` per job, carrying on past failures.

Submission stays with ``sbatch``: the user's command *is* an sbatch
command line, and sbatch applies ``#SBATCH`` lines, ``--wrap``,
``SBATCH_*`` variables and site cli_filter plugins, which pyslurm's
``JobSubmitDescription`` does not.
"""

from __future__ import annotations

import logging
import time

from . import cli
from .cli import SINCE_MARGIN, CLIBackend, busy
from .parse import (
    clean,
    format_elapsed,
    format_task_mask,
    format_time,
    group_records,
)
from .states import normalize_state
from .types import JobInfo

lgr = logging.getLogger("datalad.hpcdata.slurm.pyslurm")

_ABSENT = object()


def job_info(job) -> JobInfo:
    """One pyslurm.db.Job as the JobInfo sacct's line for it gives."""
    code = job.exit_code or 0
    sig = job.exit_code_signal or 0
    rss = getattr(getattr(job, "stats", None), "resident_memory", None)
    return JobInfo(
        job_id=str(job.id),
        state=normalize_state(str(job.state or "")),
        exit_code="%d:%d" % (code, sig),
        submit_time=format_time(job.submit_time),
        start_time=format_time(job.start_time),
        end_time=format_time(job.end_time),
        elapsed=format_elapsed(job.elapsed_time),
        nodes=clean(job.nodelist),
        max_rss=int(rss) if rss else None,
        source="pyslurm")


def _het_components(jobs: list, wanted: set[str]) -> dict[int, tuple]:
    """{record id: (leader, offset)} of heterogeneous job components."""
    het = {}
    inferred = []
    for job in jobs:
        leader = getattr(job, "heterogeneous_id", _ABSENT)
        if leader is _ABSENT:            # pyslurm 24.11
            inferred.append(job)
        elif leader:
            het[job.id] = (leader, job.heterogeneous_offset or 0)
    asked = sorted(int(w) for w in wanted)
    for job in inferred:
        if str(job.id) in wanted or \
                str(getattr(job, "array_id", None)) in wanted:
            continue
        lower = [w for w in asked if w < job.id]
        if lower:
            het[job.id] = (lower[-1], job.id - lower[-1])
            het[lower[-1]] = (lower[-1], 0)
    return het


def record_name(job, het: dict) -> str:
    """The JobID sacct prints for this record."""
    if job.id in het:
        return "%d+%d" % het[job.id]
    array = getattr(job, "array_id", None)
    if not array:
        return str(job.id)
    waiting = getattr(job, "array_tasks_waiting", None)
    if waiting:
        return "%d_[%s]" % (array, format_task_mask(
            waiting, getattr(job, "array_tasks_parallel", None)))
    return "%d_%d" % (array, job.array_task_id or 0)   # None: task 0


def db_records(jobs, wanted) -> dict[str, JobInfo]:
    """pyslurm.db.Job objects -> {master id: JobInfo}, as parse_sacct."""
    jobs = list(jobs)
    wanted = {str(w) for w in wanted}
    het = _het_components(jobs, wanted)
    records = {record_name(job, het): job_info(job) for job in jobs}
    return group_records(records, wanted, "pyslurm")


class PyslurmBackend(CLIBackend):
    name = "pyslurm"

    def query(self, job_ids, since=None, steps=True):
        job_ids = [str(j) for j in job_ids]
        if not job_ids:
            return {}
        if not all(j.isdigit() for j in job_ids):
            return super().query(job_ids, since, steps)
        try:
            jobs = self._load(job_ids, since)
        except Exception as e:   # pyslurm.RPCError and whatever else
            lgr.debug("pyslurm accounting query failed (%s); asking the "
                      "command-line tools", e)
            return super().query(job_ids, since, steps)
        result = db_records(jobs.values(), job_ids)
        missing = [j for j in job_ids if j not in result
                   or result[j].state_class == "unknown"]
        if missing:
            result.update(self._query_controller(missing))
        return result

    def _load(self, job_ids: list[str], since: float | None):
        """One Jobs.load (retried with backoff while slurmdbd is busy)."""
        import pyslurm
        window = {}
        if since:
            window = {"start_time": int(float(since) - SINCE_MARGIN),
                      "end_time": int(time.time())}
        flt = pyslurm.db.JobFilter(ids=[int(j) for j in job_ids], **window)
        delays = list(cli.RETRY_DELAYS)
        while True:
            self.calls["pyslurm.db.Jobs.load"] += 1
            try:
                return pyslurm.db.Jobs.load(flt)
            except Exception as e:
                if not delays or not busy(str(e)):
                    raise
                delay = delays.pop(0)
                lgr.debug("slurmdbd busy (%s); retrying in %.0f s", e,
                          delay)
                cli.pause(delay)

    def cancel(self, job_ids) -> dict[str, str]:
        """pyslurm.Job(id).cancel() for each job, whatever fails."""
        import pyslurm
        failed = {}
        for j in job_ids:
            self.calls["pyslurm.Job.cancel"] += 1
            try:
                pyslurm.Job(int(j)).cancel()
            except Exception as e:
                failed[str(j)] = str(e) or type(e).__name__
                lgr.warning("could not cancel job %s: %s", j, failed[str(j)])
        return failed
