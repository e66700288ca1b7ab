"""One dataset as the commands see it: root, git dir, job store, backend.

Everything here is computed cheaply and at most once per command call.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from ..slurm import Backend, get_backend
from .jobstore import JobStore


def find_git_dir(root: str) -> Path:
    """The repository's git dir; works for worktrees and subdatasets,
    whose ``.git`` is a file pointing elsewhere."""
    dot_git = Path(root) / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():
        line = dot_git.read_text().strip()
        if line.startswith("gitdir:"):
            target = Path(line[len("gitdir:"):].strip())
            if not target.is_absolute():
                target = Path(root) / target
            return Path(os.path.realpath(target))
    raise ValueError("%s is not a git repository" % root)


class DatasetHandle:
    """A DataLad dataset with what the Slurm workflow needs of it."""

    def __init__(self, ds):
        self.ds = ds
        self.root = os.path.realpath(ds.path)
        self.git_dir = find_git_dir(self.root)

    @cached_property
    def annex(self) -> bool:
        if (self.git_dir / "annex").is_dir():
            return True
        common = self.git_dir / "commondir"
        if common.is_file():
            base = Path(common.read_text().strip())
            if not base.is_absolute():
                base = self.git_dir / base
            return (base / "annex").is_dir()
        return False

    @cached_property
    def store(self) -> JobStore:
        return JobStore(self.git_dir)

    @cached_property
    def backend(self) -> Backend:
        """The Slurm backend the dataset's configuration picks."""
        return get_backend(self.ds.config.get("datalad.hpcdata.backend")
                           or "auto")

    @property
    def state_dir(self) -> Path:
        """Where the job store, the lock and scratch files live."""
        return self.git_dir / "datalad-hpcdata"

    def subdataset_paths(self) -> list[str]:
        """Registered subdataset paths (from .gitmodules, no git call)."""
        gm = os.path.join(self.root, ".gitmodules")
        if not os.path.exists(gm):
            return []
        paths = []
        with open(gm) as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and key.strip() == "path":
                    paths.append(value.strip())
        return paths
