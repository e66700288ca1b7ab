"""Copying a finished job's outputs and logs back into the dataset.

Atomically per file, verified by size and SHA-256 (or hashed once while
copying with the hash the caller's annex key needs), never through an annex
symlink and never outside the dataset; every file that did not come back
(missing, tampered with after the job ended, failed) is reported.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from ..dataset.paths import expand
from .files import (
    TMP_PREFIX,
    Failed,
    Progress,
    StagingError,
    check_rel,
    checked_specs,
    copy_hashed,
    dataset_path,
    failure_reason,
    hash_fd,
    hash_file,
    mkstemp,
    run_parallel,
    staged_path,
    unlink_quiet,
)

#: A staged output whose mtime is later than the job's end plus this many
#: seconds was modified after the job ended and is not copied back.
TAMPER_TOLERANCE = 2.0


@dataclass
class FetchReport:
    """Result of :func:`fetch_outputs`.

    ``copied``: dataset-relative paths copied back and verified; ``files``/
    ``bytes``: their number and total size; ``missing``: declared outputs or
    logs (the spec as given) not present in the staging area; ``tampered``:
    staged files modified after the job ended (not copied back);
    ``failed``: ``(path, reason)`` for everything else that did not come
    back.
    """
    copied: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    tampered: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    #: rel -> (size, hash name, hex digest) of the files hashed while
    #: copying with the hash the caller asked for (not read again)
    hashed: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.tampered or self.failed)


class _Tampered(Exception):
    """The staged file was modified after the job ended."""


def _plan_fetch(alt: str, rel: str, sizes: dict, dirs: set,
                failed: list) -> None:
    """Collect the staged files below one output: sizes[rel] = size."""
    path = staged_path(alt, rel)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        failed.append((rel, "is a symlink in the staging area (-> %s); not "
                       "copied back" % os.readlink(path)))
    elif stat.S_ISREG(st.st_mode):
        sizes[rel] = st.st_size
    elif stat.S_ISDIR(st.st_mode):
        dirs.add(rel)
        for name in sorted(os.listdir(path)):
            if name == ".git":
                continue
            if name.startswith(TMP_PREFIX):
                continue
            _plan_fetch(alt, rel + "/" + name, sizes, dirs, failed)
    else:
        failed.append((rel, "not a regular file or directory"))


def _fetch_one(task: tuple, ds: str, alt: str,
               job_end_time: Optional[float], algorithm: Optional[str]):
    """Copy one staged file back; returns its size.

    Without `algorithm` the copy is verified by reading it again (SHA-256
    against the staged file's, read once).  With it the kernel copies and
    the copy is hashed while it is made (hashlib's `algorithm`, the
    caller's key; :func:`.files.copy_hashed`), and (size, algorithm,
    digest) is returned instead: the hash is of the bytes that landed in
    the dataset, fsynced."""
    rel, _size = task
    src = staged_path(alt, rel)
    dst = dataset_path(ds, rel)
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    tmp = None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Failed("not a regular file")
        if job_end_time is not None and \
                st.st_mtime > job_end_time + TAMPER_TOLERANCE:
            raise _Tampered()
        parent = os.path.dirname(dst)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise Failed("cannot create %s in the dataset: %s"
                         % (os.path.dirname(rel), e.strerror or e))
        # re-check after creating: never outside the dataset or into .git
        dataset_path(ds, rel)
        if os.path.isdir(dst) and not os.path.islink(dst):
            raise Failed("a directory is in the way in the dataset")
        tfd, tmp = mkstemp(parent)
        try:
            n, digest = (copy_hashed(fd, tfd, algorithm) if algorithm
                         else hash_fd(fd, copy_to=tfd))
            os.fsync(tfd)
        finally:
            os.close(tfd)
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns) \
                or n != st.st_size:
            raise Failed("staged file changed while it was being copied back")
        # verify what landed in the dataset before it replaces anything
        got = (os.stat(tmp).st_size, digest) if algorithm else hash_file(tmp)
        if got != (n, digest):
            raise Failed("verification failed: copied %d bytes sha256 %s, "
                         "staged %d bytes sha256 %s"
                         % (got[0], got[1], n, digest))
        os.chmod(tmp, stat.S_IMODE(st.st_mode) | stat.S_IRUSR | stat.S_IWUSR)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        # replaces a file or an (annex) symlink itself; never writes through
        os.replace(tmp, dst)
        tmp = None
        final = os.lstat(dst)
        if not stat.S_ISREG(final.st_mode) or final.st_size != n:
            raise Failed("file in the dataset does not match after replacing")
        return (n, algorithm, digest) if algorithm else n
    finally:
        os.close(fd)
        unlink_quiet(tmp)


def fetch_outputs(ds_root: str, alt_root: str, rel_outputs: Iterable[str],
                  rel_logs: Iterable[str] = (),
                  job_end_time: Optional[float] = None, jobs: int = 4,
                  progress: Optional[Progress] = None,
                  hashes: Optional[Callable[[dict], dict]] = None
                  ) -> FetchReport:
    """Copy a finished job's outputs and logs from the staging area back
    into the dataset.

    Call only after the job reached a successful terminal state.  Outputs
    may be files, directories (walked) or glob specs.  Each file is copied
    to a temp file next to its destination, verified (size and SHA-256 of
    the staged file, read once, against the temp file) and moved into place
    with ``os.replace`` -- an existing annex symlink is replaced, never
    written through.  With `job_end_time` (epoch seconds), staged files
    modified more than TAMPER_TOLERANCE seconds later are reported as
    ``tampered`` and not copied.  Symlinks and special files in the staging
    area are not copied back (``failed``).  Nothing is removed from the
    staging area.

    `hashes(sizes)` (rel -> bytes of every file to copy) may name a
    hashlib algorithm per file: those files are hashed with it while they
    are copied, not read again (``report.hashed``).
    """
    ds = os.path.realpath(ds_root)
    alt = os.path.realpath(alt_root)
    specs = checked_specs(list(rel_outputs) + list(rel_logs), alt, ds)
    report = FetchReport()
    sizes, dirs = {}, set()
    for spec in dict.fromkeys(specs):
        hits = expand(spec, alt)
        if not hits:
            report.missing.append(spec)
            continue
        for rel in hits:
            try:
                check_rel(rel)
                dataset_path(ds, rel)
                _plan_fetch(alt, rel, sizes, dirs, report.failed)
            except (StagingError, OSError) as e:
                report.failed.append((rel, str(e)))
    for rel in sorted(dirs):
        if any(f.startswith(rel + "/") for f in sizes):
            continue  # created with the files below it
        try:
            d = dataset_path(ds, rel)
            os.makedirs(d, exist_ok=True)
        except (OSError, StagingError) as e:
            report.failed.append((rel, str(e)))

    algorithms = hashes(dict(sizes)) if hashes and sizes else {}

    def worker(task: tuple):
        return _fetch_one(task, ds, alt, job_end_time,
                          algorithms.get(task[0]))

    def on_result(task: tuple, res: object) -> None:
        rel = task[0]
        if isinstance(res, _Tampered):
            report.tampered.append(rel)
        elif isinstance(res, Exception):
            report.failed.append((rel, failure_reason(res)))
        else:
            if isinstance(res, tuple):
                report.hashed[rel] = res
                res = res[0]
            report.copied.append(rel)
            report.files += 1
            report.bytes += res

    run_parallel(sorted(sizes.items()), worker, jobs, progress, on_result)
    report.copied.sort()
    report.tampered.sort()
    report.failed.sort()
    return report
