"""Commit the outputs of many finished jobs: one commit per job, one process.

Steps (all under the repository lock):

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
import json
import os
import subprocess
from dataclasses import dataclass, field

from .gitplumbing import (GitError, TreeEditor, commit_tree, git, head_tree,
                          ls_files_stage, ls_tree)
from .paths import ancestors, claim_path, expand, has_glob, walk_files


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


ZERO = "0" * 40


def _annex_add(root: str, files: list[str], index: str) -> dict:
    """`git annex add` the files into a scratch index holding only them.

    git-annex refreshes and rewrites whatever index it works on; pointing it
    at a scratch index keeps that cost proportional to the job's files, not
    to the dataset (annex.largefiles is honoured; small files go to git).
    Returns path -> (mode, sha) of what it staged."""
    bad = [f for f in files if "\n" in f]
    if bad:
        raise GitError("file names with newlines cannot be annexed: %r" % bad)
    if os.path.lexists(index):
        os.unlink(index)
    env = dict(os.environ, GIT_INDEX_FILE=index)
    try:
        proc = subprocess.run(
            ["git", "annex", "add", "--batch", "--json",
             "--json-error-messages"], cwd=root, env=env,
            input="\n".join(files) + "\n", capture_output=True, text=True)
        if proc.returncode:
            raise GitError("git annex add failed: %s" % proc.stderr.strip())
        for line in proc.stdout.splitlines():
            try:
                rec = json.loads(line) if line.strip() else {}
            except ValueError:
                continue
            if rec.get("success") is False:
                raise GitError("git annex add %s failed: %s" % (
                    rec.get("file"),
                    "; ".join(rec.get("error-messages") or [])))
        return ls_files_stage(root, files, env=env)
    finally:
        if os.path.lexists(index):
            os.unlink(index)


def stage(root: str, files: list[str], deleted: list[str], annex: bool,
          scratch_index: str) -> dict:
    """Stage present files (annex or git) and deletions in the index.

    Returns path -> (mode, sha) of the staged files."""
    staged = {}
    if files and annex:
        staged = _annex_add(root, files, scratch_index)
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

