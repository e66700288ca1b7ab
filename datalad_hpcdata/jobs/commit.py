"""Commit the outputs of many finished jobs: one commit per job, one process.

Steps (all under the repository lock):

0. for alt-dir jobs, copy outputs and logs back (verified) first;
1. collect each job's files: declared outputs (globs expanded, directories
   walked) and Slurm logs, plus tracked files below its outputs that are
   gone (deletions);
2. stage them all at once: the files the dataset would annex anyway are
   annexed by keys hashed here (or while an alt-dir copy-back copied them),
   in bulk (:mod:`..dataset.annexkeys`), the others with one ``git annex
   add --batch`` (honours ``annex.largefiles``; small files go to git),
   each into a scratch index holding only these files; then the real index
   learns about exactly these paths; ``git update-index`` directly for
   repositories without an annex;
3. build one commit per job on top of the previous one with index-free tree
   edits (only the declared paths are read or written);
4. note the intended commits in the job store, move HEAD once with a
   compare-and-swap ``update-ref``, then mark the jobs committed.

Before step 0 every job's row is read again under the lock: a job another
``slurm-finish`` committed (or closed) meanwhile is reported ``notneeded``
with its commit, never committed twice.  A crash anywhere leaves either the
old HEAD (the jobs stay open and are committed by the next run) or the new
HEAD with the jobs' pending commits noted (the next run sees they are
ancestors of HEAD and closes them): every completed job ends with exactly
one commit.  If publishing fails (``update-ref`` refused, a git error,
Ctrl-C) the real index gets back the entries it had for these paths.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass, field

from datalad.log import log_progress

from .. import faults
from ..dataset.annexkeys import hash_files, make_keys
from ..dataset.annexkeys import register as register_keys
from ..dataset.git import (
    GitError,
    TreeEditor,
    commit_tree,
    head_tree,
    ls_tree,
    restore_index,
    rev_parse,
    update_index,
    update_ref,
)
from ..dataset.handle import DatasetHandle
from ..dataset.jobstore import Job
from ..dataset.lock import repository_lock
from ..dataset.paths import ancestors, claim_path, expand, has_glob, walk_files
from ..dataset.scratch import annex_add, git_add
from ..slurm import JobInfo
from . import tasks
from .logs import job_logs
from .record import build_record, format_message
from .recovery import clean_staged, close_pending
from .results import job_result
from .spec import JobSpec

lgr = logging.getLogger("datalad.hpcdata.finish")


@dataclass
class JobCommit:
    key: int                    # job store row
    message: str
    outputs: list[str]          # canonical output specs
    extra_files: list[str] = field(default_factory=list)   # Slurm logs
    files: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    commit: str | None = None
    keys: dict = field(default_factory=dict)   # path -> known annex key


def collect(root: str, job: JobCommit, tracked: dict):
    files = set()
    for spec in job.outputs:
        for hit in expand(spec, root):
            files.update(walk_files(hit, root))
    for log in job.extra_files:
        if os.path.lexists(os.path.join(root, log)):
            files.add(log)
    job.files = sorted(files)
    job.deleted = sorted(
        path for path in tracked
        if path not in files and _declared(path, job.outputs)
        and not os.path.lexists(os.path.join(root, path)))


def _declared(path: str, specs: list[str]) -> bool:
    """Is `path` one of, or below one of, the output specs?"""
    candidates = [path] + ancestors(path)
    for spec in specs:
        if has_glob(spec):
            if any(fnmatch.fnmatchcase(c, spec) for c in candidates):
                return True
        elif spec in candidates:
            return True
    return False


def stage(root: str, files: list[str], deleted: list[str], annex: bool,
          scratch_index: str, undo: list | None = None,
          keys: dict | None = None) -> dict:
    """Stage present files (annex or git) and deletions in the index.

    Files in `keys` (path -> annex key, their hash known) are annexed
    under that key without being read again, the other files that qualify
    are hashed here and annexed alike, in bulk (:mod:`..dataset.annexkeys`;
    the rest: ``git annex add``).  Returns path -> (mode, sha) of the
    staged files; `undo` gets what :func:`restore_index` needs to give the
    real index back its previous entries for these paths (read without
    reading the whole index)."""
    staged = {}
    keyed = {}
    if annex:
        keyed = {f: keys[f] for f in files if f in (keys or {})}
        keyed.update(make_keys(root, hash_files(
            root, [f for f in files if f not in keyed])))
    rest = [f for f in files if f not in keyed]
    if rest:
        add = annex_add if annex else git_add
        staged = add(root, rest, scratch_index)
    if keyed:
        staged.update(register_keys(root, keyed, scratch_index + ".keys"))
    # the real index learns exactly these paths (no whole-index rewrite)
    update_index(root, staged, deleted, undo)
    return staged


def build_commits(root: str, head: str | None, jobs: list[JobCommit],
                  annex: bool, scratch_index: str, on_commit=None,
                  index_undo: list | None = None) -> str | None:
    """Stage and create one commit per job (no ref moves). Return the tip."""
    if not jobs:
        return head
    bases = sorted({claim_path(s) for j in jobs for s in j.outputs})
    tracked = ls_tree(root, head, bases) if head else {}
    for job in jobs:
        collect(root, job, tracked)
    files = sorted({f for j in jobs for f in j.files})
    deleted = sorted({f for j in jobs for f in j.deleted})
    staged = stage(root, files, deleted, annex, scratch_index, index_undo,
                   {f: k for j in jobs for f, k in j.keys.items()})
    faults.point("finish:annex-add")
    tip = head
    tree = head_tree(root, head)
    with TreeEditor(root) as editor:
        for job in jobs:
            changes = {}
            for f in job.files:
                if f in staged:
                    changes[f] = staged[f]
                else:
                    job.skipped.append(f)   # e.g. ignored by .gitignore
            for f in job.deleted:
                changes[f] = None
            tree = editor.apply(tree, changes) if changes else tree
            if tree is None:
                tree = editor.write_tree({})
            faults.point("finish:tree-build")
            job.commit = commit_tree(root, tree, [tip] if tip else [],
                                     job.message)
            faults.point("finish:commit")
            tip = job.commit
            if on_commit is not None:
                on_commit(job)
    return tip


@dataclass
class Finished:
    """A job slurm-finish decided to commit, with what Slurm said."""
    job: Job
    spec: JobSpec
    info: JobInfo
    logs: list[str] = field(default_factory=list)
    fetched: object = None      # altdir FetchReport for alt-dir jobs
    split: object = None        # tasks.TaskSplit: per-task outputs
    keys: dict = field(default_factory=dict)   # path -> known annex key

    @property
    def outputs(self) -> list[str]:
        """The output specs this finish commits."""
        return tasks.committed_outputs(self.spec, self.split,
                                       self.job.job_id)


def commit_finished(handle: DatasetHandle, finished: list[Finished],
                    message: str | None, keep_alt_dir: bool = False,
                    jobs=None):
    """Commit the jobs, one commit each, under the repository lock.

    Only jobs whose row is still open (read again under the lock) are
    committed; the others are reported, not committed again."""
    with repository_lock(handle.git_dir, command="slurm-finish"):
        still_open = []
        for item in finished:
            now = handle.store.get(item.job.row)
            if now is None or now.status != "open":
                yield _not_open(handle, item.job, now)
                continue
            item.job = now
            still_open.append(item)
        done = close_pending(handle, [i.job for i in still_open],
                             keep_alt_dir)
        if done:
            clean_staged(handle)
        ready = []
        for item in still_open:
            if item.job.row in done:
                yield job_result(
                    handle, item.job, status="ok", state=item.info.state,
                    commit=done[item.job.row],
                    message="committed by an interrupted earlier run")
                continue
            item.logs = job_logs(handle.root, item.spec, item.job.job_id,
                                 tasks.logs_info(item.info, item.split))
            if item.spec.alt_root:
                faults.point("finish:copy-back")
                failure = _copy_back(handle, item, jobs)
                if failure is not None:
                    yield failure
                    continue
                faults.point("finish:copied-back")
            ready.append(item)
        if ready:
            yield from _commit_locked(handle, ready, message, keep_alt_dir)


def _not_open(handle: DatasetHandle, job: Job, now: Job | None) -> dict:
    """A job another command committed or closed meanwhile."""
    if now is not None and now.status == "committed":
        return job_result(handle, now, status="notneeded",
                          commit=now.commit_sha, state="COMPLETED",
                          message=("job %s was already committed as %s",
                                   now.job_id, (now.commit_sha or "")[:10]))
    return job_result(handle, job, status="notneeded",
                      message=("job %s is %s now", job.job_id,
                               now.status if now else "gone"))


def _copy_back(handle: DatasetHandle, item: Finished, jobs) -> dict | None:
    """Copy an alt-dir job's outputs back; a result record if it failed."""
    from . import staging
    job, info = item.job, item.info
    try:
        rep, item.keys = staging.fetch_back(handle, item.spec, info,
                                            item.logs, jobs, item.outputs)
    except (staging.StagingError, OSError) as e:
        return job_result(handle, job, status="error", state=info.state,
                          message="could not copy outputs back: %s" % e)
    if rep.tampered or rep.failed:
        return job_result(
            handle, job, status="error", state=info.state,
            tampered=rep.tampered, failed=[list(f) for f in rep.failed],
            message=("job %s not committed: %s%s; kept open", job.job_id,
                     "modified after the job ended: %s"
                     % ", ".join(rep.tampered) if rep.tampered else "",
                     "; could not copy back: %s" % "; ".join(
                         "%s (%s)" % f for f in rep.failed)
                     if rep.failed else ""))
    item.fetched = rep
    return None


def _commit_locked(handle: DatasetHandle, ready: list[Finished],
                   message: str | None, keep_alt_dir: bool):
    commits = []
    for item in ready:
        record = build_record(handle.ds.id, item.job, item.spec, item.info,
                              item.logs, item.split)
        commits.append(JobCommit(
            key=item.job.row,
            message=format_message(item.job.job_id, tasks.subject_state(
                item.info.state, item.split), [message, item.spec.message],
                record),
            outputs=item.outputs, extra_files=item.logs, keys=item.keys))
    by_row = {item.job.row: item for item in ready}
    pid = "hpcdata-finish-%d-%d" % (os.getpid(), id(ready))
    log_progress(lgr.debug, pid, "Committing %d finished jobs", len(commits),
                 total=len(commits), label="Committing", unit=" jobs")

    def tick(_):
        log_progress(lgr.debug, pid, "", update=1, increment=True,
                     noninteractive_level=5)

    cleanup = [] if keep_alt_dir else [
        i.job.row for i in ready if i.spec.alt_root]
    try:
        error = _publish(handle, commits, tick, cleanup)
    finally:
        log_progress(lgr.debug, pid, "Committed %d jobs", len(commits),
                     noninteractive_level=5)
    if error is not None:
        for item in ready:
            yield job_result(handle, item.job, status="error",
                             message="could not commit: %s" % error)
        return
    for c in commits:
        yield _committed(handle, by_row[c.key], c, keep_alt_dir)


def _publish(handle: DatasetHandle, commits: list[JobCommit],
             on_commit, cleanup: list[int]) -> Exception | None:
    """Build the commits, note them, move HEAD once, close the jobs.

    Returns the error that stopped it (nothing was published then)."""
    store = handle.store
    head = rev_parse(handle.root, "HEAD")
    undo = []
    published = False
    tip = None
    try:
        tip = build_commits(handle.root, head, commits, handle.annex,
                            str(handle.state_dir / "finish.index"),
                            on_commit=on_commit, index_undo=undo)
        store.set_pending_commits({c.key: c.commit for c in commits})
        faults.point("finish:pending")
        update_ref(handle.root, tip, head,
                   "datalad slurm-finish: %d job(s)" % len(commits))
        published = True
        faults.point("finish:ref-update")
    except BaseException as e:
        # did HEAD move before the error (e.g. interrupted in update-ref)?
        if published or (tip and rev_parse(handle.root, "HEAD") == tip):
            raise       # the next run closes the jobs (pending commits)
        restore_index(handle.root, undo)
        for c in commits:
            store.clear_pending_commit(c.key)
        if isinstance(e, (GitError, OSError)):
            return e
        raise
    store.mark_committed({c.key: c.commit for c in commits}, cleanup)
    faults.point("finish:store-update")
    return None


def _committed(handle: DatasetHandle, item: Finished, c: JobCommit,
               keep_alt_dir: bool) -> dict:
    job, info = item.job, item.info
    extra = {"not_committed": c.skipped} if c.skipped else {}
    extra.update(tasks.not_committed(handle.root, item.spec, item.split,
                                     info, job.job_id))
    rep = item.fetched
    if rep is not None:
        extra["copied_back"] = len(rep.copied)
        if rep.missing:
            extra["missing"] = rep.missing
        if not keep_alt_dir:
            from . import staging
            staging.unstage(handle, item.spec, job.row, c.extra_files,
                            c.outputs)
            handle.store.cleanup_done(job.row)
            faults.point("finish:cleanup")
    return job_result(
        handle, job, status="ok", state=info.state,
        exit_code=info.exit_code, commit=c.commit, files=len(c.files),
        deleted=len(c.deleted),
        message=("committed job %s (%s) as %s%s%s", job.job_id,
                 tasks.subject_state(info.state, item.split), c.commit[:10],
                 "; not committed (ignored?): %s" % ", ".join(c.skipped)
                 if c.skipped else "", tasks.failed_text(extra)),
        **extra)

