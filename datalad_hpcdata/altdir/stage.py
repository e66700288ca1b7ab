"""Staging a job's inputs and preparing its output directories.

:func:`stage_inputs` copies input *content* (annexed files are
dereferenced) into the staging area, skipping files that are already staged
unchanged, in parallel and with progress reports;
:func:`prepare_output_dirs` creates parent directories for the outputs and
removes stale staged copies left over from an earlier run.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from typing import Iterable, Optional

from ..dataset.paths import ancestors, claim_path, expand, has_glob, within
from .files import (
    Failed,
    Progress,
    StagingError,
    checked_specs,
    dataset_path,
    failure_reason,
    hash_file,
    local_path,
    mkstemp,
    norm_rel,
    remove,
    run_parallel,
    staged_path,
    unlink_quiet,
)


@dataclass
class StageReport:
    """Result of :func:`stage_inputs`.

    ``files``/``bytes``: files (and their total size) now staged for the
    job, whether copied or already present; ``copied``/``skipped``: their
    dataset-relative paths; ``copied_bytes``: bytes actually written;
    ``failed``: ``(path, reason)`` for every input that could not be staged.
    """
    files: int = 0
    bytes: int = 0
    copied: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    copied_bytes: int = 0
    failed: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


# ------------------------------------------------------------- inputs ---

def _git_dirs(ds: str) -> list[str]:
    """Real git directories of the dataset (``.git`` may be a gitfile)."""
    dirs = [os.path.join(ds, ".git")]
    gitfile = os.path.join(ds, ".git")
    if os.path.isfile(gitfile):
        try:
            with open(gitfile) as f:
                line = f.readline().strip()
            if line.startswith("gitdir:"):
                target = line[len("gitdir:"):].strip()
                dirs.append(os.path.realpath(os.path.join(ds, target)))
        except OSError:
            pass
    return [os.path.realpath(d) for d in dirs]


def _allowed_target(real: str, ds: str, git_dirs: list[str],
                    is_dir: bool) -> bool:
    """May the content at `real` (a symlink's resolved target) be staged?

    Files: anything inside the dataset outside ``.git``, or annexed content
    (``annex/objects`` of the dataset's or a subdataset's git directory).
    Directories: inside the dataset, never inside a ``.git``."""
    for g in git_dirs:
        if within(real, g):
            return (not is_dir
                    and within(real, os.path.join(g, "annex", "objects")))
    if not within(real, ds):
        return False
    parts = os.path.relpath(real, ds).split(os.sep)
    if ".git" in parts:
        i = parts.index(".git")
        return (not is_dir and parts[i + 1:i + 3] == ["annex", "objects"])
    return True


def _plan_input(ds: str, git_dirs: list[str], rel: str, path: str,
                sources: dict, dirs: set, failed: list,
                chain: frozenset) -> None:
    """Collect files below one input: sources[rel] = (content path, size)."""
    try:
        if os.path.islink(path):
            link = os.readlink(path)
            real = os.path.realpath(path)
            if not os.path.exists(real):
                if "annex/objects/" in link.replace(os.sep, "/"):
                    failed.append((rel, "annexed content is not present "
                                   "(run 'datalad get' first)"))
                else:
                    failed.append((rel, "dangling symlink to %s" % link))
                return
            if not _allowed_target(real, ds, git_dirs, os.path.isdir(real)):
                failed.append((rel, "symlink points outside the dataset "
                               "(%s); not staged" % real))
                return
            path = real
        st = os.stat(path)
    except OSError as e:
        failed.append((rel, "cannot read: %s" % (e.strerror or e)))
        return
    if stat.S_ISREG(st.st_mode):
        sources[rel] = (path, st.st_size)
    elif stat.S_ISDIR(st.st_mode):
        real = os.path.realpath(path)
        if real in chain:
            failed.append((rel, "symlink loop"))
            return
        dirs.add(rel)
        try:
            names = sorted(os.listdir(path))
        except OSError as e:
            failed.append((rel, "cannot list: %s" % (e.strerror or e)))
            return
        for name in names:
            if name == ".git":
                continue
            _plan_input(ds, git_dirs, rel + "/" + name,
                        os.path.join(path, name), sources, dirs, failed,
                        chain | {real})
    else:
        failed.append((rel, "not a regular file or directory"))


def _stage_one(task: tuple) -> tuple[str, int]:
    """Copy one input; returns ('copied'|'skipped', bytes written)."""
    rel, src, dst, _size = task
    st = os.stat(src)
    try:
        lst = os.lstat(dst)
    except FileNotFoundError:
        lst = None
    if lst is not None:
        if stat.S_ISDIR(lst.st_mode):
            raise Failed("a directory is in the way in the staging area")
        if stat.S_ISREG(lst.st_mode) and lst.st_size == st.st_size:
            if lst.st_mtime_ns == st.st_mtime_ns:
                return "skipped", 0
            # same size, different mtime (e.g. coarse timestamps on the
            # parallel file system, or a touched source): compare content
            if hash_file(src) == hash_file(dst):
                try:
                    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns),
                             follow_symlinks=False)
                except OSError:
                    pass
                return "skipped", 0
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    fd, tmp = mkstemp(parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        after = os.stat(src)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            raise Failed("source changed while it was being copied")
        os.chmod(tmp, stat.S_IMODE(st.st_mode) | stat.S_IRUSR)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, dst)
        tmp = None
    finally:
        unlink_quiet(tmp)
    return "copied", st.st_size


def stage_inputs(ds_root: str, alt_root: str, rel_paths: Iterable[str],
                 jobs: int = 4, progress: Optional[Progress] = None
                 ) -> StageReport:
    """Copy the content of inputs into ``alt_root/<rel>``.

    `rel_paths` are dataset-relative files or directories; directories are
    walked (``.git`` skipped, symlinks to content inside the dataset --
    including annexed files -- dereferenced; symlinks leading outside the
    dataset, annexed files without content and special files are reported
    in ``failed``).  A file already staged with the same size and mtime (or
    same size and content) is skipped.  Copies run in `jobs` threads;
    ``progress(done_files, total_files, done_bytes, total_bytes)`` is called
    from the calling thread once at the start and after every file.
    """
    ds = os.path.realpath(ds_root)
    alt = os.path.realpath(alt_root)
    rels = []
    for rel in rel_paths:
        norm = norm_rel(rel)
        dataset_path(ds, norm)
        staged_path(alt, norm)
        rels.append(norm)
    git_dirs = _git_dirs(ds)
    report = StageReport()
    sources, dirs = {}, set()
    for rel in dict.fromkeys(rels):
        src = local_path(ds, rel)
        if not os.path.lexists(src):
            report.failed.append((rel, "does not exist in the dataset"))
            continue
        _plan_input(ds, git_dirs, rel, src, sources, dirs, report.failed,
                    frozenset())
    tasks = []
    for rel in sorted(dirs):
        try:
            d = staged_path(alt, rel)
            if os.path.islink(d) or (os.path.lexists(d)
                                     and not os.path.isdir(d)):
                raise Failed("a non-directory is in the way in the "
                             "staging area")
            os.makedirs(d, exist_ok=True)
        except (OSError, StagingError, Failed) as e:
            report.failed.append((rel, str(e)))
    for rel, (src, size) in sorted(sources.items()):
        try:
            tasks.append((rel, src, staged_path(alt, rel), size))
        except StagingError as e:
            report.failed.append((rel, str(e)))

    def on_result(task: tuple, res: object) -> None:
        rel, size = task[0], task[-1]
        if isinstance(res, Exception):
            report.failed.append((rel, failure_reason(res)))
            return
        kind, written = res
        report.files += 1
        report.bytes += size
        report.copied_bytes += written
        (report.copied if kind == "copied" else report.skipped).append(rel)

    run_parallel(tasks, _stage_one, jobs, progress, on_result)
    report.copied.sort()
    report.skipped.sort()
    report.failed.sort()
    return report


# ------------------------------------------------------------ outputs ---

def _needed_dirs(spec: str) -> list[str]:
    """The directories an output spec needs, shallowest first: the parents
    of a path; a glob's literal directory and its parents."""
    if has_glob(spec):
        base = claim_path(spec)
        return ancestors(base) + [base]
    return ancestors(spec)


def prepare_output_dirs(alt_root: str, rel_outputs: Iterable[str],
                        ds_root: Optional[str] = None) -> list:
    """Prepare the staging area for a job's outputs.

    Creates the parent directories of every output (for a glob spec: its
    literal directory), and removes whatever is staged at an output path (or
    matches an output glob) from an earlier run.  With `ds_root`, an output
    that is a directory in the dataset is created as an (empty) directory in
    the staging area too.  Returns the removed dataset-relative paths.
    Raises StagingError, before changing anything, for unusable paths or if
    a non-directory is in the way of a needed directory.
    """
    alt = os.path.realpath(alt_root)
    ds = os.path.realpath(ds_root) if ds_root else None
    specs = checked_specs(rel_outputs, alt)
    # the directories each output needs, checked before anything changes
    needed = {norm: _needed_dirs(norm) for norm in specs}
    for norm, dlist in needed.items():
        for d in dlist:
            p = local_path(alt, d)
            if os.path.lexists(p) and not os.path.isdir(p):
                raise StagingError(
                    "cannot prepare output %r: %s exists in the staging area "
                    "and is not a directory" % (norm, p))
    removed = []
    for norm in specs:
        for rel in expand(norm, alt):
            p = staged_path(alt, rel)
            if has_glob(norm) and rel in needed[norm]:
                continue
            if os.path.lexists(p):
                remove(p)
                removed.append(rel)
        for d in needed[norm]:
            os.makedirs(staged_path(alt, d), exist_ok=True)
        if ds and not has_glob(norm):
            src = local_path(ds, norm)
            if os.path.isdir(src) and not os.path.islink(src):
                os.makedirs(staged_path(alt, norm), exist_ok=True)
    return sorted(set(removed))
