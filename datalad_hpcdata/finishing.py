"""slurm-finish: one batched state query, then commit/report every open job."""

from __future__ import annotations

import logging
import os
import re
import time

from datalad.interface.results import get_status_dict
from datalad.log import log_progress

from .committing import JobCommit, build_commits
from .gitplumbing import GitError, is_ancestor, rev_parse, update_ref
from .paths import PathError, canonical, relative_to_pwd
from . import __version__
from .record import EXTENSION, format_message
from .repolock import repository_lock
from .scheduling import unstage
from .slurm.backend import JobInfo, SlurmError
from .slurm.states import ACTIVE, COMPLETED, FAILED, UNKNOWN

lgr = logging.getLogger("datalad.hpcdata.finish")

ACTION = "slurm-finish"
# a job Slurm does not know is only "unknown" after this long; before,
# it is a fresh submission accounting has not seen yet
UNKNOWN_GRACE = 300.0


def _res(ctx, job, **kw):
    d = dict(action=ACTION, ds=ctx.ds, path=ctx.ds.path, type="dataset",
             logger=lgr, slurm_job_id=job.job_id, cluster=job.cluster)
    d.update(kw)
    return get_status_dict(**d)


def expand_log(pattern: str, master: str, task: str | None, raw_id: str,
               name: str | None, nodes: str | None) -> str:
    """Expand Slurm's filename pattern (%A %a %j %x %u %N %%, padding)."""
    def sub(m):
        pad, code = m.group(1), m.group(2)
        value = {
            "A": master, "a": task if task is not None else "4294967294",
            "j": raw_id, "x": name or "", "u": os.environ.get("USER", ""),
            "N": (nodes or "").split(",")[0], "%": "%",
        }.get(code)
        if value is None:
            return m.group(0)
        if pad and value.isdigit():
            value = value.zfill(int(pad))
        return value
    return re.sub(r"%(\d*)([AajxuN%])", sub, pattern)


def job_logs(ctx, job, info: JobInfo | None) -> list[str]:
    """Dataset-relative paths of the job's existing Slurm logs inside it
    (for an alt-dir job: inside the alt-dir, where the job wrote them)."""
    base = job.spec.get("alt_root") or ctx.root
    pats = job.spec.get("slurm_logs") or []
    name = job.spec.get("job_name")
    targets = []
    if info is not None and info.tasks:
        for task, tinfo in info.tasks.items():
            for p in pats:
                targets.append(expand_log(p, job.job_id, task, tinfo.job_id,
                                          name, tinfo.nodes))
                # a %j in an array's pattern looked like %A at submit time
                targets.append(expand_log(p.replace("%A", "%j"), job.job_id,
                                          task, tinfo.job_id, name,
                                          tinfo.nodes))
    else:
        nodes = info.nodes if info else None
        for p in pats:
            targets.append(expand_log(p, job.job_id, None, job.job_id, name,
                                      nodes))
    logs = []
    for t in targets:
        try:
            rel = canonical(t, base, base)
        except PathError:
            continue    # outside the dataset: not recorded
        if rel not in logs and os.path.lexists(os.path.join(base, rel)):
            logs.append(rel)
    return sorted(logs)


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


def build_record(ctx, job, info: JobInfo, logs) -> dict:
    spec = job.spec
    rel_pwd = spec.get("pwd", ".")
    rec = {
        "cmd": spec["cmd"],
        "dsid": ctx.ds.id,
        "exit": info.exit_status,
        "inputs": spec.get("inputs", []),
        "extra_inputs": spec.get("extra_inputs", []),
        "outputs": spec.get("outputs", []),
        "pwd": rel_pwd,
        "chain": spec.get("chain", []),
        "slurm_job_id": int(job.job_id) if job.job_id.isdigit()
        else job.job_id,
        "slurm_outputs": [relative_to_pwd(l, rel_pwd) for l in logs],
        "cluster": job.cluster,
        "slurm_state": info.state,
        "slurm_exit_code": info.exit_code,
        "submit_time": info.submit_time,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "elapsed": info.elapsed,
        "nodes": info.nodes,
        "max_rss": info.max_rss,
        "submit_head": job.head,
        "alt_dir": spec.get("alt_dir") or "",
        "extension": EXTENSION,
        "extension_version": __version__,
    }
    if info.tasks:
        rec["array"] = spec.get("array")
        rec["array_tasks"] = {
            t: {"state": i.state, "exit_code": i.exit_code,
                "slurm_job_id": i.job_id}
            for t, i in sorted(info.tasks.items(),
                               key=lambda kv: _task_key(kv[0]))}
    return rec


def _task_key(task):
    return (0, int(task)) if task.isdigit() else (1, task)


def recover_pending(ctx, jobs):
    """Jobs whose commit was made by an interrupted run: close them."""
    done = {}
    for job in jobs:
        if not job.pending_commit:
            continue
        if is_ancestor(ctx.root, job.pending_commit):
            done[job.row] = job.pending_commit
        else:
            ctx.store.clear_pending_commit(job.row)
            job.pending_commit = None
    if done:
        ctx.store.mark_committed(done)
    return done


def finish(ctx, job_ids=None, message=None, close_failed=False,
           commit_failed=False, list_only=False, keep_alt_dir=False,
           jobs=None):
    store = ctx.store
    wanted = [str(j) for j in job_ids] if job_ids else None
    jobs = store.jobs(("submitting", "open"), job_ids=wanted)
    if wanted is not None:
        known = {j.job_id for j in jobs}
        for jid in wanted:
            if jid not in known:
                history = store.find(jid)
                why = ("it is %s" % history[-1].status if history
                       else "it was not scheduled from this dataset")
                yield get_status_dict(
                    action=ACTION, ds=ctx.ds, path=ctx.ds.path,
                    type="dataset", logger=lgr, slurm_job_id=jid,
                    status="impossible",
                    message=("job %s is not open: %s", jid, why))
    # submissions in progress or interrupted
    live = []
    for job in jobs:
        if job.status == "submitting":
            yield _res(ctx, job, status="notneeded", state="SUBMITTING",
                       message="being submitted by pid %s" % job.pid)
        else:
            live.append(job)
    jobs = live
    if not jobs:
        if not list_only and wanted is None:
            yield get_status_dict(action=ACTION, ds=ctx.ds, path=ctx.ds.path,
                                  type="dataset", logger=lgr,
                                  status="notneeded",
                                  message="no open jobs")
        return
    if not list_only:
        recovered = recover_pending(ctx, jobs)
        for job in jobs:
            if job.row in recovered:
                yield _res(ctx, job, status="ok", state="COMPLETED",
                           commit=recovered[job.row],
                           message="committed by an interrupted earlier run")
        jobs = [j for j in jobs if j.row not in recovered]
    try:
        infos = ctx.backend.query([j.job_id for j in jobs])
    except SlurmError as e:
        for job in jobs:
            yield _res(ctx, job, status="error",
                       message="cannot ask Slurm: %s" % e)
        return
    store.update_slurm({j.row: infos[j.job_id].as_dict()
                        for j in jobs if j.job_id in infos})
    now = time.time()
    if list_only:
        for job in jobs:
            info = infos.get(job.job_id)
            yield _res(ctx, job, status="ok", action="slurm-list-open-jobs",
                       state=info.state if info else "UNKNOWN",
                       state_class=info.state_class if info else UNKNOWN,
                       exit_code=info.exit_code if info else None,
                       outputs=job.spec.get("outputs"),
                       submit_time=job.submit_time,
                       cmd=job.spec.get("cmd"),
                       message=_summary(job, info))
        return
    to_commit = []
    for job in jobs:
        info = infos.get(job.job_id)
        klass = info.state_class if info else UNKNOWN
        expected = array_size(job.spec.get("array"))
        if info is not None and expected and klass != ACTIVE and \
                len([t for t in info.tasks if t.isdigit()]) < expected:
            # accounting has not split the array into its tasks yet
            yield _res(ctx, job, status="notneeded", state=info.state,
                       message=("array job %s: %d of %d tasks known to "
                                "Slurm yet", job.job_id, len(info.tasks),
                                expected))
            continue
        if klass == UNKNOWN and now - (job.submit_time or now) < UNKNOWN_GRACE:
            yield _res(ctx, job, status="notneeded", state="UNKNOWN",
                       message="not yet visible to Slurm; try again shortly")
            continue
        if klass == ACTIVE:
            yield _res(ctx, job, status="notneeded", state=info.state,
                       message=("job %s is still %s", job.job_id,
                                info.state.lower()))
        elif klass == COMPLETED:
            to_commit.append((job, info))
        elif klass in (FAILED, UNKNOWN):
            state = info.state if info else "UNKNOWN"
            if commit_failed and info is not None:
                to_commit.append((job, info))
            elif close_failed or (commit_failed and info is None):
                store.abandon(job.row, "closed as %s by slurm-finish" % state)
                yield _res(ctx, job, status="ok", state=state,
                           exit_code=info.exit_code if info else None,
                           message=("closed job %s (%s); outputs left "
                                    "untouched and uncommitted",
                                    job.job_id, state))
            else:
                msg = ("job %s %s%s; kept open (use --close-failed-jobs or "
                       "--commit-failed-jobs)" % (
                           job.job_id,
                           "is unknown to Slurm" if info is None
                           else "ended %s" % state,
                           "" if info is None or info.exit_code is None
                           else " with exit code %s" % info.exit_code))
                yield _res(ctx, job, status="impossible", state=state,
                           exit_code=info.exit_code if info else None,
                           message=msg)
    if to_commit:
        yield from commit_finished(ctx, to_commit, message, keep_alt_dir,
                                   jobs)


def _summary(job, info):
    state = info.state if info else "UNKNOWN"
    outs = ", ".join(job.spec.get("outputs") or [])
    return "%s  %s  %s" % (job.job_id, state, outs)


def _epoch(stamp):
    try:
        return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
    except (TypeError, ValueError):
        return None


def fetch_back(ctx, job, info, logs, jobs=None):
    """Copy an alt-dir job's outputs and logs into the dataset, verified."""
    from .staging import fetch_outputs
    return fetch_outputs(
        ctx.root, job.spec["alt_root"], job.spec["output_specs"], logs,
        job_end_time=_epoch(info.end_time),
        jobs=jobs if isinstance(jobs, int) and jobs > 0 else 4)


def commit_finished(ctx, pairs, message, keep_alt_dir=False, jobs=None):
    with repository_lock(ctx.git_dir):
        yield from _commit_locked(ctx, pairs, message, keep_alt_dir, jobs)


def _commit_locked(ctx, pairs, message, keep_alt_dir, jobs):
    commits = []
    fetched = {}
    ready = []
    for job, info in pairs:
        logs = job_logs(ctx, job, info)
        if job.spec.get("alt_root"):
            from .staging import StagingError
            try:
                rep = fetch_back(ctx, job, info, logs, jobs)
            except (StagingError, OSError) as e:
                yield _res(ctx, job, status="error", state=info.state,
                           message="could not copy outputs back: %s" % e)
                continue
            if rep.tampered or rep.failed:
                yield _res(ctx, job, status="error", state=info.state,
                           tampered=rep.tampered,
                           failed=[list(f) for f in rep.failed],
                           message=("job %s not committed: %s%s; kept open",
                                    job.job_id,
                                    "modified after the job ended: %s"
                                    % ", ".join(rep.tampered)
                                    if rep.tampered else "",
                                    "; could not copy back: %s" % "; ".join(
                                        "%s (%s)" % f for f in rep.failed)
                                    if rep.failed else ""))
                continue
            fetched[job.row] = rep
        ready.append((job, info, logs))
    for job, info, logs in ready:
        record = build_record(ctx, job, info, logs)
        msgs = [message, job.spec.get("message")]
        commits.append(JobCommit(
            key=job.row,
            message=format_message(job.job_id, info.state, msgs, record),
            outputs=job.spec["output_specs"], extra_files=logs))
    if not commits:
        return
    pairs = [(job, info) for job, info, _ in ready]
    by_row = {job.row: (job, info) for job, info in pairs}
    pid = "hpcdata-finish-%d-%d" % (os.getpid(), id(pairs))
    log_progress(lgr.debug, pid, "Committing %d finished jobs", len(commits),
                 total=len(commits), label="Committing", unit=" jobs")

    def tick(_):
        log_progress(lgr.debug, pid, "", update=1, increment=True,
                     noninteractive_level=5)

    try:
        head = rev_parse(ctx.root, "HEAD")
        try:
            tip = build_commits(
                ctx.root, head, commits, ctx.annex,
                str(ctx.git_dir / "datalad-hpcdata" / "finish.index"),
                on_commit=tick)
            ctx.store.set_pending_commits({c.key: c.commit for c in commits})
            update_ref(ctx.root, tip, head,
                       "datalad slurm-finish: %d job(s)" % len(commits))
        except (GitError, OSError) as e:
            for c in commits:
                ctx.store.clear_pending_commit(c.key)
            for job, _ in pairs:
                yield _res(ctx, job, status="error",
                           message="could not commit: %s" % e)
            return
        ctx.store.mark_committed({c.key: c.commit for c in commits})
    finally:
        log_progress(lgr.debug, pid, "Committed %d jobs", len(commits),
                     noninteractive_level=5)
    for c in commits:
        job, info = by_row[c.key]
        extra = {"not_committed": c.skipped} if c.skipped else {}
        rep = fetched.get(c.key)
        if rep is not None:
            extra["copied_back"] = len(rep.copied)
            if rep.missing:
                extra["missing"] = rep.missing
            if not keep_alt_dir:
                unstage(ctx, job.spec, job.row, c.extra_files)
        yield _res(ctx, job, status="ok", state=info.state,
                   exit_code=info.exit_code, commit=c.commit,
                   files=len(c.files), deleted=len(c.deleted),
                   message=("committed job %s (%s) as %s%s", job.job_id,
                            info.state, c.commit[:10],
                            "; not committed (ignored?): %s"
                            % ", ".join(c.skipped) if c.skipped else ""),
                   **extra)
