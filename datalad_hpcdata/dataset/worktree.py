"""Worktree preparation for a job, and its exact undo.

Before a job is submitted, each of its declared outputs that is an annexed
file (a symlink into the annex) is turned into something the job can
overwrite without touching the annex object behind it:

* content present -> the symlink is replaced by a writable copy;
* content absent  -> the symlink is removed.

Only the job's own declared outputs are touched; every change is recorded,
so a failed submission restores the worktree exactly.  No git command runs
here: the index is not touched until the job is finished.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from .paths import expand, has_glob, walk_files

ANNEX_OBJECTS = ".git/annex/objects/"


def is_annex_link(full: str) -> bool:
    if not os.path.islink(full):
        return False
    return ANNEX_OBJECTS in os.readlink(full).replace(os.sep, "/")


@dataclass
class Action:
    kind: str      # "materialized", "removed", "mkdir"
    path: str      # absolute
    target: str = ""


def prepare_outputs(root: str, specs: list[str]) -> list[Action]:
    """Make the declared outputs writable for the job; return the undo log."""
    actions: list[Action] = []
    try:
        for spec in specs:
            for hit in expand(spec, root):
                for rel in walk_files(hit, root):
                    full = os.path.join(root, rel)
                    if not is_annex_link(full):
                        continue
                    target = os.readlink(full)
                    if os.path.exists(full):
                        tmp = full + ".hpcdata-tmp"
                        shutil.copyfile(full, tmp)
                        os.replace(tmp, full)
                        actions.append(Action("materialized", full, target))
                    else:
                        os.unlink(full)
                        actions.append(Action("removed", full, target))
            if not has_glob(spec):
                parent = os.path.dirname(os.path.join(root, spec))
                missing = []
                while not os.path.lexists(parent) and parent != root:
                    missing.append(parent)
                    parent = os.path.dirname(parent)
                for d in reversed(missing):
                    os.mkdir(d)
                    actions.append(Action("mkdir", d))
    except BaseException:
        restore(actions)
        raise
    return actions


def restore(actions: list[Action]) -> list[str]:
    """Undo `prepare_outputs`; return paths that could not be restored."""
    failed = []
    for a in reversed(actions):
        try:
            if a.kind in ("materialized", "removed"):
                if os.path.lexists(a.path):
                    os.unlink(a.path)
                os.symlink(a.target, a.path)
            elif a.kind == "mkdir":
                os.rmdir(a.path)
        except OSError:
            failed.append(a.path)
    return failed


def is_annex_pointer(full: str) -> bool:
    """An unlocked annexed file whose content is absent (git-annex leaves
    a small pointer file ``/annex/objects/KEY`` in its place)."""
    try:
        if os.path.islink(full) or os.path.getsize(full) > 1024:
            return False
        with open(full, "rb") as f:
            return f.read(15) == b"/annex/objects/"
    except OSError:
        return False


def missing_content(root: str, paths: list[str]) -> list[str]:
    """Annexed files at/below `paths` whose content is not present
    (locked: a dangling annex link; unlocked: a pointer file)."""
    need = []
    for hit in paths:
        for rel in walk_files(hit, root):
            full = os.path.join(root, rel)
            if (is_annex_link(full) and not os.path.exists(full)) or \
                    is_annex_pointer(full):
                need.append(rel)
    return need
