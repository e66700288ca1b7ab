"""Commit the outputs of many finished jobs: one commit per job, one process.

Steps (all under the repository lock):

0. for alt-dir jobs, copy outputs and logs back (verified) first;
1. collect each job's files: declared outputs (globs expanded, directories
   walked) and Slurm logs, plus tracked files below its outputs that are
   gone (deletions);
2. stage them all at once: one ``git annex add --batch`` into a scratch
   index holding only these files (honours ``annex.largefiles``; small
   files go to git), then one ``git update-index --index-info`` tells the
   real index about exactly these paths; ``git update-index`` directly for
   repositories without an annex;
3. build one commit per job on top of the previous one with index-free tree
   edits (only the declared paths are read or written);
4. note the intended commits in the job store, move HEAD once with a
   compare-and-swap ``update-ref``, then mark the jobs committed.

A crash anywhere leaves either the old HEAD (the jobs stay open and are
committed by the next run) or the new HEAD with the jobs' pending commits
noted (the next run sees they are ancestors of HEAD and closes them):
every completed job ends with exactly one commit.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass, field

from datalad.log import log_progress

from ..dataset.git import (
    ZERO,
    GitError,
    TreeEditor,
    annex_add,
    commit_tree,
    git,
    head_tree,
    ls_files_stage,
    ls_tree,
    rev_parse,
    update_ref,
)
from ..dataset.handle import DatasetHandle
from ..dataset.jobstore import Job
from ..dataset.lock import repository_lock
from ..dataset.paths import ancestors, claim_path, expand, has_glob, walk_files
from ..slurm import JobInfo
from .logs import job_logs
from .record import build_record, format_message
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
          scratch_index: str) -> dict:
    """Stage present files (annex or git) and deletions in the index.

    Returns path -> (mode, sha) of the staged files."""
    staged = {}
    if files and annex:
        staged = annex_add(root, files, scratch_index)
    elif files:
        git(root, "update-index", "--add", "-z", "--stdin",
            input="\0".join(files) + "\0")
        staged = ls_files_stage(root, files)
    # the real index learns exactly these paths, in one write
    info = "".join("%s %s\t%s\0" % (mode, sha, path)
                   for path, (mode, sha) in staged.items() if annex)
    info += "".join("0 %s\t%s\0" % (ZERO, path) for path in deleted)
    if info:
        git(root, "update-index", "-z", "--index-info", input=info)
    return staged


def build_commits(root: str, head: str | None, jobs: list[JobCommit],
                  annex: bool, scratch_index: str,
                  on_commit=None) -> str | None:
    """Stage and create one commit per job (no ref moves). Return the tip."""
    if not jobs:
        return head
    bases = sorted({claim_path(s) for j in jobs for s in j.outputs})
    tracked = ls_tree(root, head, bases) if head else {}
    for job in jobs:
        collect(root, job, tracked)
    files = sorted({f for j in jobs for f in j.files})
    deleted = sorted({f for j in jobs for f in j.deleted})
    staged = stage(root, files, deleted, annex, scratch_index)
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
            job.commit = commit_tree(root, tree, [tip] if tip else [],
                                     job.message)
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


def commit_finished(handle: DatasetHandle, finished: list[Finished],
                    message: str | None, keep_alt_dir: bool = False,
                    jobs=None):
    """Commit the jobs, one commit each, under the repository lock."""
    with repository_lock(handle.git_dir):
        # a slurm-finish running beside this one may have closed some
        # of them since they were chosen: never commit a job twice
        still = {j.row for j in handle.store.jobs(
            ("open",), job_ids=[i.job.job_id for i in finished])}
        ready = []
        for item in finished:
            if item.job.row not in still:
                yield job_result(handle, item.job, status="notneeded",
                                 state=item.info.state,
                                 message=("job %s was closed by another "
                                          "slurm-finish meanwhile",
                                          item.job.job_id))
                continue
            item.logs = job_logs(handle.root, item.spec, item.job.job_id,
                                 item.info)
            if item.spec.alt_root:
                failure = _copy_back(handle, item, jobs)
                if failure is not None:
                    yield failure
                    continue
            ready.append(item)
        if ready:
            yield from _commit_locked(handle, ready, message, keep_alt_dir)


def _copy_back(handle: DatasetHandle, item: Finished, jobs) -> dict | None:
    """Copy an alt-dir job's outputs back; a result record if it failed."""
    from . import staging
    job, info = item.job, item.info
    try:
        rep = staging.fetch_back(handle, item.spec, info, item.logs, jobs)
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
                              item.logs)
        commits.append(JobCommit(
            key=item.job.row,
            message=format_message(item.job.job_id, item.info.state,
                                   [message, item.spec.message], record),
            outputs=item.spec.output_specs, extra_files=item.logs))
    by_row = {item.job.row: item for item in ready}
    pid = "hpcdata-finish-%d-%d" % (os.getpid(), id(ready))
    log_progress(lgr.debug, pid, "Committing %d finished jobs", len(commits),
                 total=len(commits), label="Committing", unit=" jobs")

    def tick(_):
        log_progress(lgr.debug, pid, "", update=1, increment=True,
                     noninteractive_level=5)

    try:
        error = _publish(handle, commits, tick)
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
             on_commit) -> Exception | None:
    """Build the commits, note them, move HEAD once, close the jobs.

    Returns the error that stopped it (nothing was published then)."""
    store = handle.store
    head = rev_parse(handle.root, "HEAD")
    try:
        tip = build_commits(handle.root, head, commits, handle.annex,
                            str(handle.state_dir / "finish.index"),
                            on_commit=on_commit)
        store.set_pending_commits({c.key: c.commit for c in commits})
        update_ref(handle.root, tip, head,
                   "datalad slurm-finish: %d job(s)" % len(commits))
    except (GitError, OSError) as e:
        for c in commits:
            store.clear_pending_commit(c.key)
        return e
    store.mark_committed({c.key: c.commit for c in commits})
    return None


def _committed(handle: DatasetHandle, item: Finished, c: JobCommit,
               keep_alt_dir: bool) -> dict:
    job, info = item.job, item.info
    extra = {"not_committed": c.skipped} if c.skipped else {}
    rep = item.fetched
    if rep is not None:
        extra["copied_back"] = len(rep.copied)
        if rep.missing:
            extra["missing"] = rep.missing
        if not keep_alt_dir:
            from . import staging
            staging.unstage(handle, item.spec, job.row, c.extra_files)
    return job_result(
        handle, job, status="ok", state=info.state,
        exit_code=info.exit_code, commit=c.commit, files=len(c.files),
        deleted=len(c.deleted),
        message=("committed job %s (%s) as %s%s", job.job_id, info.state,
                 c.commit[:10], "; not committed (ignored?): %s"
                 % ", ".join(c.skipped) if c.skipped else ""),
        **extra)
