"""Slurm through its command-line tools: sbatch, sacct, squeue, scontrol, scancel.

The default backend.  All state queries are batched: one ``sacct`` for any
number of jobs; ``squeue`` (one call) only for jobs accounting does not know
yet (a fresh job is missing from sacct for about a second) or when
accounting is switched off; ``scontrol`` only for a job's exit code when
squeue saw it finish.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess

from .backend import (Backend, JobInfo, SlurmError, Submission,
                      SubmissionError)
from .states import ACTIVE, normalize_state

lgr = logging.getLogger("datalad.hpcdata.slurm.cli")

SACCT_FIELDS = ("JobID", "JobIDRaw", "State", "ExitCode", "Submit", "Start",
                "End", "Elapsed", "NodeList", "MaxRSS")
SQUEUE_FORMAT = "%i|%A|%T|%V|%S|%e|%M|%N"
PARSABLE = re.compile(r"^(\d+)(?:\+\d+)?(?:;(\S+))?$")
HUMAN = re.compile(r"Submitted batch job (\d+)(?: on cluster (\S+))?")
KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=")


def run(argv, timeout=300, cwd=None, env=None):
    try:
        return subprocess.run(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SlurmError("%s: command not found (is Slurm installed and on "
                         "PATH?)" % argv[0])
    except subprocess.TimeoutExpired:
        raise SlurmError("%s did not answer within %d s" % (argv[0], timeout))


def is_sbatch(argv) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == "sbatch"


def sbatch_argv(argv: list[str]) -> list[str]:
    """Add --parsable to an sbatch call (before the script) if not there."""
    if not is_sbatch(argv) or "--parsable" in argv:
        return list(argv)
    return [argv[0], "--parsable"] + list(argv[1:])


def parse_job_ids(stdout: str) -> list[tuple[str, str]]:
    """(job id, cluster) pairs printed by sbatch (parsable or human form)."""
    found = []
    for line in stdout.splitlines():
        line = line.strip()
        m = PARSABLE.match(line) or HUMAN.search(line)
        if m and (m.group(1), m.group(2) or "") not in found:
            found.append((m.group(1), m.group(2) or ""))
    return found


def parse_key_values(text: str) -> dict:
    """`scontrol show job -o` output -> dict (values may contain spaces)."""
    text = text.strip()
    keys = list(KEY.finditer(text))
    out = {}
    for i, m in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(text)
        out[m.group(1)] = text[m.end():end].strip()
    return out


def parse_rss(value: str) -> int | None:
    if not value:
        return None
    m = re.match(r"^([\d.]+)([KMGTP]?)$", value.strip())
    if not m:
        return None
    mult = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3,
            "T": 1024 ** 4, "P": 1024 ** 5}[m.group(2)]
    return int(float(m.group(1)) * mult)


def _clean(value):
    return None if value in (None, "", "Unknown", "None", "N/A") else value


def parse_sacct(text: str, wanted: list[str]) -> dict[str, JobInfo]:
    """Parse `sacct -n -P -o SACCT_FIELDS` lines into one JobInfo per wanted
    id.  Array tasks become `tasks`; steps only contribute MaxRSS."""
    wanted = set(wanted)
    allocations = {}   # JobID -> JobInfo
    rss = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < len(SACCT_FIELDS):
            continue
        rec = dict(zip(SACCT_FIELDS, parts))
        jobid = rec["JobID"]
        alloc, _, step = jobid.partition(".")
        r = parse_rss(rec["MaxRSS"])
        if r is not None:
            rss[alloc] = max(rss.get(alloc, 0), r)
        if step:
            continue
        allocations[alloc] = JobInfo(
            job_id=rec["JobIDRaw"] or alloc,
            state=normalize_state(rec["State"]),
            exit_code=_clean(rec["ExitCode"]),
            submit_time=_clean(rec["Submit"]),
            start_time=_clean(rec["Start"]),
            end_time=_clean(rec["End"]),
            elapsed=_clean(rec["Elapsed"]),
            nodes=_clean(rec["NodeList"]),
            source="sacct")
    for alloc, info in allocations.items():
        if alloc in rss:
            info.max_rss = rss[alloc]
    return _group(allocations, wanted, "sacct")


def _group(allocations: dict, wanted: set, source: str) -> dict:
    """Group allocation records `123`, `123_4`, `123_[5-7]` by master id."""
    result = {}
    for alloc, info in allocations.items():
        master, sep, task = alloc.partition("_")
        if not sep and "+" in alloc:   # heterogeneous job components
            master, sep, task = alloc.partition("+")
            task = "+" + task
        if master not in wanted:
            continue
        if not sep:
            if master in result and result[master].tasks:
                continue  # the unsplit line of an array that split meanwhile
            result[master] = info
            continue
        job = result.get(master)
        if job is None or not job.tasks:
            job = JobInfo(job_id=master, source=source)
            result[master] = job
        job.tasks[task] = info
    for job in result.values():
        if job.tasks:
            _summarise(job)
    return result


def _summarise(job: JobInfo):
    tasks = job.tasks.values()
    job.state = job.summary_state
    starts = [t.start_time for t in tasks if t.start_time]
    ends = [t.end_time for t in tasks if t.end_time]
    subs = [t.submit_time for t in tasks if t.submit_time]
    job.submit_time = min(subs) if subs else None
    job.start_time = min(starts) if starts else None
    job.end_time = (max(ends) if ends and len(ends) == len(job.tasks)
                    else None)
    nodes = sorted({t.nodes for t in tasks if t.nodes})
    job.nodes = ",".join(nodes) or None
    rss = [t.max_rss for t in tasks if t.max_rss is not None]
    job.max_rss = max(rss) if rss else None


def parse_squeue(text: str, wanted: list[str]) -> dict[str, JobInfo]:
    allocations = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 8:
            continue
        jobid, raw, state, submit, start, end, used, nodes = parts[:8]
        allocations[jobid] = JobInfo(
            job_id=raw, state=normalize_state(state),
            submit_time=_clean(submit), start_time=_clean(start),
            end_time=_clean(end), elapsed=_clean(used), nodes=_clean(nodes),
            source="squeue")
    return _group(allocations, set(wanted), "squeue")


class CLIBackend(Backend):
    name = "cli"

    def __init__(self):
        self._cluster = None

    # -- submission -------------------------------------------------------
    def submit(self, argv, cwd, env=None) -> Submission:
        argv = sbatch_argv(argv)
        proc = run(argv, cwd=cwd, env=env, timeout=3600)
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
        lines = [parse_key_values(l) for l in proc.stdout.splitlines()
                 if l.strip()]
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
    def query(self, job_ids):
        job_ids = [str(j) for j in job_ids]
        if not job_ids:
            return {}
        result = {}
        proc = run(["sacct", "-n", "-P", "-j", ",".join(job_ids),
                    "-o", ",".join(SACCT_FIELDS)], timeout=600)
        if proc.returncode == 0:
            result = parse_sacct(proc.stdout, job_ids)
        else:
            lgr.debug("sacct failed (%s); asking the controller instead",
                      proc.stderr.strip())
        missing = [j for j in job_ids if j not in result
                   or result[j].state_class == "unknown"]
        if missing:
            result.update(self._query_controller(missing))
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
