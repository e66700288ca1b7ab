"""What every command needs about a dataset, computed cheaply and once."""

from __future__ import annotations

import os
import socket
from functools import cached_property
from pathlib import Path

from .jobstore import JobStore
from .slurm.backend import get_backend


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


class DatasetContext:
    def __init__(self, ds):
        self.ds = ds
        self.root = os.path.realpath(ds.path)
        self.git_dir = find_git_dir(self.root)

    @cached_property
    def annex(self) -> bool:
        return (self.git_dir / "annex").is_dir() or \
            self._common_dir_has_annex()

    def _common_dir_has_annex(self) -> bool:
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
    def backend(self):
        return get_backend(self.config("datalad.hpcdata.backend", "auto"))

    def config(self, key, default=None):
        value = self.ds.config.get(key, default)
        return default if value is None else value

    def cluster_name(self, submitted: str = "") -> str:
        if submitted:
            return submitted
        key = "cluster:%s:%s" % (socket.gethostname(),
                                 os.environ.get("SLURM_CONF", ""))
        cached = self.store.meta_get(key)
        if cached is None:
            cached = self.backend.cluster_name()
            self.store.meta_set(key, cached)
        return cached

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
