"""Low-level helpers shared by the ``--alt-dir`` modules.

Path checks for the staging area and the dataset, the hashing copy loop,
temp files, removing trees and the parallel runner with progress reports.

Where this differs from :mod:`datalad_hpcdata.dataset.paths`, and why:

* dataset-relative paths arrive here canonical already (from the job
  store), and they name a place in the staging area as well as in the
  dataset, so :func:`check_rel` checks them lexically -- ``..``, absolute
  paths and ``.git`` at any depth are refused -- instead of interpreting
  them like user input as ``paths.canonical`` does;
* absolute paths are compared once they are real (``realpath`` of the
  roots and of the directory a path leads through, see
  :func:`join_checked`), so the lexical ``paths.within`` is used rather
  than ``paths.inside``, which would resolve them a second time.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable, Iterable, Optional

from ..dataset.paths import (
    PathError,
    claim_path,
    has_glob,
    overlaps,
    within,
)

#: Bytes read at a time while hashing, and while copying.
CHUNK = 1 << 20
COPY_CHUNK = 4 << 20
#: Bytes the kernel copies ahead of the hashing (:func:`copy_hashed`).
COPY_BLOCK = 32 << 20
#: copy_file_range errors meaning "not between these files": copy by hand
NO_KERNEL_COPY = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                  errno.EBADF)
#: Name prefix of every temp file written next to a destination.
TMP_PREFIX = ".hpcdata-tmp-"

#: ``progress(done_files, total_files, done_bytes, total_bytes)``
Progress = Callable[[int, int, int, int], None]


class StagingError(ValueError):
    """A staging request that is refused; nothing has been changed."""


class Failed(Exception):
    """One file could not be handled; the message is the reason."""


def failure_reason(exc: Exception) -> str:
    """The reason a per-file exception is reported with."""
    if isinstance(exc, (Failed, StagingError)):
        return str(exc)
    return "%s: %s" % (type(exc).__name__, exc)


# ---------------------------------------------------------------- paths ---

def check_rel(rel: str, what: str = "path") -> list[str]:
    """Components of a dataset-relative POSIX path; StagingError if unusable.

    Lexical, unlike ``paths.canonical`` (see the module docstring).
    """
    if not isinstance(rel, str) or not rel.strip():
        raise StagingError("empty %s" % what)
    if "\0" in rel:
        raise StagingError("%s %r contains a NUL byte" % (what, rel))
    if rel.startswith("/") or os.path.isabs(rel):
        raise StagingError(
            "%s %r is absolute; a dataset-relative path is required"
            % (what, rel))
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StagingError(
            "%s %r contains '..' and could escape the staging area"
            % (what, rel))
    if not parts:
        raise StagingError(
            "%s %r names the whole dataset / staging root" % (what, rel))
    if ".git" in parts:
        raise StagingError("%s %r is inside a .git directory" % (what, rel))
    return parts


def norm_rel(rel: str) -> str:
    """`rel` checked by :func:`check_rel`, without ``.`` and empty parts."""
    return "/".join(check_rel(rel))


def check_spec(spec: str) -> str:
    """A checked output spec (path or glob with a literal directory)."""
    norm = norm_rel(spec)
    if has_glob(norm):
        try:
            claim_path(norm)
        except PathError:
            raise StagingError("output glob %r has no literal directory"
                               % spec) from None
    return norm


def checked_specs(specs: Iterable[str], alt: str,
                  ds: Optional[str] = None) -> list[str]:
    """Check every spec and what it claims in the staging area (and in the
    dataset `ds`) before anything changes; the normalised specs."""
    out = []
    for spec in specs:
        norm = check_spec(spec)
        base = claim_path(norm)
        staged_path(alt, base)
        if ds is not None:
            dataset_path(ds, base)
        out.append(norm)
    return out


def join_checked(root: str, rel: str, what: str) -> str:
    """root/rel, refusing lexical escapes and escapes through symlinked
    directories (the last component is not resolved: it may be a symlink
    that is replaced, never followed)."""
    parts = check_rel(rel, what)
    root_real = os.path.realpath(root)
    path = os.path.join(root_real, *parts)
    parent = os.path.realpath(os.path.dirname(path))
    if not within(parent, root_real):
        raise StagingError(
            "%s %r leads outside %s (through a symlink to %s)"
            % (what, rel, root_real, parent))
    return path


def staged_path(alt_root: str, rel: str) -> str:
    """``alt_root/rel`` for a dataset-relative POSIX path.

    Raises StagingError for empty, absolute, ``..``-containing or ``.git``
    paths and for paths whose directory resolves outside `alt_root`.
    """
    return join_checked(alt_root, rel, "staged path")


def dataset_path(ds_root: str, rel: str) -> str:
    """``ds_root/rel``, checked like :func:`staged_path`."""
    return join_checked(ds_root, rel, "dataset path")


def local_path(root: str, rel: str) -> str:
    """``root/rel`` for a path already checked (no checks)."""
    return os.path.join(root, *rel.split("/"))


def staged_overlaps(a_paths: Iterable[str], b_paths: Iterable[str]) -> list:
    """Pairs ``(a, b)`` where one path equals or contains the other.

    Glob specs are compared by their literal directory part (the part they
    can claim).
    """
    a_list = [(a, claim_path(check_spec(a))) for a in a_paths]
    b_list = [(b, claim_path(check_spec(b))) for b in b_paths]
    return [(a, b) for a, ab in a_list for b, bb in b_list
            if overlaps(ab, bb)]


# -------------------------------------------------------------- files ---

def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def hash_fd(fd: int, copy_to: Optional[int] = None,
            algorithm: str = "sha256") -> tuple[int, str]:
    """(size, hex digest) of what `fd` reads (hashlib's `algorithm`,
    SHA-256 by default); also written to `copy_to`.

    Copying, each chunk is written by a second thread while this one
    hashes it and reads the next (both release the GIL): a copy costs
    about the longer of hashing and writing, not their sum.  The bytes
    hashed are the bytes written."""
    h = hashlib.new(algorithm)
    n = 0
    if copy_to is None:
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        return n, h.hexdigest()
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        chunk = os.read(fd, COPY_CHUNK)
        while chunk:
            if pending is not None:
                pending.result()
            pending = writer.submit(_write_all, copy_to, chunk)
            h.update(chunk)
            n += len(chunk)
            chunk = os.read(fd, COPY_CHUNK)
        if pending is not None:
            pending.result()
    return n, h.hexdigest()


def _copy_range(src: int, dst: int, offset: int, count: int) -> int:
    """Copy up to `count` bytes at `offset` in the kernel; bytes copied
    (fewer only at the end of the file)."""
    done = 0
    while done < count:
        n = os.copy_file_range(src, dst, count - done, offset + done,
                               offset + done)
        if n == 0:
            break
        done += n
    return done


def copy_hashed(src: int, dst: int, algorithm: str) -> tuple[int, str]:
    """Copy `src` to `dst` (both at offset 0, `dst` open for reading and
    writing) and hash what landed in `dst`: (size, hex digest).

    The kernel copies (``copy_file_range``: no bytes through this process,
    a server-side copy on file systems that have one) one block ahead
    while this thread hashes the block just written, read back from the
    destination: the hash is of the copy itself, for about the cost of
    the longer of the two.  Falls back to :func:`hash_fd` where the
    kernel cannot copy between these files."""
    h = hashlib.new(algorithm)
    total = 0
    try:
        with ThreadPoolExecutor(max_workers=1) as copier:
            ahead = copier.submit(_copy_range, src, dst, 0, COPY_BLOCK)
            while True:
                n = ahead.result()
                if n == 0:
                    break
                ahead = copier.submit(_copy_range, src, dst, total + n,
                                      COPY_BLOCK)
                end = total + n
                while total < end:
                    chunk = os.pread(dst, min(COPY_CHUNK, end - total),
                                     total)
                    if not chunk:
                        raise OSError("the copy is shorter than written")
                    h.update(chunk)
                    total += len(chunk)
    except OSError as e:
        if total or getattr(e, "errno", None) not in NO_KERNEL_COPY:
            raise
        os.lseek(src, 0, os.SEEK_SET)
        os.ftruncate(dst, 0)
        os.lseek(dst, 0, os.SEEK_SET)
        return hash_fd(src, copy_to=dst, algorithm=algorithm)
    return total, h.hexdigest()


def hash_file(path: str) -> tuple[int, str]:
    """(size, sha256 hex) of a file, never following a final symlink."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        return hash_fd(fd)
    finally:
        os.close(fd)


def mkstemp(directory: str) -> tuple[int, str]:
    """Temp file in `directory`, recreating the directory once if a
    concurrent cleanup pruned it between makedirs and here."""
    for attempt in range(3):
        try:
            return tempfile.mkstemp(prefix=TMP_PREFIX, dir=directory)
        except FileNotFoundError:
            if attempt == 2:
                raise
            os.makedirs(directory, exist_ok=True)


def unlink_quiet(path: Optional[str]) -> None:
    """Remove `path` if given, ignoring errors."""
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def remove(path: str) -> None:
    """Remove a file, symlink or directory tree (never following links),
    making read-only directories writable if needed."""
    if os.path.isdir(path) and not os.path.islink(path):
        for name in os.listdir(path):
            remove(os.path.join(path, name))
        retry_writable(os.rmdir, path)
    else:
        retry_writable(os.unlink, path)


def retry_writable(op: Callable[[str], None], path: str) -> None:
    """op(path), once more after making the parent directory writable."""
    try:
        op(path)
    except PermissionError:
        parent = os.path.dirname(path)
        os.chmod(parent, stat.S_IMODE(os.stat(parent).st_mode) | stat.S_IRWXU)
        op(path)


def run_parallel(tasks: list, worker: Callable, jobs: int,
                 progress: Optional[Progress],
                 on_result: Callable) -> None:
    """Run worker(task) for each task; on_result(task, result_or_exc) in the
    calling thread; progress after every finished file.  A task's last
    item is its size in bytes."""
    total = len(tasks)
    total_bytes = sum(t[-1] for t in tasks)
    done = done_bytes = 0
    if progress:
        progress(0, total, 0, total_bytes)
    if not tasks:
        return
    with ThreadPoolExecutor(max_workers=max(1, int(jobs or 1))) as ex:
        futures = {ex.submit(worker, t): t for t in tasks}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                res = fut.result()
            except Exception as e:  # reported per file, never fatal
                res = e
            on_result(task, res)
            done += 1
            done_bytes += task[-1]
            if progress:
                progress(done, total, done_bytes, total_bytes)
