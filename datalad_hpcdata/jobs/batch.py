"""slurm-schedule --jobs-from: many jobs in one call.

One job per line (JSON lines; from Python also a list of dicts) with the
keys of a slurm-schedule call.  Every line is validated first with
:func:`.schedule.plan` (paths, placeholders per line, alt-dir), and the
lines' outputs are checked against each other and against the claims of
open jobs; a bad line gives an error naming it and nothing is submitted.
Then the jobs are claimed and submitted one by one in this process, each
with its own result (and at most one repository-lock acquisition, in
:func:`.schedule.schedule`).  Claiming stays the atomic step: a job that
another process claimed in the meantime is refused on its own and the
others go on.

Submissions are pipelined: while job N+1 is claimed, prepared and
submitted, a worker thread asks Slurm for job N's details (``scontrol``,
half of the per-job cost); job N's id is recorded as soon as ``sbatch``
returned, its result is yielded once its details are in.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

from datalad.interface.results import get_status_dict
from datalad.log import log_progress

from ..dataset.handle import DatasetHandle
from ..dataset.paths import ancestors
from . import dataflow
from .schedule import (
    ACTION,
    ScheduleError,
    lgr,
    plan,
    schedule,
)

LISTS = ("inputs", "outputs", "extra_inputs")
TEXTS = ("message", "alt_dir")
CHOICES = {"expand": (None, "inputs", "outputs", "both"),
           "assume_ready": (None, "inputs", "outputs", "both")}
KEYS = ("cmd",) + LISTS + TEXTS + tuple(CHOICES)


class Problem(ValueError):
    """A bad line: where (``line 3`` / ``job 3``) and what."""

    def __init__(self, where: str, what: str):
        self.where, self.what = where, what
        super().__init__("%s: %s" % (where, what))


def read_jobs(source) -> list[tuple[str, object]]:
    """(where, item) for every job of FILE, '-' (stdin) or a list."""
    if isinstance(source, (list, tuple)):
        return [("job %d" % n, item) for n, item in enumerate(source, 1)]
    source = str(source)
    if source == "-":
        text, name = sys.stdin.read(), "stdin"
    else:
        try:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise Problem(source, "cannot read it: %s" % e.strerror)
        name = source
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = "%s line %d" % (name, n)
        try:
            out.append((where, json.loads(line)))
        except json.JSONDecodeError as e:
            out.append((where, Problem(where, "not valid JSON (%s)" % e)))
    return out


def _strings(where: str, key: str, value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise Problem(where, "%r must be a string or a list of strings" % key)


def check_item(where: str, item, defaults: dict) -> dict:
    """The keyword arguments of plan() for one job (Problem if bad)."""
    if isinstance(item, Problem):
        raise item
    if not isinstance(item, Mapping):
        raise Problem(where, "a job is a JSON object like {\"cmd\": "
                      "\"sbatch job.sh\", \"outputs\": [\"out\"]}, not %s"
                      % type(item).__name__)
    unknown = sorted(set(item) - set(KEYS))
    if unknown:
        raise Problem(where, "unknown key%s %s (known: %s)" % (
            "s" if len(unknown) > 1 else "", ", ".join(map(repr, unknown)),
            ", ".join(KEYS)))
    cmd = item.get("cmd")
    if not isinstance(cmd, str):
        cmd = _strings(where, "cmd", cmd)
    if not cmd:
        raise Problem(where, "no 'cmd' (the submission, e.g. \"sbatch "
                      "job.sh\")")
    kw = dict(defaults)
    kw.update({k: _strings(where, k, item.get(k)) for k in LISTS})
    for key in TEXTS:
        if key in item:
            if item[key] is not None and not isinstance(item[key], str):
                raise Problem(where, "%r must be a string" % key)
            kw[key] = item[key]
    for key, allowed in CHOICES.items():
        if key in item:
            if item[key] not in allowed:
                raise Problem(where, "%r must be one of %s" % (
                    key, ", ".join(a for a in allowed if a)))
            kw[key] = item[key]
    kw["cmd"] = cmd
    return kw


class _Claims:
    """The outputs claimed by the lines seen so far."""

    def __init__(self):
        self.paths = {}         # claim -> where
        self.below = {}         # ancestor of a claim -> where

    def add(self, where: str, claims: list[str]) -> None:
        for claim in claims:
            other = self.paths.get(claim) or self.below.get(claim) or next(
                (self.paths[a] for a in ancestors(claim)
                 if a in self.paths), None)
            if other is not None and other != where:
                raise Problem(where, "output %r overlaps an output of %s"
                              % (claim, other))
        for claim in claims:
            self.paths.setdefault(claim, where)
            for a in ancestors(claim):
                self.below.setdefault(a, where)


def _plan(handle: DatasetHandle, pwd: str, kw: dict, planned=()):
    kw = dict(kw)
    return plan(handle, kw.pop("cmd"), pwd, expand_opt=kw.pop("expand", None),
                planned=planned, **kw)


def plan_all(handle: DatasetHandle, source, pwd: str,
             defaults: dict) -> tuple[list, list[Problem]]:
    """[(where, JobSpec, its options)] for every job, and the problems
    found."""
    try:
        items = read_jobs(source)
    except Problem as e:
        return [], [e]
    specs, problems, claims = [], [], _Claims()
    for where, item in items:
        try:
            kw = check_item(where, item, defaults)
            # earlier lines count as producers (their inputs need not exist)
            spec = _plan(handle, pwd, kw, planned=[
                dataflow.Planned(w, s.claims, s.alt_root)
                for w, s, _ in specs])
            claims.add(where, spec.claims)
            taken = handle.store.overlapping_claims(spec.claims)
            if taken:
                raise Problem(where, "; ".join(
                    "output %r overlaps %r claimed by job %s"
                    % (new, old, job.label) for new, old, job in taken))
        except ScheduleError as e:
            problems.append(Problem(where, str(e)))
        except Problem as e:
            problems.append(e)
        else:
            specs.append((where, spec, kw))
    if not items and not problems:
        problems.append(Problem(str(source), "no jobs in it"))
    return specs, problems


def schedule_many(handle: DatasetHandle, source, pwd: str,
                  defaults: dict | None = None, jobs=None,
                  dry_run: str | None = None):
    """Validate every job of `source`, then schedule them one by one."""
    ds = handle.ds
    specs, problems = plan_all(handle, source, pwd, dict(defaults or {}))
    for p in problems:
        yield get_status_dict(action=ACTION, ds=ds, path=ds.path,
                              type="dataset", status="impossible",
                              logger=lgr, where=p.where,
                              message="%s (nothing was submitted)" % p)
    if problems:
        return
    pid = "hpcdata-batch-%d-%d" % (os.getpid(), id(specs))
    log_progress(lgr.info, pid, "Scheduling %d jobs", len(specs),
                 total=len(specs), label="Scheduling", unit=" jobs")
    try:
        for res in _pipelined(handle, specs, pwd, jobs, dry_run):
            yield res
            if res.get("status") != "ok" or res.get("slurm_job_id") or \
                    res.get("dry_run"):
                log_progress(lgr.info, pid, "", update=1, increment=True,
                             noninteractive_level=5)
    finally:
        log_progress(lgr.info, pid, "Scheduled %d jobs", len(specs),
                     noninteractive_level=5)


def _pipelined(handle: DatasetHandle, specs: list, pwd: str, jobs,
               dry_run: str | None):
    """schedule() every job in order, one after the other.  A line that
    reads what an earlier line writes is planned again once that line is
    claimed, so its --dependency names that job."""
    for where, spec, kw in specs:
        if not dry_run and dataflow.late_producers(
                handle.store, spec.input_specs, spec.depends_on, None):
            try:
                spec = _plan(handle, pwd, kw)
            except ScheduleError as e:
                yield get_status_dict(
                    action=ACTION, ds=handle.ds, path=handle.ds.path,
                    type="dataset", status="error", logger=lgr,
                    where=where, message=str(e))
                continue
        for res in dataflow.annotate(
                schedule(handle, spec, jobs=jobs, dry_run=dry_run), spec):
            res["where"] = where
            yield res

