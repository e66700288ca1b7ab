"""slurm-finish --wait: stay until the chosen jobs have ended, committing
each as soon as it ends.

A loop around :func:`.finish.finish`, which decides and commits exactly as
a plain ``slurm-finish`` does (data-flow order, crash safety, one commit per
job).  Every poll is one batched Slurm query for the jobs still waited for;
only jobs Slurm no longer reports as active are handed to ``finish()``,
together with that query's answer (``finish(query=...)``), so no poll asks
Slurm twice.

Polling is gentle on the controller: the first check comes after the
shortest interval, the interval grows 1.5x after every poll where nothing
ended (up to the longest) and halves when something did
(``datalad.hpcdata.poll-interval``: ``FIRST`` or ``FIRST:MAX`` seconds,
default 5:180).

Ctrl-C during the sleep or the query stops at once; during the commits of
the jobs that ended it is held until they are done, so no job is left
half-done (a second Ctrl-C does not wait).  Jobs another ``slurm-finish``
commits meanwhile are reported as such, never committed twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager

from datalad.interface.results import get_status_dict
from datalad.log import log_progress

from ..dataset.handle import DatasetHandle
from ..dataset.jobstore import Job
from ..slurm import JobInfo, SlurmError
from ..slurm.states import ACTIVE
from .finish import finish
from .results import FINISH, job_result, lgr

DEFAULT_POLL = (5.0, 180.0)
CONFIG = "datalad.hpcdata.poll-interval"


def poll_interval(value) -> tuple[float, float]:
    """(first, longest) seconds from ``FIRST`` or ``FIRST:MAX``."""
    if value is None or str(value).strip() == "":
        return DEFAULT_POLL
    first, _, most = str(value).partition(":")
    try:
        first_s = float(first)
        most_s = float(most) if most.strip() else max(first_s,
                                                      DEFAULT_POLL[1])
    except ValueError:
        first_s = most_s = -1.0
    if not (0 < first_s <= most_s):
        raise ValueError(
            "%s must be FIRST or FIRST:MAX seconds with 0 < FIRST <= MAX "
            "(e.g. 5:180), not %r" % (CONFIG, value))
    return first_s, most_s


class Backoff:
    """Seconds to sleep before the next poll."""

    GROW, SHRINK = 1.5, 0.5

    def __init__(self, first: float, most: float):
        self.first, self.most = first, most
        self.delay = first

    def after(self, changed: bool) -> float:
        """The next delay, after a poll where something ended or not."""
        factor = self.SHRINK if changed else self.GROW
        self.delay = min(self.most, max(self.first, self.delay * factor))
        return self.delay


@contextmanager
def deferred_interrupt():
    """Hold Ctrl-C (SIGINT) until the block is done, then raise
    KeyboardInterrupt; a second Ctrl-C raises at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hits = []

    def handler(signum, frame):
        hits.append(signum)
        if len(hits) > 1:
            raise KeyboardInterrupt
        lgr.warning("interrupted: stopping once the jobs being committed "
                    "are done (Ctrl-C again to stop at once)")

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None
                      else signal.default_int_handler)
    if hits:
        raise KeyboardInterrupt


def _waiting_state(info: JobInfo) -> str:
    if not info.tasks:
        return info.state or "UNKNOWN"
    states = {t.state for t in info.tasks.values()}
    return "RUNNING" if "RUNNING" in states else sorted(states)[0]


def _counts(counter: Counter) -> str:
    return ", ".join("%s %d" % kv for kv in sorted(counter.items()))


class Waiter:
    """The jobs one ``--wait`` call waits for, and what became of them."""

    def __init__(self, handle: DatasetHandle, jobs: list[Job],
                 finish_opts: dict):
        self.handle = handle
        self.pending = {j.job_id: j for j in jobs}
        self.total = len(self.pending)
        self.opts = finish_opts
        self.ended = Counter()          # final state -> jobs
        self.failed = {}                # job id -> state, not committed ok
        self.states = {}                # job id -> Slurm state, last poll
        self.notes = {}                 # job id -> finish()'s last word
        self.polls = self.queries = 0
        self.query_error = None

    def label(self) -> str:
        done = sum(self.ended.values())
        text = "%d/%d ended" % (done, self.total)
        if self.ended:
            text += ": %s" % _counts(self.ended)
        waiting = Counter(self.states[j] for j in self.pending
                          if j in self.states)
        if waiting:
            text += "; waiting: %s" % _counts(waiting)
        return text

    def _end(self, jid: str, state: str, ok: bool) -> None:
        self.pending.pop(jid, None)
        self.ended[state] += 1
        if not ok or state != "COMPLETED":
            self.failed[jid] = state

    def closed_elsewhere(self, jid: str) -> dict:
        """A result for a job another slurm-finish committed or closed."""
        job = self.pending[jid]
        now = [j for j in self.handle.store.find(jid) if j.row == job.row]
        job = now[-1] if now else job
        state = (job.slurm or {}).get("state") or "UNKNOWN"
        self._end(jid, state, job.status == "committed")
        if job.status == "committed":
            msg = ("job %s was committed by another slurm-finish as %s",
                   jid, (job.commit_sha or "?")[:10])
        else:
            msg = ("job %s was closed by another slurm-finish (%s)", jid,
                   job.reason or job.status)
        return job_result(self.handle, job, status="notneeded", state=state,
                          commit=job.commit_sha, message=msg)

    def poll(self):
        """One poll; yields results, returns True if a job ended."""
        self.polls += 1
        before = len(self.pending)
        still = {j.job_id for j in self.handle.store.jobs(
            ("open",), job_ids=list(self.pending))}
        for jid in [j for j in self.pending if j not in still]:
            yield self.closed_elsewhere(jid)
        if not self.pending:
            return True
        try:
            self.queries += 1
            infos = self.handle.backend.query(sorted(self.pending))
        except SlurmError as e:
            self.query_error = e
            lgr.warning("cannot ask Slurm (trying again later): %s", e)
            return len(self.pending) < before
        self.query_error = None
        ended = []
        for jid in sorted(self.pending):
            info = infos.get(jid)
            if info is not None and info.state_class == ACTIVE:
                self.states[jid] = _waiting_state(info)
            else:
                self.states[jid] = info.summary_state if info else "UNKNOWN"
                ended.append(jid)
        if ended:
            with deferred_interrupt():
                for res in finish(self.handle, job_ids=ended,
                                  query=lambda ids: infos, **self.opts):
                    res = self._account(res)
                    if res is not None:
                        yield res
        return len(self.pending) < before

    def _account(self, res: dict) -> dict | None:
        """Note what finish() said about a job; None to keep it quiet."""
        jid = res.get("slurm_job_id")
        if jid not in self.pending:
            return res
        if res.get("status") == "notneeded":
            # not done yet: accounting lags, data-flow order holds it, ...
            self.notes[jid] = res.get("message")
            return None
        if res.get("status") == "impossible" and "state" not in res:
            # no longer open: another slurm-finish got it since we looked
            return self.closed_elsewhere(jid)
        if res.get("status") == "impossible" and any(
                str(p) in self.pending for p in res.get("waiting_for") or ()):
            # ended, but a producer we also wait for is not committed yet
            # (Slurm's accounting may report it active a little longer,
            # e.g. an array's tasks): commit it with that producer later
            self.notes[jid] = res.get("message")
            return None
        self._end(jid, res.get("state") or "UNKNOWN",
                  res.get("status") == "ok")
        return res

    def leftovers(self, timeout: float | None):
        """Results for the jobs that had not ended in time."""
        for jid, job in sorted(self.pending.items()):
            state = self.states.get(jid, "UNKNOWN")
            note = self.notes.get(jid)
            if isinstance(note, tuple):
                note = note[0] % tuple(note[1:])
            if self.query_error:
                note = "Slurm could not be asked: %s" % self.query_error
            yield job_result(
                self.handle, job, status="impossible", state=state,
                message=("job %s is still %s after --timeout %g s; kept "
                         "open%s", jid, state, timeout,
                         " (%s)" % note if note else ""))

    def summary(self) -> dict:
        ok = not self.failed and not self.pending
        parts = ["%d of %d jobs ended" % (sum(self.ended.values()),
                                          self.total)]
        if self.ended:
            parts.append(_counts(self.ended))
        if self.failed:
            parts.append("not completed: %s" % ", ".join(
                "%s (%s)" % kv for kv in sorted(self.failed.items())))
        if self.pending:
            parts.append("still open: %s" % ", ".join(sorted(self.pending)))
        parts.append("%d polls, %d Slurm queries" % (self.polls,
                                                     self.queries))
        return get_status_dict(
            action=FINISH, ds=self.handle.ds, path=self.handle.ds.path,
            type="dataset", logger=lgr, status="ok" if ok else "impossible",
            waited=True, ended=dict(self.ended), failed=dict(self.failed),
            still_open=sorted(self.pending), polls=self.polls,
            slurm_queries=self.queries, message="; ".join(parts))


def wait(handle: DatasetHandle, job_ids=None, timeout: float | None = None,
         interval=None, sleep=time.sleep, clock=time.monotonic,
         **finish_opts):
    """Wait for the chosen (default: all open) jobs; yield result records.

    `finish_opts` go to :func:`.finish.finish` (message, close_failed,
    commit_failed, keep_alt_dir, jobs); `interval` overrides the
    configured poll interval; `sleep` and `clock` are for the tests."""
    if interval is None:
        interval = handle.ds.config.get(CONFIG)
    try:
        first, most = poll_interval(interval)
        if timeout is not None and float(timeout) < 0:
            raise ValueError("--timeout must be >= 0 seconds, not %s"
                             % timeout)
    except ValueError as e:
        yield get_status_dict(action=FINISH, ds=handle.ds, path=handle.ds.path,
                              type="dataset", logger=lgr,
                              status="impossible", message=str(e))
        return
    wanted = [str(j) for j in job_ids] if job_ids else None
    jobs = handle.store.jobs(("open",), job_ids=wanted)
    known = {j.job_id for j in jobs}
    missing = [j for j in wanted or [] if j not in known]
    if missing:
        # says why each is not open (committed, never scheduled here, ...)
        yield from finish(handle, job_ids=missing)
    if not jobs:
        if wanted is None:
            yield from finish(handle)      # "no open jobs"
        return
    waiter = Waiter(handle, jobs, finish_opts)
    yield from _loop(waiter, Backoff(first, most), timeout, sleep, clock)
    if waiter.pending:
        yield from waiter.leftovers(timeout)
    yield waiter.summary()


def _loop(waiter: Waiter, backoff: Backoff, timeout: float | None, sleep,
          clock):
    deadline = None if timeout is None else clock() + float(timeout)
    pid = "hpcdata-wait-%d" % id(waiter)
    log_progress(lgr.info, pid, "Waiting for %d Slurm jobs", waiter.total,
                 total=waiter.total, label=waiter.label(), unit=" jobs")
    try:
        delay = backoff.delay
        while waiter.pending:
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - clock()))
            sleep(delay)
            changed = yield from waiter.poll()
            log_progress(lgr.info, pid, "%s", waiter.label(),
                         update=sum(waiter.ended.values()),
                         total=waiter.total, label=waiter.label(),
                         noninteractive_level=logging.INFO if changed
                         else 5)
            if deadline is not None and clock() >= deadline:
                break
            delay = backoff.after(changed)
    except KeyboardInterrupt:
        lgr.warning("interrupted: %s; open jobs stay open (run "
                    "slurm-finish --wait again)", waiter.label())
        raise
    finally:
        log_progress(lgr.info, pid, "Waited: %s", waiter.label(),
                     noninteractive_level=5)
