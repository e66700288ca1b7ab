"""Feed the pyslurm stand-in (tests/standin) with what sacct reported.

`records_from_sacct` turns ``sacct -n -P --noconvert -o SACCT_FIELDS``
output back into the raw accounting records slurmdbd holds (and pyslurm
reads): array and heterogeneous structure from the JobID column, the pending
tasks of an array as the hex mask accounting stores, exit codes as wait
statuses, local times as epoch seconds, steps with their MaxRSS.
"""

from __future__ import annotations

import re
import time

from datalad_hpcdata.slurm.parse import SACCT_FIELDS
from datalad_hpcdata.slurm.states import normalize_state

NO_VAL = 0xfffffffe


def task_mask(spec: str) -> tuple[str, int]:
    """'2-3%2' -> ('0xC', 2): accounting's hex mask and the throttle."""
    spec, _, throttle = spec.partition("%")
    value = 0
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        for t in range(lo, hi + 1, int(m.group(3) or 1)):
            value |= 1 << t
    return "0x%X" % value, int(throttle or 0)


def epoch(text: str) -> int:
    if text in ("", "Unknown", "None"):
        return 0
    return int(time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S")))


def seconds(text: str) -> int:
    days, _, hms = text.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def wait_status(code: str) -> int:
    rc, _, sig = (code or "0:0").partition(":")
    return int(sig) if int(sig or 0) else int(rc) << 8


def records_from_sacct(text: str) -> list[dict]:
    records = {}
    steps = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < len(SACCT_FIELDS):
            continue
        row = dict(zip(SACCT_FIELDS, parts))
        if "." in row["JobID"]:
            steps.append(row)
            continue
        rec = {
            "jobid": int(row["JobIDRaw"]), "cluster": "hpcdata",
            "state": normalize_state(row["State"]),
            "exitcode": wait_status(row["ExitCode"]),
            "submit": epoch(row["Submit"]), "start": epoch(row["Start"]),
            "end": epoch(row["End"]), "elapsed": seconds(row["Elapsed"]),
            "nodes": row["NodeList"], "array_job_id": 0,
            "array_task_id": NO_VAL, "array_task_str": None,
            "array_max_tasks": 0, "het_job_id": 0, "het_job_offset": NO_VAL,
            "steps": []}
        m = re.fullmatch(r"(\d+)_(?:(\d+)|\[(.+)\])", row["JobID"])
        h = re.fullmatch(r"(\d+)\+(\d+)", row["JobID"])
        if m and m.group(2) is not None:
            rec.update(array_job_id=int(m.group(1)),
                       array_task_id=int(m.group(2)))
        elif m:
            mask, throttle = task_mask(m.group(3))
            rec.update(array_job_id=int(m.group(1)), array_task_str=mask,
                       array_max_tasks=throttle)
        elif h:
            rec.update(het_job_id=int(h.group(1)),
                       het_job_offset=int(h.group(2)))
        records[rec["jobid"]] = rec
    for row in steps:
        owner = int(row["JobIDRaw"].split(".")[0])
        rss = row["MaxRSS"].strip()
        records[owner]["steps"].append(
            {"id": row["JobID"].split(".", 1)[1],
             "max_rss": int(rss) if rss.isdigit() else None})
    return list(records.values())


def unsourced(info) -> dict:
    """A JobInfo as a dict without `source` (which says which backend)."""
    d = info.as_dict()
    d.pop("source")
    d["tasks"] = {k: unsourced(t) for k, t in info.tasks.items()}
    return d
