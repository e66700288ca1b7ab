"""Submissions in progress, interrupted ones, and how they are resolved.

Every submission carries a token in its Slurm comment
(``--comment=datalad-hpcdata:<hex>``), kept in the job's row before
``sbatch`` runs, together with the undo log of the worktree preparation.
A submission that did not end cleanly (the process was killed, sbatch did
not answer) leaves its row 'submitting'; any later command that meets it
asks Slurm for the token (one squeue, one sacct) and then either *adopts*
the job (records its id: it is an open job like any other) or *releases*
the claim (restores the worktree from the stored undo log).

A 'submitting' row is left alone while its process may still be working:
on this host while the pid lives or a process still has the token on its
command line (an orphaned sbatch); from another host until
:data:`SUBMIT_STALE` seconds have passed, unless the user forces it
(``slurm-finish --close-failed-jobs``).  A forced release is safe: a
submitter that finds its row released cancels the job it submitted.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import asdict

from ..dataset.handle import DatasetHandle
from ..dataset.jobstore import Job
from ..dataset.lock import pid_alive, repository_lock
from ..dataset.worktree import Action, restore
from ..slurm import SlurmError
from ..slurm.argv import is_sbatch
from .cluster import cluster_name
from .logs import log_patterns
from .spec import JobSpec

lgr = logging.getLogger("datalad.hpcdata.schedule")

TOKEN_PREFIX = "datalad-hpcdata:"
# sbatch gets this long (slurm/cli.py) before it counts as not answering
SUBMIT_STALE = 3700.0


def new_token() -> str:
    return TOKEN_PREFIX + uuid.uuid4().hex[:20]


def with_token(argv: list[str], token: str | None) -> list[str]:
    """The sbatch argv with the token as its comment (first, so a
    ``--comment`` of the user's own wins)."""
    if not token or not is_sbatch(argv):
        return list(argv)
    return [argv[0], "--comment=%s" % token] + list(argv[1:])


def actions_of(spec: dict) -> list[Action]:
    return [Action(**a) for a in spec.get("prepared") or []]


def note_prepared(handle: DatasetHandle, row: int, actions) -> None:
    """Keep the undo log with the row, for whoever releases the claim
    (nothing to write when nothing was changed)."""
    if actions:
        handle.store.update_spec(row, {"prepared": [asdict(a)
                                                    for a in actions]})


def record_submission(handle: DatasetHandle, row: int, spec: JobSpec,
                      job_id: str, cluster: str = "", stdout: str = "",
                      extra: dict | None = None):
    """Record the job id of a submitted job; (recorded, info, logs, cluster).

    `recorded` is False when the row was adopted or released by another
    command meanwhile."""
    pwd_abs = os.path.join(handle.root, spec.pwd)
    info = {}
    try:
        info = handle.backend.submit_info(job_id)
    except SlurmError as e:
        lgr.warning("could not read job %s details: %s", job_id, e)
    logs = log_patterns(info, pwd_abs, job_id)
    cluster = cluster_name(handle, cluster)
    recorded = handle.store.set_submitted(row, cluster, job_id, dict(
        extra or {}, slurm_logs=logs,
        array=info.get("ArrayTaskId") or None,
        job_name=info.get("JobName") or None,
        workdir=info.get("WorkDir") or pwd_abs,
        submit_stdout=stdout.strip()))
    return recorded, info, logs, cluster


def token_in_flight(token: str) -> bool:
    """Does a process on this host have `token` on its command line (an
    sbatch left running by a killed slurm-schedule)?"""
    needle = token.encode()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if needle in f.read():
                    return True
        except OSError:
            continue
    return False


def may_be_working(job: Job, now: float | None = None) -> bool:
    """Could the process submitting `job` still be at it?"""
    if job.status != "submitting" or job.pid is None:
        return False
    token = job.spec.get("submit_token")
    if job.host == socket.gethostname():
        return pid_alive(job.pid) or bool(token and token_in_flight(token))
    return (now or time.time()) - job.created < SUBMIT_STALE


def describe(job: Job) -> str:
    if job.pid is None:
        return "an interrupted submission (%s)" % (
            job.reason or "its process gave up")
    return "a submission by pid %s on %s, since %s" % (
        job.pid, job.host, time.strftime("%Y-%m-%d %H:%M:%S",
                                         time.localtime(job.created)))


def resolve(handle: DatasetHandle, jobs: list[Job], force: bool = False):
    """Adopt or release interrupted submissions; [(job, outcome, text)].

    outcome: 'adopted' (now open), 'released', 'working' (left alone) or
    'unresolved' (Slurm could not be asked).  Runs under the repository
    lock and re-reads every row first."""
    out = []
    with repository_lock(handle.git_dir):
        todo = []
        for job in jobs:
            now = handle.store.get(job.row)
            if now is None or now.status != "submitting":
                continue
            if may_be_working(now) and not (
                    force and now.host != socket.gethostname()):
                out.append((now, "working", describe(now)))
            else:
                todo.append(now)
        if not todo:
            return out
        tokens = {j.spec.get("submit_token"): j for j in todo
                  if j.spec.get("submit_token")}
        try:
            found = handle.backend.find_submissions(
                sorted(tokens), min(j.created for j in todo)) \
                if tokens else {}
        except SlurmError as e:
            if not force:
                return out + [(j, "unresolved",
                               "cannot ask Slurm whether it was submitted: "
                               "%s" % e) for j in todo]
            found = {}
        for job in todo:
            jid = found.get(job.spec.get("submit_token"))
            out.append(_adopt(handle, job, jid) if jid
                       else _release(handle, job, force))
    return out


def _adopt(handle: DatasetHandle, job: Job, job_id: str):
    spec = JobSpec.from_dict(job.spec)
    record_submission(handle, job.row, spec, job_id)
    adopted = handle.store.get(job.row)
    return (adopted, "adopted",
            "interrupted submission adopted: Slurm job %s was submitted "
            "with its token" % job_id)


def _release(handle: DatasetHandle, job: Job, force: bool):
    unrestored = restore(actions_of(job.spec))
    spec = JobSpec.from_dict(job.spec)
    if spec.alt_root:
        from . import staging
        staging.unstage(handle, spec, job.row)
    why = ("closed by the user; no job with its token is known to Slurm"
           if force else "interrupted before a job was submitted (no job "
           "with its token is known to Slurm)")
    handle.store.reject(job.row, why)
    return (handle.store.get(job.row), "released",
            "interrupted submission released: %s%s" % (
                why, "; could not restore: %s" % ", ".join(unrestored)
                if unrestored else ""))
