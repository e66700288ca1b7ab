"""What interrupted runs leave behind, finished by the next run.

* jobs whose commit a killed ``slurm-finish`` published (HEAD moved) but
  did not mark committed: their pending commit is an ancestor of HEAD, so
  they are closed as committed; pending commits that were not published
  are forgotten (the jobs are committed again, once);
* staged files of committed alt-dir jobs whose clean-up did not run (noted
  in the same transaction as the commit).
"""

from __future__ import annotations

from ..dataset.git import is_ancestor
from ..dataset.handle import DatasetHandle
from ..dataset.jobstore import Job
from ..dataset.lock import repository_lock
from ..slurm import JobInfo
from .logs import job_logs
from .spec import JobSpec


def close_pending(handle: DatasetHandle, jobs: list[Job],
                  keep_alt_dir: bool = False) -> dict:
    """Close jobs whose commit an interrupted run published; forget the
    pending commits it did not.  Call under the repository lock."""
    done = {}
    for job in jobs:
        if job is None or job.status != "open" or not job.pending_commit:
            continue
        if is_ancestor(handle.root, job.pending_commit):
            done[job.row] = job.pending_commit
        else:
            handle.store.clear_pending_commit(job.row)
            job.pending_commit = None
    if done:
        handle.store.mark_committed(done, cleanup=[
            j.row for j in jobs if j is not None and j.row in done
            and j.spec.get("alt_root") and not keep_alt_dir])
    return done


def clean_staged(handle: DatasetHandle) -> list[int]:
    """Remove the staged files of committed alt-dir jobs an interrupted
    run did not get to (noted with the commit); return their rows."""
    rows = handle.store.cleanups()
    if not rows:
        return []
    from . import staging
    with repository_lock(handle.git_dir):
        for row in handle.store.cleanups():
            job = handle.store.get(row)
            if job is not None and job.spec.get("alt_root"):
                spec = JobSpec.from_dict(job.spec)
                logs = job_logs(handle.root, spec, job.job_id,
                                JobInfo.from_dict(job.slurm)
                                if job.slurm else JobInfo(job.job_id))
                staging.unstage(handle, spec, row, logs)
            handle.store.cleanup_done(row)
    return rows
