"""Parsers for what the Slurm tools print (sbatch, sacct, squeue, scontrol).

The tools run with ``SLURM_TIME_FORMAT=standard`` and ``LC_ALL=C`` (see
:mod:`datalad_hpcdata.runner`), so times are ISO-8601 local times whatever
the user's settings.
"""

from __future__ import annotations

import re

from .states import normalize_state
from .types import JobInfo

SACCT_FIELDS = ("JobID", "JobIDRaw", "State", "ExitCode", "Submit", "Start",
                "End", "Elapsed", "NodeList", "MaxRSS")
SQUEUE_FORMAT = "%i|%A|%T|%V|%S|%e|%M|%N"
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


def _clean(value):
    return None if value in (None, "", "Unknown", "None", "N/A") else value


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
        if r is not None:
            rss[alloc] = max(rss.get(alloc, 0), r)
        if step:
            nodes = _clean(rec["NodeList"])
            if nodes and nodes != step_nodes.get(alloc) and count_hosts(
                    nodes) > count_hosts(step_nodes.get(alloc)):
                step_nodes[alloc] = nodes
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
        more = step_nodes.get(alloc)
        if more and more != info.nodes and \
                count_hosts(more) > count_hosts(info.nodes):
            info.nodes = more
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
