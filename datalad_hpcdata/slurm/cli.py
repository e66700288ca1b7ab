"""Slurm through its command-line tools (sbatch, sacct, squeue, scontrol,
scancel).

The default backend.  All state queries are batched: one ``sacct`` for any
number of jobs; ``squeue`` (one call) only for jobs accounting does not know
yet (a fresh job is missing from sacct for about a second) or when
accounting is switched off; ``scontrol`` only for a job's exit code when
squeue saw it finish.  Every call goes through the package's runner.
"""

from __future__ import annotations

import logging
import re

from ..runner import run as run_command
from .argv import sbatch_argv
from .parse import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    parse_job_ids,
    parse_key_values,
    parse_sacct,
    parse_squeue,
)
from .states import ACTIVE, MAY_REQUEUE
from .types import Backend, SlurmError, Submission, SubmissionError

lgr = logging.getLogger("datalad.hpcdata.slurm.cli")


def run(argv: list[str], timeout: float = 300, cwd: str | None = None,
        env: dict | None = None, fixed: bool = True):
    """Run a Slurm tool (never raises for a non-zero exit)."""
    return run_command(argv, cwd=cwd, env=env, timeout=timeout,
                       error=SlurmError, fixed=fixed)


class CLIBackend(Backend):
    name = "cli"

    def __init__(self):
        self._cluster = None

    # -- submission -------------------------------------------------------
    def submit(self, argv, cwd, env=None) -> Submission:
        argv = sbatch_argv(argv)
        # the job inherits sbatch's environment: the user's, unchanged
        proc = run(argv, cwd=cwd, env=env, timeout=3600, fixed=False)
        ids = parse_job_ids(proc.stdout)
        if not ids:
            detail = (proc.stderr or proc.stdout).strip() or "no output"
            raise SubmissionError(
                "no job was submitted: %s exited %d: %s"
                % (" ".join(argv[:1]), proc.returncode, detail))
        if len(ids) > 1:
            jids = [i for i, _ in ids]
            self.cancel(jids)
            raise SubmissionError(
                "the command submitted %d jobs (%s); one job per "
                "slurm-schedule call is supported, so they were cancelled"
                % (len(ids), ", ".join(jids)))
        if proc.returncode:
            lgr.warning("%s exited %d after submitting job %s: %s", argv[0],
                        proc.returncode, ids[0][0], proc.stderr.strip())
        job_id, cluster = ids[0]
        return Submission(job_id=job_id, cluster=cluster,
                          stdout=proc.stdout, stderr=proc.stderr)

    def submit_info(self, job_id) -> dict:
        proc = run(["scontrol", "show", "job", "-o", str(job_id)], timeout=60)
        if proc.returncode:
            return {}
        # an array gives one line per task record; the master's line is
        # the one whose JobId equals the submitted id, else the first
        lines = [parse_key_values(line) for line in proc.stdout.splitlines()
                 if line.strip()]
        for rec in lines:
            if rec.get("JobId") == str(job_id):
                return rec
        return lines[0] if lines else {}

    def cancel(self, job_ids):
        if job_ids:
            run(["scancel"] + [str(j) for j in job_ids], timeout=120)

    def cluster_name(self) -> str:
        if self._cluster is None:
            proc = run(["scontrol", "show", "config"], timeout=60)
            m = re.search(r"^ClusterName\s*=\s*(\S+)", proc.stdout, re.M)
            self._cluster = m.group(1) if m else ""
        return self._cluster

    # -- queries ------------------------------------------------------------
    def query(self, job_ids, steps=True):
        job_ids = [str(j) for j in job_ids]
        if not job_ids:
            return {}
        result = {}
        proc = run(["sacct", "-n", "-P"] + ([] if steps else ["-X"]) +
                   ["-j", ",".join(job_ids), "-o", ",".join(SACCT_FIELDS)],
                   timeout=600)
        if proc.returncode == 0:
            result = parse_sacct(proc.stdout, job_ids)
        else:
            lgr.debug("sacct failed (%s); asking the controller instead",
                      proc.stderr.strip())
        missing = [j for j in job_ids if j not in result
                   or result[j].state_class == "unknown"]
        # the controller's word wins while accounting lags a requeue
        requeued = [j for j in job_ids if j in result
                    and result[j].state in MAY_REQUEUE]
        if missing or requeued:
            found = self._query_controller(missing + requeued)
            for j in requeued:
                info = found.pop(j, None)
                if info is not None and info.state_class == ACTIVE:
                    result[j] = info
            result.update(found)
        return result

    def _query_controller(self, job_ids):
        proc = run(["squeue", "-h", "-a", "-r", "-t", "all",
                    "-o", SQUEUE_FORMAT], timeout=600)
        if proc.returncode:
            lgr.debug("squeue failed: %s", proc.stderr.strip())
            return {}
        found = parse_squeue(proc.stdout, job_ids)
        for info in found.values():
            for rec in (info.tasks.values() if info.tasks else [info]):
                if rec.state_class != ACTIVE and rec.exit_code is None:
                    rec.exit_code = self._exit_code(rec.job_id)
        return found

    def _exit_code(self, job_id):
        proc = run(["scontrol", "show", "job", "-o", str(job_id)], timeout=60)
        if proc.returncode:
            return None
        return parse_key_values(proc.stdout).get("ExitCode")
