"""slurm-finish: one batched state query, then decide for every open job.

Committing is :mod:`.commit`'s; this module asks Slurm (once), sorts each
job by its state class and reports, closes or hands it on.
"""

from __future__ import annotations

import time

from datalad.interface.results import get_status_dict

from .. import faults
from ..dataset.handle import DatasetHandle
from ..dataset.jobstore import Job
from ..dataset.lock import repository_lock
from ..slurm import JobInfo, SlurmError
from ..slurm.argv import parse_array
from ..slurm.states import ACTIVE, COMPLETED, FAILED, UNKNOWN
from . import submissions
from .cluster import elsewhere
from .order import Flow, commit_in_order, report_blocked
from .recovery import clean_staged, close_pending
from .results import FINISH, job_result, lgr
from .spec import JobSpec
from .tasks import split_tasks

# a job Slurm does not know is only "unknown" after this long; before,
# it is a fresh submission accounting has not seen yet
UNKNOWN_GRACE = 300.0


def array_size(spec: str | None) -> int | None:
    """Number of tasks of an --array spec ('1-7:2,10%2' -> 5)."""
    if not spec:
        return None
    try:
        return len(parse_array(spec)[0])
    except ValueError:
        return None


def recover_pending(handle: DatasetHandle, jobs: list[Job],
                    keep_alt_dir: bool = False) -> dict:
    """Jobs whose commit was made by an interrupted run: close them (under
    the repository lock, on the rows as they are now)."""
    pending = [j for j in jobs if j.pending_commit]
    if not pending:
        return {}
    with repository_lock(handle.git_dir):
        done = close_pending(handle, [handle.store.get(j.row)
                                      for j in pending], keep_alt_dir)
    if done:
        clean_staged(handle)
    return done


def submitting(handle: DatasetHandle, jobs: list[Job], force: bool,
               list_only: bool):
    """Rows still being submitted: adopt or release interrupted ones.

    Yields result records; returns the adopted jobs (now open)."""
    adopted = []
    outcomes = ([(j, "working", submissions.describe(j)) for j in jobs]
                if list_only else submissions.resolve(handle, jobs, force))
    for job, outcome, text in outcomes:
        if outcome == "adopted":
            adopted.append(job)
            yield job_result(handle, job, status="ok", state="SUBMITTED",
                             message=text)
        elif outcome == "released":
            yield job_result(handle, job, status="ok", state="RELEASED",
                             message=text)
        elif outcome == "working":
            yield job_result(handle, job, status="notneeded",
                             state="SUBMITTING", message="being submitted: "
                             "%s" % text)
        else:
            yield job_result(
                handle, job, status="error", state="SUBMITTING",
                message="%s: %s; kept (--close-failed-jobs releases it)"
                % (submissions.describe(job), text))
    return adopted


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
           list_only: bool = False, keep_alt_dir: bool = False, jobs=None,
           query=None):
    # query: job ids -> JobInfo; slurm-finish --wait passes the answer of
    # its own poll so that no poll asks Slurm twice (default: ask Slurm)
    store = handle.store
    if not list_only:
        clean_staged(handle)
    wanted = [str(j) for j in job_ids] if job_ids else None
    open_jobs = store.jobs(("submitting", "open"), job_ids=wanted)
    if wanted is not None:
        yield from _not_open(handle, wanted, open_jobs)
    # submissions in progress or interrupted
    live = [j for j in open_jobs if j.status == "open"]
    pending = [j for j in open_jobs if j.status == "submitting"]
    if pending:
        live += yield from submitting(handle, pending, close_failed,
                                      list_only)
    if not live:
        if not list_only and wanted is None:
            yield _dataset_result(handle, status="notneeded",
                                  message="no open jobs")
        return
    if not list_only:
        recovered = recover_pending(handle, live, keep_alt_dir)
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
        ids = [j.job_id for j in live]
        infos = query(ids) if query else handle.backend.query(
            ids, since=min((j.submit_time or 0 for j in live), default=0)
            or None, steps=not list_only)
    except SlurmError as e:
        for job in live:
            yield job_result(handle, job, status="error",
                             message="cannot ask Slurm: %s" % e)
        return
    faults.point("finish:state-query")
    store.update_slurm({j.row: infos[j.job_id].as_dict()
                        for j in live if j.job_id in infos})
    if list_only:
        for job in live:
            yield _listed(handle, job, infos.get(job.job_id))
        return
    yield from _decide_all(handle, live, infos, message, close_failed,
                           commit_failed, keep_alt_dir, jobs)


def _decide_all(handle: DatasetHandle, live: list[Job], infos: dict,
                message: str | None, close_failed: bool, commit_failed: bool,
                keep_alt_dir: bool, jobs):
    """Decide every job (producers before consumers, see :mod:`.order`),
    then commit the finished ones in data-flow order."""
    now = time.time()

    def gone(job: Job) -> bool:
        return now - (job.submit_time or now) >= UNKNOWN_GRACE

    flow = Flow(handle.store, live, infos, commit_failed, gone)
    blocked = [j for j in live if j.row in flow.blocked]
    if blocked:
        yield from report_blocked(handle, flow, blocked, close_failed)
    to_commit = []
    for job in live:
        if job.row in flow.blocked:
            continue
        spec = JobSpec.from_dict(job.spec)
        info = infos.get(job.job_id)
        res = _decide(handle, job, spec, info, now, close_failed,
                      commit_failed)
        if res is None:
            to_commit.append(dict(
                job=job, spec=spec, info=info,
                split=split_tasks(info, commit_failed)
                if spec.tasks and info.tasks else None))
        else:
            yield flow.annotate(job, res)
    if to_commit:
        # committing imports what listing never needs (start-up cost)
        from .commit import Finished, commit_finished
        to_commit = [Finished(**t) for t in to_commit]
        yield from commit_in_order(
            handle, flow, to_commit, lambda batch: commit_finished(
                handle, batch, message, keep_alt_dir, jobs))


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
    deps = [d["slurm_job_id"] for d in job.spec.get("depends_on") or []
            if d.get("slurm_job_id")]
    return job_result(
        handle, job, status="ok", action="slurm-list-open-jobs",
        state=state, state_class=info.state_class if info else UNKNOWN,
        exit_code=info.exit_code if info else None, outputs=outputs,
        submit_time=job.submit_time, cmd=job.spec.get("cmd"),
        depends_on=deps,
        message="%s  %s  %s%s" % (job.job_id, state,
                                  ", ".join(outputs or []),
                                  "  (after %s)" % ", ".join(deps)
                                  if deps else ""))


def _decide(handle: DatasetHandle, job: Job, spec: JobSpec,
            info: JobInfo | None, now: float, close_failed: bool,
            commit_failed: bool) -> dict | None:
    """What to do with one open job: a result record, or None to commit."""
    klass = info.state_class if info else UNKNOWN
    expected = len(spec.tasks) or array_size(spec.array)
    if info is not None and expected and klass != ACTIVE and \
            len([t for t in info.tasks if t.isdigit()]) < expected:
        # accounting has not split the array into its tasks yet
        return job_result(handle, job, status="notneeded", state=info.state,
                          message=("array job %s: %d of %d tasks known to "
                                   "Slurm yet", job.job_id, len(info.tasks),
                                   expected))
    if info is None and handle.backend.accounting_error:
        return job_result(handle, job, status="notneeded", state="UNKNOWN",
                          message=("job %s: state not known yet (Slurm "
                                   "accounting is not answering: %s); kept "
                                   "open", job.job_id,
                                   handle.backend.accounting_error))
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
    if spec.tasks and info is not None and \
            split_tasks(info, False).completed:
        # per-task outputs: the completed tasks are committed, the failed
        # ones reported (jobs/tasks.py)
        return None
    if close_failed or (commit_failed and info is None):
        if not handle.store.abandon(job.row, "closed as %s by slurm-finish"
                                    % state):
            return job_result(handle, job, status="notneeded", state=state,
                              message=("job %s was closed or committed by "
                                       "another command", job.job_id))
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
