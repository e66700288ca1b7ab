"""Data flow between jobs at schedule time: inputs that open jobs write.

An input (or extra input) that lies in, under or over an output claimed by
an open job makes the new job depend on that job, its *producer*: the job
is submitted with ``--dependency=afterok:<ids>`` merged with the user's own
dependency (command line or ``#SBATCH`` line), the input need not exist
yet, and it is neither fetched nor staged (the producer writes it).
Configuration ``datalad.hpcdata.dependencies``: ``auto`` (default) or
``refuse`` (such a schedule is refused, naming the producer).

The lookup reads only the claims of open jobs (one indexed query on the
claims table, :meth:`JobStore.overlapping_claims`): its cost does not grow
with the number of jobs in the history.

No dependency cycle can arise, by construction: a job can only depend on
jobs whose outputs were already claimed when it was planned, and its own
claims do not exist yet.  Every edge points from an older job (smaller
job-store row) to a newer one; slurm-finish relies on that and decides
producers before consumers simply in row order.
"""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..dataset.handle import DatasetHandle
from ..dataset.jobstore import JobStore
from ..dataset.paths import contains, glob_base, has_glob, overlaps, walk_files
from ..slurm.argv import (
    is_sbatch,
    merge_dependency,
    user_clusters,
    user_dependency,
    with_dependency,
)

MODES = ("auto", "refuse")
CONFIG = "datalad.hpcdata.dependencies"
# how long to wait for a producer that is being submitted to get its id
WAIT_SUBMITTING = 30.0


class DataflowError(ValueError):
    """The dependency cannot be set up; nothing was changed."""


@dataclass
class Planned:
    """A job planned (not submitted) earlier in the same call, e.g. by
    ``slurm-reschedule --report``: it will claim `claims`."""
    label: str
    claims: list[str]
    alt_root: str | None = None


@dataclass
class Producer:
    """An open (or planned) job whose outputs a new job reads."""
    slurm_job_id: str | None
    cluster: str = ""
    row: int | None = None
    alt_root: str | None = None
    claims: list[str] = field(default_factory=list)   # its, that we read
    inputs: list[str] = field(default_factory=list)   # ours, that it writes
    planned: str | None = None

    @property
    def label(self) -> str:
        if self.slurm_job_id:
            return "job %s" % self.slurm_job_id
        return self.planned or "a planned job"

    def as_dict(self) -> dict:
        d = {"claims": self.claims, "inputs": self.inputs}
        if self.planned:
            d["planned"] = self.planned
        else:
            d.update(slurm_job_id=self.slurm_job_id, cluster=self.cluster,
                     row=self.row)
        return d


def lookup_path(spec: str) -> str:
    """The literal part of an input spec, to look claims up by."""
    return glob_base(spec) if has_glob(spec) else spec


def spec_overlaps(spec: str, path: str) -> bool:
    """Can input `spec` (canonical, maybe a glob) name something in, under
    or over the canonical `path`?"""
    if not has_glob(spec):
        return overlaps(spec, path)
    for pat, part in zip(spec.split("/"), path.split("/")):
        if pat == "**":
            return True
        if not fnmatch.fnmatchcase(part, pat):
            return False
    return True


def _matches(specs: list[str], claims: Iterable[str]):
    """{claim: [specs reading it]} for the claims some spec overlaps."""
    found = {}
    for claim in claims:
        hit = [s for s in specs if spec_overlaps(s, claim)]
        if hit:
            found[claim] = hit
    return found


def find_producers(store: JobStore, specs: list[str],
                   planned: Iterable[Planned] = (),
                   wait: float = WAIT_SUBMITTING,
                   exclude: int | None = None) -> list[Producer]:
    """The open jobs (and `planned` ones) writing what `specs` read,
    oldest first (not the job-store row `exclude`)."""
    if not specs:
        return []
    bases = sorted({lookup_path(s) for s in specs})
    deadline = time.monotonic() + wait
    while True:
        jobs = {}
        claims = {}
        for _, claim, job in store.overlapping_claims(bases):
            if job.row == exclude:
                continue
            jobs[job.row] = job
            claims[claim] = job.row
        hits = _matches(specs, claims)
        rows = {claims[c] for c in hits}
        busy = [jobs[r] for r in rows if jobs[r].status == "submitting"]
        if not busy:
            break
        if time.monotonic() > deadline:
            claim = next(c for c in hits if claims[c] == busy[0].row)
            raise DataflowError(
                "input %r overlaps %r, claimed by a submission still in "
                "progress (pid %s); try again once it has its job id"
                % (hits[claim][0], claim, busy[0].pid))
        time.sleep(0.05)
    producers = {}
    for claim, readers in sorted(hits.items()):
        job = jobs[claims[claim]]
        p = producers.setdefault(job.row, Producer(
            job.job_id, job.cluster, job.row, job.spec.get("alt_root")))
        p.claims.append(claim)
        p.inputs.extend(s for s in readers if s not in p.inputs)
    result = [producers[r] for r in sorted(producers)]
    for plan in planned:
        hit = _matches(specs, plan.claims)
        if hit:
            result.append(Producer(
                None, alt_root=plan.alt_root, claims=sorted(hit),
                inputs=sorted({s for v in hit.values() for s in v}),
                planned=plan.label))
    return result


def producers(handle: DatasetHandle, specs: list[str],
              planned=()) -> list[Producer]:
    """The producers of a job reading `specs`, checked against the
    configuration (the staging directory: :func:`check_alt_root`)."""
    found = find_producers(handle.store, specs, planned)
    check_mode(handle.ds.config.get(CONFIG), found)
    return found


def late_producers(store: JobStore, input_specs: list[str],
                   depends_on: list[dict], row: int) -> list[Producer]:
    """Jobs that claimed an input of the job in `row` after it was planned
    (a schedule running at the same time); called under the claim's lock,
    so none can appear after this check."""
    known = {d.get("row") for d in depends_on or []}
    return [p for p in find_producers(store, input_specs, wait=0,
                                      exclude=row) if p.row not in known]


def produced_specs(producers: list[Producer]) -> set[str]:
    return {s for p in producers for s in p.inputs}


def outside_claims(root: str, hits: list[str],
                   claims: list[str]) -> list[str]:
    """The parts of the existing canonical paths `hits` that no producer
    writes: a hit in or at a claim is dropped, a directory holding a claim
    is replaced by its files outside the claim."""
    out = []
    for hit in hits:
        if any(contains(c, hit) for c in claims):
            continue
        inner = [c for c in claims if contains(hit, c)]
        if not inner:
            out.append(hit)
            continue
        out.extend(f for f in walk_files(hit, root)
                   if not any(contains(c, f) for c in inner))
    return out


def spec_claims(depends_on: list[dict]) -> list[str]:
    """Every claim a job's producers hold that the job reads."""
    return sorted({c for d in depends_on or [] for c in d.get("claims", [])})


def check_mode(mode: str | None, producers: list[Producer]) -> None:
    mode = (mode or "auto").strip().lower()
    if mode not in MODES:
        raise DataflowError("%s must be auto or refuse, not %r"
                            % (CONFIG, mode))
    if mode == "refuse" and producers:
        raise DataflowError("%s (%s=refuse): %s" % (
            "; ".join(_reads(p) for p in producers), CONFIG,
            "finish the producing job(s) first"))


def _reads(p: Producer) -> str:
    return "input %s is written by %s (output %s)" % (
        ", ".join(repr(i) for i in p.inputs), p.label,
        ", ".join(repr(c) for c in p.claims))


def _where(alt_root: str | None) -> str:
    return "in the alt-dir %s" % alt_root if alt_root else "in the dataset"


def check_alt_root(alt_dir: str | None, producers: list[Producer]) -> None:
    """Producer and consumer must share the staging directory: the
    consumer reads the producer's staged output in place.  `alt_dir` is
    resolved like altdir.check_alt_dir does, without creating it."""
    alt_root = os.path.realpath(os.path.abspath(os.path.expanduser(
        str(alt_dir)))) if alt_dir else None
    for p in producers:
        if (p.alt_root or None) != (alt_root or None):
            raise DataflowError(
                "%s, which runs %s; this job would run %s. A job reading "
                "another open job's output must use the same staging "
                "directory: schedule it %s" % (
                    _reads(p), _where(p.alt_root), _where(alt_root),
                    "with --alt-dir %s" % p.alt_root if p.alt_root
                    else "without --alt-dir"))


def add_dependency(argv: list[str], cwd: str, producers: list[Producer],
                   default_cluster: Callable[[], str]
                   ) -> tuple[list[str], str | None]:
    """`argv` with the producers' afterok merged into the user's own
    dependency; (argv, the --dependency value) -- unchanged without
    submitted producers."""
    real = [p for p in producers if p.slurm_job_id]
    if not real:
        return argv, None
    if not is_sbatch(argv):
        raise DataflowError(
            "%s; the dependency on it can only be added to an sbatch call, "
            "and the command is %r" % (_reads(real[0]), argv[0]))
    clusters = sorted({p.cluster for p in real})
    wanted = user_clusters(argv, cwd) or default_cluster()
    if len(clusters) > 1 or (clusters[0] and wanted != clusters[0]):
        raise DataflowError(
            "the producers of this job's inputs ran on cluster(s) %s and "
            "this job would run on %r: a Slurm dependency cannot cross "
            "clusters" % (", ".join(clusters), wanted))
    ids = sorted({p.slurm_job_id for p in real},
                 key=lambda j: (len(j), j))
    user, origin = user_dependency(argv, cwd)
    try:
        dependency = merge_dependency(user, ids)
    except ValueError as e:
        raise DataflowError("%s (%s)" % (e, origin))
    return with_dependency(argv, dependency), dependency


def public(depends_on: list[dict]) -> list[dict]:
    """What result and run records show of a job's producers."""
    out = []
    for d in depends_on or []:
        d = {k: v for k, v in d.items() if k not in ("row", "claims")}
        out.append(d)
    return out


def annotate(results, spec):
    """Add the job's producers to slurm-schedule's result records."""
    deps = public(spec.depends_on)
    waits = ", ".join(d.get("slurm_job_id") or d.get("planned", "?")
                      for d in deps)
    for r in results:
        if deps and r.get("status") == "ok":
            r["depends_on"] = deps
            if spec.dependency:
                r["dependency"] = spec.dependency
            msg = r.get("message")
            if isinstance(msg, tuple):
                r["message"] = (msg[0] + "; waits for %s",) + msg[1:] + (
                    waits,)
            elif msg:
                r["message"] = "%s; waits for %s" % (msg, waits)
        yield r
