"""slurm-finish in data-flow order: producers first, blocked consumers
reported.

A job's producers are the open jobs whose outputs it reads (its
``depends_on``, see :mod:`.dataflow`); they are always older job-store rows
than the job itself, so deciding jobs in row order decides every producer
before its consumers.

* A consumer is committed only after every producer has been committed,
  earlier or in the same call.  In one call the commits are made in rounds
  (every job whose producers are committed, then the next level), so each
  consumer's run record names its producers' commits.
* A consumer whose producer failed, was closed or is blocked itself can
  never run (Slurm keeps it PENDING with reason DependencyNeverSatisfied,
  or cancels it where ``kill_invalid_depend`` is set), or it ran on the
  output of a job that will never be committed.  It is reported with the
  producer that blocks it; ``--close-failed-jobs`` cancels it in Slurm (one
  batched call) and closes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..dataset.handle import DatasetHandle
from ..dataset.jobstore import Job, JobStore
from ..slurm import JobInfo, SlurmError
from ..slurm.states import ACTIVE, COMPLETED, FAILED, UNKNOWN
from .results import job_result

NOT_RUN = (ACTIVE, UNKNOWN)     # a consumer that has not run (yet)


@dataclass
class Blocker:
    """The producer that keeps a consumer from ever being committed."""
    slurm_job_id: str | None
    cluster: str
    why: str

    def as_dict(self) -> dict:
        return {"slurm_job_id": self.slurm_job_id, "cluster": self.cluster,
                "reason": self.why}


def _deps(job: Job) -> list[dict]:
    return [d for d in job.spec.get("depends_on") or []
            if d.get("slurm_job_id")]


def _klass(info: JobInfo | None) -> str:
    return info.state_class if info is not None else UNKNOWN


def _stored_failed(job: Job) -> str | None:
    """The failed state a closed job's last known Slurm info shows."""
    info = job.slurm or {}
    if info.get("state_class") == FAILED:
        return info.get("state") or "FAILED"
    return None


class Flow:
    """The producers of the open jobs of one slurm-finish call."""

    def __init__(self, store: JobStore, live: list[Job],
                 infos: dict[str, JobInfo], commit_failed: bool,
                 gone: Callable[[Job], bool] = lambda job: False):
        """`gone(job)`: Slurm has not known the open job for so long that
        slurm-finish treats it as unknown rather than fresh."""
        self.store = store
        self.gone = gone
        self.live = {j.row: j for j in live}
        self.infos = infos
        self.commit_failed = commit_failed
        self._stored: dict[int, Job | None] = {}
        self.blocked: dict[int, Blocker] = {}
        for row in sorted(self.live):     # producers before consumers
            b = self._blocker(self.live[row])
            if b is not None:
                self.blocked[row] = b

    def info(self, job: Job) -> JobInfo | None:
        return self.infos.get(job.job_id)

    def _stored_job(self, dep: dict) -> Job | None:
        """A producer that is not among this call's open jobs."""
        row = dep.get("row")
        if row not in self._stored:
            hits = [j for j in self.store.find(dep["slurm_job_id"])
                    if j.row == row or (row is None and j.cluster
                                        == dep.get("cluster", ""))]
            self._stored[row] = hits[-1] if hits else None
        return self._stored[row]

    def _blocker(self, job: Job) -> Blocker | None:
        own = _klass(self.info(job))
        for dep in _deps(job):
            why = self._why_blocked(dep, own)
            if why:
                return Blocker(dep["slurm_job_id"], dep.get("cluster", ""),
                               why)
        return None

    def _why_blocked(self, dep: dict, own: str) -> str | None:
        """Why the producer `dep` blocks a consumer of class `own`."""
        row = dep.get("row")
        if row in self.blocked:
            return "is blocked itself (%s)" % _describe(self.blocked[row])
        producer = self.live.get(row)
        if producer is not None:
            info = self.info(producer)
            if _klass(info) == FAILED and (own in NOT_RUN
                                           or not self.commit_failed):
                return "ended %s" % info.state
            if _klass(info) == UNKNOWN and self.gone(producer):
                return "is unknown to Slurm"
            return None
        stored = self._stored_job(dep)
        if stored is None:
            return "is not in this dataset's job store"
        if stored.status == "abandoned":
            return "was closed (%s)" % (stored.reason or "abandoned")
        if stored.status == "rejected":
            return "was never submitted"
        failed = _stored_failed(stored)
        if stored.status == "committed" and failed and own in NOT_RUN:
            return "ended %s (committed as failed)" % failed
        return None

    def waiting_on(self, job: Job, done: dict[int, str]) -> list[dict]:
        """Producers of `job` not committed yet (`done`: row -> commit of
        the jobs committed in this call)."""
        out = []
        for dep in _deps(job):
            if dep.get("row") in done:
                continue
            if dep.get("row") not in self.live:
                stored = self._stored_job(dep)
                if stored is not None and stored.status == "committed":
                    continue
            out.append(dep)
        return out

    def fill_commits(self, spec, done: dict[int, str]) -> None:
        """Name each producer's commit in the spec the record is built
        from."""
        for dep in spec.depends_on or []:
            if not dep.get("slurm_job_id"):
                continue
            sha = done.get(dep.get("row"))
            if sha is None:
                stored = self._stored_job(dep)
                sha = stored.commit_sha if stored is not None else None
            dep["commit"] = sha

    def annotate(self, job: Job, res: dict) -> dict:
        """Say what a job still waiting in Slurm waits for."""
        waits = [d["slurm_job_id"] for d in self.waiting_on(job, {})]
        if waits and _klass(self.info(job)) == ACTIVE:
            res["waiting_for"] = waits
            msg = res.get("message")
            if isinstance(msg, tuple):
                msg = msg[0] % tuple(msg[1:])
            res["message"] = "%s (waiting for job %s)" % (msg, ", ".join(
                waits))
        return res


def _describe(b: Blocker) -> str:
    return "job %s %s" % (b.slurm_job_id, b.why)


def report_blocked(handle: DatasetHandle, flow: Flow, jobs: list[Job],
                   close: bool):
    """Result records for blocked consumers; with `close` cancel those
    that have not run (one Slurm call) and close them all."""
    cancel_error = None
    if close:
        waiting = [j.job_id for j in jobs
                   if _klass(flow.info(j)) in NOT_RUN]
        try:
            handle.backend.cancel(waiting)
        except SlurmError as e:
            cancel_error = e
    for job in jobs:
        b = flow.blocked[job.row]
        info = flow.info(job)
        state = info.state if info is not None else "UNKNOWN"
        kw = dict(state=state, blocked_by=[b.as_dict()])
        never = _klass(info) in NOT_RUN
        what = ("can never run" if never else
                "ran, but is not committed (its record would name a "
                "producer that is never committed)")
        if close and never and cancel_error is not None:
            yield job_result(handle, job, status="error", **kw, message=(
                "job %s is blocked (%s) and could not be cancelled: %s"
                % (job.job_id, _describe(b), cancel_error)))
        elif close:
            handle.store.abandon(job.row, "closed by slurm-finish: blocked, "
                                 "%s" % _describe(b))
            yield job_result(handle, job, status="ok", **kw, message=(
                "%s job %s: blocked, %s" % (
                    "cancelled and closed" if never else "closed",
                    job.job_id, _describe(b))))
        else:
            yield job_result(handle, job, status="impossible", **kw, message=(
                "job %s %s: its producer %s%s; use --close-failed-jobs to "
                "%s it" % (job.job_id, what, _describe(b),
                           " (Slurm keeps it pending: "
                           "DependencyNeverSatisfied)" if never else "",
                           "cancel and close" if never else "close")))


def commit_in_order(handle: DatasetHandle, flow: Flow, items: list,
                    commit_batch):
    """Commit `items` (Finished) in rounds: a job only once all of its
    producers are committed.  `commit_batch(items)` yields result records
    (those with a ``commit`` count as committed)."""
    done: dict[int, str] = {}
    pending = sorted(items, key=lambda i: i.job.row)
    while pending:
        ready = [i for i in pending if not flow.waiting_on(i.job, done)]
        if not ready:
            break
        rows = {(i.job.cluster, i.job.job_id): i.job.row for i in ready}
        for item in ready:
            flow.fill_commits(item.spec, done)
        for res in commit_batch(ready):
            row = rows.get((res.get("cluster"), res.get("slurm_job_id")))
            if row is not None and res.get("commit"):
                done[row] = res["commit"]
            yield res
        taken = {i.job.row for i in ready}
        pending = [i for i in pending if i.job.row not in taken]
    for item in pending:
        waits = flow.waiting_on(item.job, done)
        yield job_result(
            handle, item.job, status="impossible", state=item.info.state,
            waiting_for=[d["slurm_job_id"] for d in waits],
            message=("job %s %s but is not committed: its producer job %s "
                     "is not committed yet (finish it first, or in the "
                     "same call)" % (
                         item.job.job_id,
                         "completed" if _klass(item.info) == COMPLETED
                         else "ended %s" % item.info.state,
                         ", ".join(d["slurm_job_id"] for d in waits))))
