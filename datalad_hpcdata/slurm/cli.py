"""Slurm through its command-line tools (sbatch, sacct, squeue, scontrol,
scancel).

The default backend.  What it asks Slurm, per call (docs/slurm-calls.md):

* a state query: one ``sacct`` for any number of jobs, searching only from
  a margin before the earliest submit time to now (``-S``/``-E``), plus at
  most one ``squeue --jobs`` for the jobs accounting does not know yet (a
  fresh job is missing from sacct for about a second) or when accounting
  is off; squeue also gives the exit status, so nothing is asked per job;
* a submission: one ``sbatch`` (never repeated: a timed-out sbatch may
  have submitted) and one ``scontrol show job`` for the job's details.

Every query has a timeout and is retried, a bounded number of times with
backoff, when the controller or slurmdbd is busy or unreachable.  Every
call goes through the package's runner and is counted in ``calls``.
"""

from __future__ import annotations

import getpass
import logging
import re
import time

from ..runner import run as run_command
from .argv import sbatch_argv
from .parse import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    parse_job_ids,
    parse_key_values,
    parse_sacct,
    parse_sbatch_refusal,
    parse_squeue,
)
from .states import ACTIVE, MAY_REQUEUE
from .types import Backend, SlurmError, Submission, SubmissionError

lgr = logging.getLogger("datalad.hpcdata.slurm.cli")

# accounting is searched from this long before the earliest submit time
# (clock skew between login node and controller, DST folds)
SINCE_MARGIN = 86400
# seconds to wait for each tool
TIMEOUTS = {"sacct": 120, "squeue": 60, "scontrol": 60, "scancel": 60,
            "sinfo": 30, "sbatch": 3600}
# pauses before the 2nd and 3rd attempt of a query that met a busy Slurm
RETRY_DELAYS = (1.0, 4.0)
# what Slurm prints when slurmctld/slurmdbd is busy or unreachable; a
# definite answer ("Invalid job id specified") is never retried
BUSY = re.compile(
    r"Socket timed out|Unable to contact slurm controller|"
    r"Connection (?:refused|timed out|reset)|"
    r"Resource temporarily unavailable|Zero Bytes were transmitted|"
    r"Problem talking to the database|Slurmctld is busy|"
    r"slurm_load_jobs error: (?!Invalid job id)", re.I)


def run(argv: list[str], timeout: float = 300, cwd: str | None = None,
        env: dict | None = None, fixed: bool = True,
        input: str | None = None):
    """Run a Slurm tool once (never raises for a non-zero exit)."""
    return run_command(argv, cwd=cwd, env=env, timeout=timeout,
                       error=SlurmError, fixed=fixed, input=input)


def busy(text: str) -> bool:
    return bool(BUSY.search(text or ""))


def pause(seconds: float) -> None:
    """The backoff between attempts (one place, so tests can watch it)."""
    time.sleep(seconds)


def local_time(epoch: float) -> str:
    """Epoch seconds as a time sacct parses (local, like its output)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


class CLIBackend(Backend):
    name = "cli"

    def __init__(self):
        super().__init__()
        self._cluster = None

    def call(self, argv: list[str], retry: bool = True, **kw):
        """Run one Slurm tool, counted; with `retry`, run it again (at most
        len(RETRY_DELAYS) times, with backoff) while Slurm is busy or it
        timed out.  The last attempt's result or timeout error stands."""
        tool = argv[0].rsplit("/", 1)[-1]
        kw.setdefault("timeout", TIMEOUTS.get(tool, 60))
        delays = list(RETRY_DELAYS) if retry else []
        while True:
            self.calls[tool] += 1
            lgr.debug("Slurm call %d of this command: %s",
                      sum(self.calls.values()), tool)
            try:
                proc = run(argv, **kw)
            except SlurmError as e:
                if e.returncode is not None or not delays:
                    raise          # not found, or timed out too often
                why = str(e)
            else:
                if not proc.returncode or not delays or \
                        not busy(proc.stderr):
                    return proc
                why = proc.stderr.strip()
            delay = delays.pop(0)
            lgr.debug("%s: Slurm busy (%s); retrying in %.0f s", tool, why,
                      delay)
            pause(delay)

    # -- submission -------------------------------------------------------
    def submit(self, argv, cwd, env=None, stdin=None) -> Submission:
        argv = sbatch_argv(argv)
        # the job inherits sbatch's environment: the user's, unchanged;
        # never retried (sbatch retries itself, and may have submitted)
        proc = self.call(argv, retry=False, cwd=cwd, env=env,
                         timeout=TIMEOUTS["sbatch"], fixed=False,
                         input=stdin)
        ids = parse_job_ids(proc.stdout)
        if not ids:
            raise refused(argv, proc)
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
        proc = self.call(["scontrol", "show", "job", "-o", str(job_id)])
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

    def cancel(self, job_ids) -> dict[str, str]:
        """One scancel for all jobs (it carries on past unknown ids)."""
        if not job_ids:
            return {}
        proc = self.call(["scancel"] + [str(j) for j in job_ids])
        failed = {}
        for line in proc.stderr.splitlines():
            m = re.search(r"job(?: id)? (\d+(?:_\d+)?)\b\W*(.*)", line)
            if m:
                failed[m.group(1)] = m.group(2).strip() or line.strip()
        if proc.returncode and not failed:
            failed = {str(j): proc.stderr.strip() for j in job_ids}
        for jid, why in failed.items():
            lgr.warning("could not cancel job %s: %s", jid, why)
        return failed

    def cluster_name(self) -> str:
        if self._cluster is None:
            proc = self.call(["scontrol", "show", "config"])
            m = re.search(r"^ClusterName\s*=\s*(\S+)", proc.stdout, re.M)
            self._cluster = m.group(1) if m else ""
        return self._cluster

    def find_submissions(self, tokens, since):
        """One squeue (the controller knows every job that is queued,
        running or recently ended), then one sacct for tokens not found
        (comments are in accounting only with
        AccountingStoreFlags=job_comment)."""
        found = {}
        # only the user's own jobs (--me), as every other query
        proc = self.call(["squeue", "-h", "--me", "-a", "-t", "all",
                          "-o", "%F|%k"])
        if proc.returncode:
            raise SlurmError("squeue failed: %s" % (proc.stderr.strip()
                                                   or "no output"))
        _match_tokens(proc.stdout, tokens, found)
        rest = [t for t in tokens if t not in found]
        if rest:
            start = time.strftime("%Y-%m-%dT%H:%M:%S",
                                  time.localtime(since - 60))
            proc = self.call(["sacct", "-X", "-n", "-P", "-S", start,
                              "-E", "now", "-u", getpass.getuser(),
                              "-o", "JobID,Comment"])
            if proc.returncode == 0:
                _match_tokens(proc.stdout, rest, found)
        return found

    # -- queries ------------------------------------------------------------
    def query(self, job_ids, since=None, steps=True):
        job_ids = [str(j) for j in job_ids]
        if not job_ids:
            return {}
        result = {}
        proc = self.call(sacct_argv(job_ids, since, steps=steps))
        self.accounting_error = None
        if proc.returncode == 0:
            result = parse_sacct(proc.stdout, job_ids)
        else:
            self.accounting_error = proc.stderr.strip() or "sacct failed"
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
        """One squeue call for exactly these jobs (all their tasks)."""
        proc = self.call(["squeue", "-h", "-a", "-r", "-t", "all",
                          "--jobs=%s" % ",".join(job_ids),
                          "-O", SQUEUE_FORMAT])
        if proc.returncode:
            # a single id the controller has purged: "Invalid job id"
            lgr.debug("squeue failed: %s", proc.stderr.strip())
            return {}
        return parse_squeue(proc.stdout, job_ids)


def _match_tokens(out: str, tokens, found: dict) -> None:
    """'jobid|comment' lines: token -> (base) job id."""
    for line in out.splitlines():
        jid, _, comment = line.partition("|")
        for token in tokens:
            if token in comment and token not in found:
                found[token] = jid.strip().split("_")[0]

def sacct_argv(job_ids: list[str], since: float | None = None,
               now: float | None = None, steps: bool = True) -> list[str]:
    """The one sacct call for these jobs: from SINCE_MARGIN before `since`
    (the earliest submit time) to now; without `since`, sacct's own
    default window for -j.  Without `steps`, only the jobs' own records
    (-X)."""
    argv = ["sacct", "-n", "-P", "--noconvert"] + ([] if steps else ["-X"]) \
        + ["-j", ",".join(job_ids), "-o", ",".join(SACCT_FIELDS)]
    if since:
        argv += ["-S", local_time(float(since) - SINCE_MARGIN),
                 "-E", local_time(now) if now else "now"]
    return argv


def refused(argv: list[str], proc) -> SubmissionError:
    """The error for an sbatch that submitted nothing, naming the limit
    that refused the job when sbatch said which."""
    detail = (proc.stderr or proc.stdout).strip() or "no output"
    said = "%s exited %d: %s" % (argv[0], proc.returncode, detail)
    found = parse_sbatch_refusal(detail)
    if not found:
        return SubmissionError("no job was submitted: %s" % said)
    limit, why = found
    err = SubmissionError(
        "no job was submitted: Slurm refused it (%s): %s (%s)"
        % (limit, why, said))
    err.limit = limit
    return err
