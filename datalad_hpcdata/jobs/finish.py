"""slurm-finish: one batched state query, then decide for every open job.

Committing is :mod:`.commit`'s; this module asks Slurm (once), sorts each
job by its state class and reports, closes or hands it on.
"""

from __future__ import annotations

import re
import time

from datalad.interface.results import get_status_dict

from ..dataset.git import is_ancestor
from ..dataset.handle import DatasetHandle
from ..dataset.jobstore import Job
from ..slurm import JobInfo, SlurmError
from ..slurm.states import ACTIVE, COMPLETED, FAILED, UNKNOWN
from .cluster import elsewhere
from .commit import Finished, commit_finished
from .results import FINISH, job_result, lgr
from .spec import JobSpec

# a job Slurm does not know is only "unknown" after this long; before,
# it is a fresh submission accounting has not seen yet
UNKNOWN_GRACE = 300.0


def array_size(spec: str | None) -> int | None:
    """Number of tasks of an --array spec ('1-7:2,10%2' -> 5)."""
    if not spec:
        return None
    spec = spec.split("%")[0]
    total = 0
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not m:
            return None
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        step = int(m.group(3)) if m.group(3) else 1
        total += len(range(lo, hi + 1, step))
    return total


def recover_pending(handle: DatasetHandle, jobs: list[Job]) -> dict:
    """Jobs whose commit was made by an interrupted run: close them."""
    done = {}
    for job in jobs:
        if not job.pending_commit:
            continue
        if is_ancestor(handle.root, job.pending_commit):
            done[job.row] = job.pending_commit
        else:
            handle.store.clear_pending_commit(job.row)
            job.pending_commit = None
    if done:
        handle.store.mark_committed(done)
    return done


def _dataset_result(handle: DatasetHandle, **kw) -> dict:
    return get_status_dict(action=FINISH, ds=handle.ds, path=handle.ds.path,
                           type="dataset", logger=lgr, **kw)


def _not_open(handle: DatasetHandle, wanted: list[str], jobs: list[Job]):
    """Results for requested job ids that are not open."""
    known = {j.job_id for j in jobs}
    for jid in wanted:
        if jid in known:
            continue
        history = handle.store.find(jid)
        why = ("it is %s" % history[-1].status if history
               else "it was not scheduled from this dataset")
        yield _dataset_result(handle, slurm_job_id=jid, status="impossible",
                              message=("job %s is not open: %s", jid, why))


def finish(handle: DatasetHandle, job_ids=None, message: str | None = None,
           close_failed: bool = False, commit_failed: bool = False,
           list_only: bool = False, keep_alt_dir: bool = False, jobs=None):
    store = handle.store
    wanted = [str(j) for j in job_ids] if job_ids else None
    open_jobs = store.jobs(("submitting", "open"), job_ids=wanted)
    if wanted is not None:
        yield from _not_open(handle, wanted, open_jobs)
    # submissions in progress or interrupted
    live = []
    for job in open_jobs:
        if job.status == "submitting":
            yield job_result(handle, job, status="notneeded",
                             state="SUBMITTING",
                             message="being submitted by pid %s" % job.pid)
        else:
            live.append(job)
    if not live:
        if not list_only and wanted is None:
            yield _dataset_result(handle, status="notneeded",
                                  message="no open jobs")
        return
    if not list_only:
        recovered = recover_pending(handle, live)
        for job in live:
            if job.row in recovered:
                yield job_result(
                    handle, job, status="ok", state="COMPLETED",
                    commit=recovered[job.row],
                    message="committed by an interrupted earlier run")
        live = [j for j in live if j.row not in recovered]
    here, live, other = elsewhere(handle, live)
    yield from _other_cluster(handle, here, other, list_only)
    if not live:
        return
    try:
        # listing needs no step details (MaxRSS): far less work for slurmdbd
        infos = handle.backend.query([j.job_id for j in live],
                                     steps=not list_only)
    except SlurmError as e:
        for job in live:
            yield job_result(handle, job, status="error",
                             message="cannot ask Slurm: %s" % e)
        return
    store.update_slurm({j.row: infos[j.job_id].as_dict()
                        for j in live if j.job_id in infos})
    if list_only:
        for job in live:
            yield _listed(handle, job, infos.get(job.job_id))
        return
    to_commit = []
    now = time.time()
    for job in live:
        spec = JobSpec.from_dict(job.spec)
        info = infos.get(job.job_id)
        res = _decide(handle, job, spec, info, now, close_failed,
                      commit_failed)
        if res is None:
            to_commit.append(Finished(job, spec, info))
        else:
            yield res
    if to_commit:
        yield from commit_finished(handle, to_commit, message, keep_alt_dir,
                                   jobs)


def _other_cluster(handle: DatasetHandle, here: str, jobs: list[Job],
                   list_only: bool):
    for job in jobs:
        yield job_result(
            handle, job, status="notneeded", state="OTHER_CLUSTER",
            action="slurm-list-open-jobs" if list_only else FINISH,
            message=("job %s was submitted to cluster %s, not to %s (the "
                     "one SLURM_CONF selects here): not asked about",
                     job.job_id, job.cluster, here))


def _listed(handle: DatasetHandle, job: Job, info: JobInfo | None) -> dict:
    state = info.state if info else "UNKNOWN"
    outputs = job.spec.get("outputs")
    return job_result(
        handle, job, status="ok", action="slurm-list-open-jobs",
        state=state, state_class=info.state_class if info else UNKNOWN,
        exit_code=info.exit_code if info else None, outputs=outputs,
        submit_time=job.submit_time, cmd=job.spec.get("cmd"),
        message="%s  %s  %s" % (job.job_id, state,
                                ", ".join(outputs or [])))


def _decide(handle: DatasetHandle, job: Job, spec: JobSpec,
            info: JobInfo | None, now: float, close_failed: bool,
            commit_failed: bool) -> dict | None:
    """What to do with one open job: a result record, or None to commit."""
    klass = info.state_class if info else UNKNOWN
    expected = array_size(spec.array)
    if info is not None and expected and klass != ACTIVE and \
            len([t for t in info.tasks if t.isdigit()]) < expected:
        # accounting has not split the array into its tasks yet
        return job_result(handle, job, status="notneeded", state=info.state,
                          message=("array job %s: %d of %d tasks known to "
                                   "Slurm yet", job.job_id, len(info.tasks),
                                   expected))
    if klass == UNKNOWN and now - (job.submit_time or now) < UNKNOWN_GRACE:
        return job_result(handle, job, status="notneeded", state="UNKNOWN",
                          message="not yet visible to Slurm; try again "
                                  "shortly")
    if klass == ACTIVE:
        return job_result(handle, job, status="notneeded", state=info.state,
                          message=("job %s is still %s", job.job_id,
                                   info.state.lower()))
    if klass == COMPLETED:
        return None
    assert klass in (FAILED, UNKNOWN), klass
    state = info.state if info else "UNKNOWN"
    exit_code = info.exit_code if info else None
    if commit_failed and info is not None:
        return None
    if close_failed or (commit_failed and info is None):
        handle.store.abandon(job.row, "closed as %s by slurm-finish" % state)
        return job_result(handle, job, status="ok", state=state,
                          exit_code=exit_code,
                          message=("closed job %s (%s%s); outputs left "
                                   "untouched and uncommitted", job.job_id,
                                   state, " on %s" % info.nodes
                                   if info and info.nodes else ""))
    msg = ("job %s %s%s%s; kept open (use --close-failed-jobs or "
           "--commit-failed-jobs)" % (
               job.job_id,
               "is unknown to Slurm" if info is None else "ended %s" % state,
               " on %s" % info.nodes if info and info.nodes else "",
               "" if exit_code is None else " with exit code %s" % exit_code))
    return job_result(handle, job, status="impossible", state=state,
                      exit_code=exit_code, message=msg)
