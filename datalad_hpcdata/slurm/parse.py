"""Parsers for what the Slurm tools print (sbatch, sacct, squeue, scontrol),
and Slurm's own text formats for values other sources give raw.

The tools run with ``SLURM_TIME_FORMAT=standard`` and ``LC_ALL=C`` (see
:mod:`datalad_hpcdata.runner`), so times are ISO-8601 local times whatever
the user's settings.  sacct runs with ``--noconvert``, so MaxRSS is bytes.
"""

from __future__ import annotations

import re
import time

from .states import normalize_state
from .types import JobInfo

SACCT_FIELDS = ("JobID", "JobIDRaw", "State", "ExitCode", "Submit", "Start",
                "End", "Elapsed", "NodeList", "MaxRSS")
# squeue -O: the same record as sacct's, with the raw exit status
SQUEUE_FIELDS = ("JobArrayID", "JobID", "State", "exit_code", "SubmitTime",
                 "StartTime", "EndTime", "TimeUsed", "NodeList")
SQUEUE_FORMAT = ",".join("%s:|" % f for f in SQUEUE_FIELDS)
NO_VAL = 0xfffffffe
PARSABLE = re.compile(r"^(\d+)(?:\+\d+)?(?:;(\S+))?$")
HUMAN = re.compile(r"Submitted batch job (\d+)(?: on cluster (\S+))?")
KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=")


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


def clean(value):
    return None if value in (None, "", "Unknown", "None", "N/A",
                             "None assigned") else value


RANGES = re.compile(r"\[([^\]]*)\]")


def count_hosts(nodelist: str | None) -> int:
    """Number of host names in a Slurm host list ('n[1-3,7],m2' -> 5)."""
    if not nodelist:
        return 0
    if "[" not in nodelist:
        return nodelist.count(",") + 1
    total, depth, term = 0, 0, ""
    for ch in (nodelist or "") + ",":
        depth += (ch == "[") - (ch == "]")
        if ch != "," or depth:
            term += ch
            continue
        n = 1 if term else 0
        for group in RANGES.findall(term):
            k = 0
            for part in group.split(","):
                lo, _, hi = part.partition("-")
                k += (int(hi) - int(lo) + 1 if lo.isdigit() and hi.isdigit()
                      else 1)
            n *= k
        total, term = total + n, ""
    return total


def parse_sacct(text: str, wanted: list[str]) -> dict[str, JobInfo]:
    """Parse `sacct -n -P -o SACCT_FIELDS` lines into one JobInfo per wanted
    id.  Array tasks become `tasks`; steps contribute MaxRSS and, while
    accounting still lists only the batch host for a multi-node allocation
    (for ~3 s after the job ended), their node lists."""
    wanted = set(wanted)
    allocations = {}   # JobID -> JobInfo
    rss = {}
    step_nodes = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < len(SACCT_FIELDS):
            continue
        rec = dict(zip(SACCT_FIELDS, parts))
        jobid = rec["JobID"]
        alloc, _, step = jobid.partition(".")
        r = parse_rss(rec["MaxRSS"])
        if r:   # 0 = not sampled, as empty: what pyslurm's 0 means too
            rss[alloc] = max(rss.get(alloc, 0), r)
        if step:
            nodes = clean(rec["NodeList"])
            if nodes and nodes != step_nodes.get(alloc) and count_hosts(
                    nodes) > count_hosts(step_nodes.get(alloc)):
                step_nodes[alloc] = nodes
            continue
        allocations[alloc] = JobInfo(
            job_id=rec["JobIDRaw"] or alloc,
            state=normalize_state(rec["State"]),
            exit_code=clean(rec["ExitCode"]),
            submit_time=clean(rec["Submit"]),
            start_time=clean(rec["Start"]),
            end_time=clean(rec["End"]),
            elapsed=clean(rec["Elapsed"]),
            nodes=clean(rec["NodeList"]),
            source="sacct")
    for alloc, info in allocations.items():
        if alloc in rss:
            info.max_rss = rss[alloc]
        more = step_nodes.get(alloc)
        if more and more != info.nodes and \
                count_hosts(more) > count_hosts(info.nodes):
            info.nodes = more
    return group_records(allocations, wanted, "sacct")


def group_records(allocations: dict, wanted: set, source: str) -> dict:
    """Group allocation records by master id, keyed as sacct names them:
    `123`, array tasks `123_4` and pending remainders `123_[5-7]`,
    heterogeneous components `123+0`, `123+1`.  A master's tasks are
    summarised into its state, times, nodes and MaxRSS."""
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
    """Parse `squeue -h -O SQUEUE_FORMAT` lines (one per array task)."""
    allocations = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < len(SQUEUE_FIELDS):
            continue
        jobid, raw, state, status, submit, start, end, used, nodes = \
            parts[:len(SQUEUE_FIELDS)]
        allocations[jobid] = JobInfo(
            job_id=raw, state=normalize_state(state),
            exit_code=exit_code_from_status(status),
            submit_time=clean(submit), start_time=clean(start),
            end_time=clean(end), elapsed=clean(used), nodes=clean(nodes),
            source="squeue")
    return group_records(allocations, set(wanted), "squeue")


def exit_code_from_status(status) -> str | None:
    """A raw wait status (squeue's exit_code, slurmdbd's exitcode) as sacct
    prints it: ``code:signal``, with 128 taken off codes >= 128 (a job
    that ran ``exit 130`` reads ``2:0`` in sacct, so it does here)."""
    try:
        status = int(status)
    except (TypeError, ValueError):
        return None
    if status < 0 or status >= NO_VAL:
        return None
    sig = status & 0x7f
    if sig and sig != 0x7f:            # WIFSIGNALED
        return "0:%d" % sig
    code = (status >> 8) & 0xff if not sig else 0
    return "%d:0" % (code - 128 if code >= 128 else code)


def format_time(epoch) -> str | None:
    """Epoch seconds as the tools print them: local ISO time."""
    if not epoch:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(int(epoch)))


def format_elapsed(seconds) -> str:
    """Seconds as sacct's Elapsed: ``[D-]HH:MM:SS``."""
    s = int(seconds or 0)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return ("%d-" % d if d else "") + "%02d:%02d:%02d" % (h, m, s)


def format_task_mask(mask: str, max_tasks: int | None = None) -> str:
    """The pending tasks of an array as sacct prints them in ``ID_[...]``.

    Accounting stores them as a hex bit mask (``0xC`` = tasks 2 and 3);
    sacct shows ranges (``2-3``), a step form (``1-21:4``) for long regular
    series, and ``%N`` for a throttle.  A string that is not a mask is
    returned as it is."""
    if not mask or not mask.lower().startswith("0x"):
        return mask
    value = int(mask, 16)
    tasks = [i for i in range(value.bit_length()) if value >> i & 1]
    out = _step_form(tasks) or ",".join(_ranges(tasks))
    return out + ("%%%d" % max_tasks if max_tasks else "")


def _step_form(tasks: list[int]) -> str | None:
    if len(tasks) <= 5 or tasks[-1] - tasks[0] <= 10 or \
            tasks[1] == tasks[0] + 1:
        return None
    step = tasks[1] - tasks[0]
    if any(b - a != step for a, b in zip(tasks, tasks[1:])):
        return None
    return "%d-%d:%d" % (tasks[0], tasks[-1], step)


def _ranges(tasks: list[int]):
    start = prev = None
    for t in tasks + [None]:
        if start is not None and t == prev + 1:
            prev = t
            continue
        if start is not None:
            yield str(start) if start == prev else "%d-%d" % (start, prev)
        start = prev = t


# sbatch's refusals: (pattern, limit, what it means)
REFUSALS = (
    (r"\bQOSMaxSubmitJobPerUserLimit\b", "QOSMaxSubmitJobPerUserLimit",
     "the QOS's limit on submitted (pending + running) jobs per user "
     "(MaxSubmitJobsPerUser) is reached"),
    (r"\bQOSMaxSubmitJobPerAccountLimit\b",
     "QOSMaxSubmitJobPerAccountLimit",
     "the QOS's limit on submitted jobs per account "
     "(MaxSubmitJobsPerAccount) is reached"),
    (r"\bAssocMaxSubmitJobLimit\b", "AssocMaxSubmitJobLimit",
     "your association's limit on submitted (pending + running) jobs "
     "(MaxSubmitJobs) is reached"),
    (r"\bAssocGrpSubmitJobsLimit\b", "AssocGrpSubmitJobsLimit",
     "the account's group limit on submitted jobs (GrpSubmitJobs) is "
     "reached"),
    (r"\bQOSGrpSubmitJobsLimit\b", "QOSGrpSubmitJobsLimit",
     "the QOS's group limit on submitted jobs (GrpSubmitJobs) is reached"),
    (r"Invalid account or account/partition combination", "invalid account",
     "the account (-A/--account) does not exist, or you may not use it "
     "(on this partition)"),
    (r"Invalid qos specification", "invalid QOS",
     "the QOS (--qos) does not exist, or your association may not use it"),
    (r"job queue full|(?s:unable to accept job.*Resource temporarily "
     r"unavailable)", "MaxJobCount",
     "slurmctld kept refusing new jobs through all of sbatch's retries: "
     "the cluster holds as many jobs as it may (MaxJobCount), or the "
     "controller is overloaded; try again later"),
    (r"error: (\w+Limit)\s*$", None, "a Slurm limit refused the job"),
)


def parse_sbatch_refusal(stderr: str) -> tuple[str, str] | None:
    """(limit, explanation) when sbatch's error output says which limit or
    check refused the job, else None."""
    for pattern, limit, why in REFUSALS:
        m = re.search(pattern, stderr or "", re.M)
        if m:
            return limit or m.group(1), why
    return None
