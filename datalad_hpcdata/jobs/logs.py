"""Slurm log file names: the patterns a job writes, and the files it wrote.

At submission, :func:`log_patterns` turns what ``scontrol`` shows into
absolute patterns (``%A``/``%a`` for arrays); at finish time,
:func:`job_logs` expands them per task with Slurm's own rules and keeps the
files that exist inside the dataset (or the alt-dir the job ran in).
"""

from __future__ import annotations

import os
import re

from ..dataset.paths import PathError, canonical
from ..slurm import JobInfo
from .spec import JobSpec

NO_VAL = "4294967294"   # what scontrol prints for %a of a pending array


def log_patterns(info: dict, pwd_abs: str, job_id: str) -> list[str]:
    """Slurm log path patterns as the job will write them (absolute).

    scontrol shows a plain job's log names expanded.  For an array it shows
    the master record with %a as NO_VAL and %A/%j as the master id: turn
    those back into %a and %A (a %j pattern is re-derived per task at
    finish time, see :func:`job_logs`)."""
    pats = []
    workdir = info.get("WorkDir") or pwd_abs
    array = bool(info.get("ArrayTaskId"))
    for key in ("StdOut", "StdErr"):
        value = info.get(key)
        if not value and key == "StdOut":
            value = "slurm-%A_%a.out" if array else "slurm-%j.out"
        if not value or value == "/dev/null":
            continue
        if array:
            value = value.replace(NO_VAL, "%a")
            value = re.sub(r"(?<!\d)%s(?!\d)" % re.escape(str(job_id)), "%A",
                           value)
        value = os.path.join(workdir, value)
        if value not in pats:
            pats.append(value)
    return pats


def expand_log(pattern: str, master: str, task: str | None, raw_id: str,
               name: str | None, nodes: str | None) -> str:
    """Expand Slurm's filename pattern (%A %a %j %x %u %N %%, padding)."""
    def sub(m):
        pad, code = m.group(1), m.group(2)
        value = {
            "A": master, "a": task if task is not None else NO_VAL,
            "j": raw_id, "x": name or "", "u": os.environ.get("USER", ""),
            "N": (nodes or "").split(",")[0], "%": "%",
        }.get(code)
        if value is None:
            return m.group(0)
        if pad and value.isdigit():
            value = value.zfill(int(pad))
        return value
    return re.sub(r"%(\d*)([AajxuN%])", sub, pattern)


def job_logs(root: str, spec: JobSpec, job_id: str,
             info: JobInfo | None) -> list[str]:
    """Dataset-relative paths of the job's existing Slurm logs inside it
    (for an alt-dir job: inside the alt-dir, where the job wrote them)."""
    base = spec.alt_root or root
    pats = spec.slurm_logs
    name = spec.job_name
    targets = []
    if info is not None and info.tasks:
        for task, tinfo in info.tasks.items():
            for p in pats:
                targets.append(expand_log(p, job_id, task, tinfo.job_id,
                                          name, tinfo.nodes))
                # a %j in an array's pattern looked like %A at submit time
                targets.append(expand_log(p.replace("%A", "%j"), job_id,
                                          task, tinfo.job_id, name,
                                          tinfo.nodes))
    else:
        nodes = info.nodes if info else None
        for p in pats:
            targets.append(expand_log(p, job_id, None, job_id, name, nodes))
    logs = []
    for t in targets:
        try:
            rel = canonical(t, base, base)
        except PathError:
            continue    # outside the dataset: not recorded
        if rel not in logs and os.path.lexists(os.path.join(base, rel)):
            logs.append(rel)
    return sorted(logs)
