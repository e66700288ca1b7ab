"""A job's alt-dir staging: what to stage, copy back and clean up.

The file-system work is :mod:`datalad_hpcdata.altdir`'s; this module adds
what only the workflow knows: which inputs a job has, which paths other
open jobs in the same alt-dir still use, progress reporting.  Imported only
for alt-dir jobs.
"""

from __future__ import annotations

import logging
import os
import time

from datalad.log import log_progress

from ..altdir import (
    FetchReport,
    StageReport,
    StagingError,
    cleanup,
    fetch_outputs,
    prepare_output_dirs,
    stage_inputs,
)
from ..dataset.annexkeys import make_keys, plan_keys
from ..dataset.handle import DatasetHandle
from ..dataset.paths import expand
from ..slurm import JobInfo
from .dataflow import outside_claims, spec_claims
from .spec import JobSpec
from .tasks import output_specs

lgr = logging.getLogger("datalad.hpcdata.schedule")

__all__ = ["StagingError", "fetch_back", "stage_job", "unstage"]


def _threads(jobs) -> int:
    return jobs if isinstance(jobs, int) and jobs > 0 else 4


def staged_inputs(handle: DatasetHandle, spec: JobSpec) -> list[str]:
    return sorted({h for s in spec.input_specs
                   for h in expand(s, handle.root)})


def stage_job(handle: DatasetHandle, spec: JobSpec, jobs=None) -> StageReport:
    """Copy inputs into the alt-dir and prepare output dirs there."""
    alt_root = spec.alt_root
    prepare_output_dirs(alt_root, spec.output_specs, ds_root=handle.root)
    os.makedirs(os.path.join(alt_root, spec.pwd), exist_ok=True)
    pid = "hpcdata-stage-%d" % os.getpid()
    log_progress(lgr.info, pid, "Staging inputs to %s", alt_root,
                 label="Staging", unit=" Bytes", total=1)

    def progress(done_files, total_files, done_bytes, total_bytes):
        log_progress(lgr.info, pid, "", update=done_bytes,
                     total=max(total_bytes, 1), noninteractive_level=5)

    inputs = staged_inputs(handle, spec)
    if spec.depends_on:
        # what the job's producers write is already staged, by them
        inputs = outside_claims(handle.root, inputs,
                                spec_claims(spec.depends_on))
    try:
        report = stage_inputs(handle.root, alt_root, inputs,
                              jobs=_threads(jobs), progress=progress)
    finally:
        log_progress(lgr.info, pid, "Staged inputs", noninteractive_level=5)
    if report.failed:
        raise StagingError("could not stage inputs to %s: %s" % (
            alt_root, "; ".join("%s: %s" % f for f in report.failed)))
    return report


def other_staged_paths(handle: DatasetHandle, alt_root: str,
                       row: int) -> list[str]:
    """Paths other open jobs use in the same alt-dir (never cleaned up)."""
    keep = set()
    for job in handle.store.jobs():
        if job.row != row and job.spec.get("alt_root") == alt_root:
            keep.update(job.spec.get("input_specs") or [])
            keep.update(job.spec.get("output_specs") or [])
    return sorted(keep)


def unstage(handle: DatasetHandle, spec: JobSpec, row: int,
            logs=(), outputs=None) -> list[str]:
    """Remove what this job staged (`outputs`: the specs that were
    committed, default all), leaving other jobs' paths alone."""
    outputs = output_specs(spec) if outputs is None else outputs
    return cleanup(spec.alt_root, staged_inputs(handle, spec)
                   + list(outputs) + list(logs),
                   keep=other_staged_paths(handle, spec.alt_root, row))


def _epoch(stamp: str | None) -> float | None:
    try:
        return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
    except (TypeError, ValueError):
        return None


def fetch_back(handle: DatasetHandle, spec: JobSpec, info: JobInfo,
               logs: list[str], jobs=None,
               outputs=None) -> tuple[FetchReport, dict]:
    """Copy an alt-dir job's outputs (`outputs`: the specs to commit,
    default all) and logs into the dataset, verified; (the report, path ->
    annex key of the files hashed while copying, see
    :mod:`..dataset.annexkeys`)."""
    outputs = spec.output_specs if outputs is None else outputs
    plan: dict = {}

    def hashes(sizes: dict) -> dict:
        plan.update(plan_keys(handle.root, sizes))
        return {rel: algo for rel, (_, algo) in plan.items()}

    rep = fetch_outputs(handle.root, spec.alt_root, outputs, logs,
                        job_end_time=_epoch(info.end_time),
                        jobs=_threads(jobs),
                        hashes=hashes if handle.annex else None)
    keys = make_keys(handle.root, {
        rel: (plan[rel][0], size, digest)
        for rel, (size, _, digest) in rep.hashed.items()})
    return rep, keys
