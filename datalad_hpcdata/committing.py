"""Commit the outputs of many finished jobs: one commit per job, one process.

Steps (all under the repository lock):

1. collect each job's files: declared outputs (globs expanded, directories
   walked) and Slurm logs, plus tracked files below its outputs that are
   gone (deletions);
2. stage them all at once: one ``git annex add --batch`` (honours
   ``annex.largefiles``; small files go to git) or ``git update-index`` for
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

from .gitplumbing import (GitError, TreeEditor, commit_tree, head_tree,
                          ls_files_stage, ls_tree, git_env)
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


def stage(root: str, files: list[str], deleted: list[str], annex: bool,
          progress=None):
    """Stage present files (annex or git) and deletions in the index."""
    if files:
        if annex:
            argv = ["git", "annex", "add", "--batch", "--json",
                    "--json-error-messages"]
        else:
            argv = ["git", "update-index", "--add", "-z", "--stdin"]
        sep = "\n" if annex else "\0"
        bad = [f for f in files if annex and "\n" in f]
        if bad:
            raise GitError("file names with newlines cannot be annexed: %r"
                           % bad)
        proc = subprocess.Popen(
            argv, cwd=root, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(sep.join(files) + sep)
        if proc.returncode:
            raise GitError("%s failed: %s" % (" ".join(argv[:3]),
                                             err.strip()))
        if annex:
            for line in out.splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("success") is False:
                    raise GitError("git annex add %s failed: %s" % (
                        rec.get("file"),
                        "; ".join(rec.get("error-messages") or [])))
    if deleted:
        proc = subprocess.run(
            ["git", "update-index", "--remove", "-z", "--stdin"], cwd=root,
            env=git_env(), input="\0".join(deleted) + "\0", text=True,
            capture_output=True)
        if proc.returncode:
            raise GitError("git update-index --remove failed: %s"
                           % proc.stderr.strip())


def build_commits(root: str, head: str | None, jobs: list[JobCommit],
                  annex: bool, on_commit=None) -> str | None:
    """Stage and create one commit per job (no ref moves). Return the tip."""
    if not jobs:
        return head
    bases = sorted({claim_path(s) for j in jobs for s in j.outputs})
    tracked = ls_tree(root, head, bases) if head else {}
    for job in jobs:
        collect(root, job, tracked)
    files = sorted({f for j in jobs for f in j.files})
    deleted = sorted({f for j in jobs for f in j.deleted})
    stage(root, files, deleted, annex)
    staged = ls_files_stage(root, files)
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

