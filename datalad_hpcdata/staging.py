"""Staging area for ``--alt-dir``: job I/O outside the dataset.

The git repository stays on a local file system; a job reads its inputs from
and writes its outputs to ``ALT/<dataset-relative path>`` on the parallel file
system.  This module is the file-system half of that feature and knows
nothing about Slurm, the job store or git:

* :func:`check_alt_dir` validates (and creates) the staging root;
* :func:`stage_inputs` copies input *content* (annexed files are
  dereferenced) into the staging area, skipping files that are already
  staged unchanged, in parallel and with progress reports;
* :func:`prepare_outputs` creates parent directories for the outputs and
  removes stale staged copies left over from an earlier run;
* :func:`fetch_outputs` copies outputs and logs back into the dataset --
  atomically per file, verified by size and SHA-256, never through an annex
  symlink and never outside the dataset -- and reports every file that did
  not come back (missing, tampered with after the job ended, failed);
* :func:`cleanup` removes a job's staged files, leaving paths other open
  jobs still use alone, and prunes directories that became empty (never the
  staging root itself or anything above it).

Copying never goes through a shell.  All dataset-relative paths are POSIX
paths in the canonical form of :mod:`datalad_hpcdata.paths`; outputs may be
glob specs (``res/run*/x.txt``), which are expanded in the staging area.
Every function validates all paths before it changes anything and raises
:class:`StagingError` for unusable ones.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from .paths import glob_base, has_glob

#: A staged output whose mtime is later than the job's end plus this many
#: seconds was modified after the job ended and is not copied back.
TAMPER_TOLERANCE = 2.0

lgr = logging.getLogger("datalad.hpcdata.staging")

_CHUNK = 1 << 20
_TMP_PREFIX = ".hpcdata-tmp-"

Progress = Callable[[int, int, int, int], None]


class StagingError(ValueError):
    """A staging request that is refused; nothing has been changed."""


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

    @property
    def ok(self) -> bool:
        return not (self.missing or self.tampered or self.failed)


class _Failed(Exception):
    """One file could not be handled; the message is the reason."""


class _Tampered(Exception):
    pass


# ---------------------------------------------------------------- paths ---

def _is_within(path: str, root: str) -> bool:
    """`path` equals `root` or lies below it (both absolute, normalised)."""
    if root == os.sep:
        return True
    return path == root or path.startswith(root + os.sep)


def _check_rel(rel, what="path") -> list:
    """Components of a dataset-relative POSIX path; StagingError if unusable."""
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


def _norm_rel(rel: str) -> str:
    return "/".join(_check_rel(rel))


def _join_checked(root: str, rel: str, what: str) -> str:
    """root/rel, refusing lexical escapes and escapes through symlinked
    directories (the last component is not resolved: it may be a symlink
    that is replaced, never followed)."""
    parts = _check_rel(rel, what)
    root_real = os.path.realpath(root)
    path = os.path.join(root_real, *parts)
    parent = os.path.realpath(os.path.dirname(path))
    if not _is_within(parent, root_real):
        raise StagingError(
            "%s %r leads outside %s (through a symlink to %s)"
            % (what, rel, root_real, parent))
    return path


def staged_path(alt_root: str, rel: str) -> str:
    """``alt_root/rel`` for a dataset-relative POSIX path.

    Raises StagingError for empty, absolute, ``..``-containing or ``.git``
    paths and for paths whose directory resolves outside `alt_root`.
    """
    return _join_checked(alt_root, rel, "staged path")


def _dataset_path(ds_root: str, rel: str) -> str:
    return _join_checked(ds_root, rel, "dataset path")


def staged_overlaps(a_paths: Iterable[str], b_paths: Iterable[str]) -> list:
    """Pairs ``(a, b)`` where one path equals or contains the other.

    Glob specs are compared by their literal directory part (the part they
    can claim).
    """
    def base(p):
        norm = _check_spec(p)
        return glob_base(norm) if has_glob(norm) else norm
    a_list = [(a, base(a)) for a in a_paths]
    b_list = [(b, base(b)) for b in b_paths]
    hits = []
    for a, ab in a_list:
        for b, bb in b_list:
            if _overlap(ab, bb):
                hits.append((a, b))
    return hits


def _overlap(a: str, b: str) -> bool:
    if a == "" or b == "":  # a glob without literal base claims everything
        return True
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _covered(rel: str, keep: Iterable[str]) -> bool:
    """rel equals or lies below a kept path."""
    return any(k == "" or rel == k or rel.startswith(k + "/") for k in keep)


# -------------------------------------------------------- the alt dir ---

def check_alt_dir(alt_dir: str, ds_root: str) -> str:
    """Validate and create the staging root; return its real absolute path.

    Refused (StagingError, nothing created): ``/``, the dataset itself or
    anything inside it, the dataset's parent directory or any other ancestor
    of the dataset, a directory that cannot be created or written to.
    """
    if not alt_dir or not str(alt_dir).strip():
        raise StagingError("--alt-dir: empty path")
    ds = os.path.realpath(ds_root)
    alt = os.path.realpath(os.path.abspath(os.path.expanduser(str(alt_dir))))
    _refuse_location(alt_dir, alt, ds)

    created = []
    missing = []
    probe = alt
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    try:
        for d in reversed(missing):
            os.mkdir(d)
            created.append(d)
    except OSError as e:
        _undo_mkdirs(created)
        raise StagingError("--alt-dir %s cannot be created: %s"
                           % (alt_dir, e.strerror or e)) from e
    try:
        if not os.path.isdir(alt):
            raise StagingError("--alt-dir %s is not a directory" % alt_dir)
        # re-check: a symlink may have been swapped in meanwhile
        _refuse_location(alt_dir, os.path.realpath(alt), ds)
        try:
            fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX + "probe-",
                                        dir=alt)
            os.close(fd)
            os.unlink(name)
        except OSError as e:
            raise StagingError("--alt-dir %s is not writable: %s"
                               % (alt_dir, e.strerror or e)) from e
    except StagingError:
        _undo_mkdirs(created)
        raise
    return os.path.realpath(alt)


def _refuse_location(given, alt: str, ds: str) -> None:
    if alt == os.sep:
        raise StagingError("--alt-dir %s is the file system root" % given)
    if _is_within(alt, ds):
        raise StagingError(
            "--alt-dir %s is inside the dataset %s; it must be outside"
            % (given, ds))
    if alt == os.path.dirname(ds):
        raise StagingError(
            "--alt-dir %s is the dataset's parent directory; use a dedicated "
            "directory" % given)
    if _is_within(ds, alt):
        raise StagingError(
            "--alt-dir %s contains the dataset %s; use a directory outside "
            "of it" % (given, ds))


def _undo_mkdirs(created: list) -> None:
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            pass


# ------------------------------------------------------------ helpers ---

def _hash_fd(fd, copy_to=None) -> tuple:
    """(size, sha256 hex) of what `fd` reads; also written to `copy_to`."""
    h = hashlib.sha256()
    n = 0
    while True:
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
        if copy_to is not None:
            view = memoryview(chunk)
            while view:
                view = view[os.write(copy_to, view):]
    return n, h.hexdigest()


def _hash_file(path: str) -> tuple:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        return _hash_fd(fd)
    finally:
        os.close(fd)


def _mkstemp(directory: str) -> tuple:
    """Temp file in `directory`, recreating the directory once if a
    concurrent cleanup pruned it between makedirs and here."""
    for attempt in range(3):
        try:
            return tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
        except FileNotFoundError:
            if attempt == 2:
                raise
            os.makedirs(directory, exist_ok=True)


def _unlink_quiet(path) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def _run_parallel(tasks: list, worker, jobs: int, progress: Optional[Progress],
                  on_result) -> None:
    """Run worker(task) for each task; on_result(task, result_or_exc) in the
    calling thread; progress after every finished file."""
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


# ------------------------------------------------------------- inputs ---

def _git_dirs(ds: str) -> list:
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


def _allowed_target(real: str, ds: str, git_dirs: list, is_dir: bool) -> bool:
    """May the content at `real` (a symlink's resolved target) be staged?

    Files: anything inside the dataset outside ``.git``, or annexed content
    (``annex/objects`` of the dataset's or a subdataset's git directory).
    Directories: inside the dataset, never inside a ``.git``."""
    for g in git_dirs:
        if _is_within(real, g):
            return (not is_dir
                    and _is_within(real, os.path.join(g, "annex", "objects")))
    if not _is_within(real, ds):
        return False
    parts = os.path.relpath(real, ds).split(os.sep)
    if ".git" in parts:
        i = parts.index(".git")
        return (not is_dir and parts[i + 1:i + 3] == ["annex", "objects"])
    return True


def _plan_input(ds, git_dirs, rel, path, files, dirs, failed, chain):
    """Collect files below one input: files[rel] = (content path, size)."""
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
        files[rel] = (path, st.st_size)
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
                        os.path.join(path, name), files, dirs, failed,
                        chain | {real})
    else:
        failed.append((rel, "not a regular file or directory"))


def _stage_one(task) -> tuple:
    """Copy one input; returns ('copied'|'skipped', bytes written)."""
    rel, src, dst, _size = task
    st = os.stat(src)
    try:
        lst = os.lstat(dst)
    except FileNotFoundError:
        lst = None
    if lst is not None:
        if stat.S_ISDIR(lst.st_mode):
            raise _Failed("a directory is in the way in the staging area")
        if stat.S_ISREG(lst.st_mode) and lst.st_size == st.st_size:
            if lst.st_mtime_ns == st.st_mtime_ns:
                return "skipped", 0
            # same size, different mtime (e.g. coarse timestamps on the
            # parallel file system, or a touched source): compare content
            if _hash_file(src) == _hash_file(dst):
                try:
                    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns),
                             follow_symlinks=False)
                except OSError:
                    pass
                return "skipped", 0
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    fd, tmp = _mkstemp(parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        after = os.stat(src)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            raise _Failed("source changed while it was being copied")
        os.chmod(tmp, stat.S_IMODE(st.st_mode) | stat.S_IRUSR)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, dst)
        tmp = None
    finally:
        _unlink_quiet(tmp)
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
        norm = _norm_rel(rel)
        _dataset_path(ds, norm)
        staged_path(alt, norm)
        rels.append(norm)
    git_dirs = _git_dirs(ds)
    report = StageReport()
    files, dirs = {}, set()
    for rel in dict.fromkeys(rels):
        src = os.path.join(ds, *rel.split("/"))
        if not os.path.lexists(src):
            report.failed.append((rel, "does not exist in the dataset"))
            continue
        _plan_input(ds, git_dirs, rel, src, files, dirs, report.failed,
                    frozenset())
    tasks = []
    for rel in sorted(dirs):
        try:
            d = staged_path(alt, rel)
            if os.path.islink(d) or (os.path.lexists(d)
                                     and not os.path.isdir(d)):
                raise _Failed("a non-directory is in the way in the "
                              "staging area")
            os.makedirs(d, exist_ok=True)
        except (OSError, StagingError, _Failed) as e:
            report.failed.append((rel, str(e)))
    for rel, (src, size) in sorted(files.items()):
        try:
            tasks.append((rel, src, staged_path(alt, rel), size))
        except StagingError as e:
            report.failed.append((rel, str(e)))

    def on_result(task, res):
        rel, size = task[0], task[-1]
        if isinstance(res, Exception):
            reason = (str(res) if isinstance(res, (_Failed, StagingError))
                      else "%s: %s" % (type(res).__name__, res))
            report.failed.append((rel, reason))
            return
        kind, written = res
        report.files += 1
        report.bytes += size
        report.copied_bytes += written
        (report.copied if kind == "copied" else report.skipped).append(rel)

    _run_parallel(tasks, _stage_one, jobs, progress, on_result)
    report.copied.sort()
    report.skipped.sort()
    report.failed.sort()
    return report


# ------------------------------------------------------------ outputs ---

def _expand_staged(alt: str, spec: str) -> list:
    """Existing staged paths (dataset-relative) matching an output spec."""
    if not has_glob(spec):
        return [spec] if os.path.lexists(os.path.join(alt, spec)) else []
    hits = glob.glob(os.path.join(glob.escape(alt), spec), recursive=True)
    out = []
    for h in hits:
        rel = os.path.relpath(h, alt).replace(os.sep, "/")
        if rel != "." and not rel.startswith("../"):
            out.append(rel)
    return sorted(out)


def _check_spec(spec: str) -> str:
    norm = _norm_rel(spec)
    if has_glob(norm) and not glob_base(norm):
        raise StagingError("output glob %r has no literal directory" % spec)
    return norm


def _remove(path: str) -> None:
    """Remove a file, symlink or directory tree (never following links),
    making read-only directories writable if needed."""
    if os.path.isdir(path) and not os.path.islink(path):
        for name in os.listdir(path):
            _remove(os.path.join(path, name))
        _retry_writable(os.rmdir, path)
    else:
        _retry_writable(os.unlink, path)


def _retry_writable(op, path) -> None:
    try:
        op(path)
    except PermissionError:
        parent = os.path.dirname(path)
        os.chmod(parent, stat.S_IMODE(os.stat(parent).st_mode) | stat.S_IRWXU)
        op(path)


def prepare_outputs(alt_root: str, rel_outputs: Iterable[str],
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
    specs = []
    for spec in rel_outputs:
        norm = _check_spec(spec)
        base = glob_base(norm) if has_glob(norm) else norm
        staged_path(alt, base)
        specs.append(norm)
    # the directories each output needs, checked before anything changes
    needed = {}
    for norm in specs:
        if has_glob(norm):
            parts = glob_base(norm).split("/")
            needed[norm] = ["/".join(parts[:i + 1]) for i in range(len(parts))]
        else:
            parts = norm.split("/")
            needed[norm] = ["/".join(parts[:i + 1])
                            for i in range(len(parts) - 1)]
    for norm, dlist in needed.items():
        for d in dlist:
            p = os.path.join(alt, *d.split("/"))
            if os.path.lexists(p) and not os.path.isdir(p):
                raise StagingError(
                    "cannot prepare output %r: %s exists in the staging area "
                    "and is not a directory" % (norm, p))
    removed = []
    for norm in specs:
        for rel in _expand_staged(alt, norm):
            p = staged_path(alt, rel)
            if has_glob(norm) and rel in needed[norm]:
                continue
            if os.path.lexists(p):
                _remove(p)
                removed.append(rel)
        for d in needed[norm]:
            os.makedirs(staged_path(alt, d), exist_ok=True)
        if ds and not has_glob(norm):
            src = os.path.join(ds, *norm.split("/"))
            if os.path.isdir(src) and not os.path.islink(src):
                os.makedirs(staged_path(alt, norm), exist_ok=True)
    return sorted(set(removed))


def _plan_fetch(alt, rel, files, dirs, failed):
    path = staged_path(alt, rel)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        failed.append((rel, "is a symlink in the staging area (-> %s); not "
                       "copied back" % os.readlink(path)))
    elif stat.S_ISREG(st.st_mode):
        files[rel] = st.st_size
    elif stat.S_ISDIR(st.st_mode):
        dirs.add(rel)
        for name in sorted(os.listdir(path)):
            if name == ".git":
                continue
            if name.startswith(_TMP_PREFIX):
                continue
            _plan_fetch(alt, rel + "/" + name, files, dirs, failed)
    else:
        failed.append((rel, "not a regular file or directory"))


def _fetch_one(task, ds, alt, job_end_time):
    rel, _size = task
    src = staged_path(alt, rel)
    dst = _dataset_path(ds, rel)
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    tmp = None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Failed("not a regular file")
        if job_end_time is not None and \
                st.st_mtime > job_end_time + TAMPER_TOLERANCE:
            raise _Tampered()
        parent = os.path.dirname(dst)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise _Failed("cannot create %s in the dataset: %s"
                          % (os.path.dirname(rel), e.strerror or e))
        # re-check after creating: never outside the dataset or into .git
        _dataset_path(ds, rel)
        if os.path.isdir(dst) and not os.path.islink(dst):
            raise _Failed("a directory is in the way in the dataset")
        tfd, tmp = _mkstemp(parent)
        try:
            n, digest = _hash_fd(fd, copy_to=tfd)
            os.fsync(tfd)
        finally:
            os.close(tfd)
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns) \
                or n != st.st_size:
            raise _Failed("staged file changed while it was being copied back")
        # verify what landed in the dataset before it replaces anything
        got = _hash_file(tmp)
        if got != (n, digest):
            raise _Failed("verification failed: copied %d bytes sha256 %s, "
                          "staged %d bytes sha256 %s"
                          % (got[0], got[1], n, digest))
        os.chmod(tmp, stat.S_IMODE(st.st_mode) | stat.S_IRUSR | stat.S_IWUSR)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        # replaces a file or an (annex) symlink itself; never writes through
        os.replace(tmp, dst)
        tmp = None
        final = os.lstat(dst)
        if not stat.S_ISREG(final.st_mode) or final.st_size != n:
            raise _Failed("file in the dataset does not match after replacing")
        return n
    finally:
        os.close(fd)
        _unlink_quiet(tmp)


def fetch_outputs(ds_root: str, alt_root: str, rel_outputs: Iterable[str],
                  rel_logs: Iterable[str] = (),
                  job_end_time: Optional[float] = None, jobs: int = 4,
                  progress: Optional[Progress] = None) -> FetchReport:
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
    """
    ds = os.path.realpath(ds_root)
    alt = os.path.realpath(alt_root)
    specs = []
    for spec in list(rel_outputs) + list(rel_logs):
        norm = _check_spec(spec)
        base = glob_base(norm) if has_glob(norm) else norm
        staged_path(alt, base)
        _dataset_path(ds, base)
        specs.append(norm)
    report = FetchReport()
    files, dirs = {}, set()
    for spec in dict.fromkeys(specs):
        hits = _expand_staged(alt, spec)
        if not hits:
            report.missing.append(spec)
            continue
        for rel in hits:
            try:
                _check_rel(rel)
                _dataset_path(ds, rel)
                _plan_fetch(alt, rel, files, dirs, report.failed)
            except (StagingError, OSError) as e:
                report.failed.append((rel, str(e)))
    for rel in sorted(dirs):
        if any(f.startswith(rel + "/") for f in files):
            continue  # created with the files below it
        try:
            d = _dataset_path(ds, rel)
            os.makedirs(d, exist_ok=True)
        except (OSError, StagingError) as e:
            report.failed.append((rel, str(e)))

    def worker(task):
        return _fetch_one(task, ds, alt, job_end_time)

    def on_result(task, res):
        rel = task[0]
        if isinstance(res, _Tampered):
            report.tampered.append(rel)
        elif isinstance(res, Exception):
            reason = (str(res) if isinstance(res, (_Failed, StagingError))
                      else "%s: %s" % (type(res).__name__, res))
            report.failed.append((rel, reason))
        else:
            report.copied.append(rel)
            report.files += 1
            report.bytes += res

    _run_parallel(sorted(files.items()), worker, jobs, progress, on_result)
    report.copied.sort()
    report.tampered.sort()
    report.failed.sort()
    return report


# ------------------------------------------------------------ cleanup ---

def cleanup(alt_root: str, rel_paths: Iterable[str],
            keep: Iterable[str] = ()) -> list:
    """Remove the staged copies of `rel_paths` (files, directory trees,
    output glob specs) and prune directories that became empty, up to but
    never including `alt_root`.

    `keep`: paths (inputs, outputs, logs) of other open jobs using the same
    staging root.  Nothing equal to or below a kept path is removed, and no
    directory that is, contains or lies below a kept path is pruned.
    Returns the removed dataset-relative paths (files and directories).
    """
    alt = os.path.realpath(alt_root)
    specs = []
    for spec in rel_paths:
        norm = _check_spec(spec)
        staged_path(alt, glob_base(norm) if has_glob(norm) else norm)
        specs.append(norm)
    keep_bases = []
    for k in keep:
        kn = _check_spec(k)
        keep_bases.append(glob_base(kn) if has_glob(kn) else kn)
    removed = []
    tops = []
    for spec in dict.fromkeys(specs):
        for rel in _expand_staged(alt, spec):
            try:
                path = staged_path(alt, rel)
            except StagingError:
                continue
            _remove_except(path, rel, keep_bases, removed)
            tops.append(rel)
    # prune empty parents, deepest first
    parents = set()
    for rel in tops:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            parents.add("/".join(parts[:i]))
    for d in sorted(parents, key=lambda p: -p.count("/")):
        if any(_overlap(d, k) for k in keep_bases):
            continue
        p = os.path.join(alt, *d.split("/"))
        if os.path.islink(p) or not os.path.isdir(p):
            continue
        try:
            os.rmdir(p)
            removed.append(d)
        except OSError:
            pass
    return sorted(set(removed))


def _remove_except(path, rel, keep, removed) -> bool:
    """Remove path (recursively) except kept paths; True if it is gone."""
    if _covered(rel, keep):
        return False
    if not os.path.lexists(path):
        return True
    if os.path.isdir(path) and not os.path.islink(path):
        all_gone = True
        for name in sorted(os.listdir(path)):
            if not _remove_except(os.path.join(path, name), rel + "/" + name,
                                  keep, removed):
                all_gone = False
        if not all_gone or any(_overlap(rel, k) for k in keep):
            return False
        try:
            _retry_writable(os.rmdir, path)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                lgr.warning("could not remove staged %s: %s", path, e)
            return False
    else:
        try:
            _retry_writable(os.unlink, path)
        except OSError as e:
            lgr.warning("could not remove staged %s: %s", path, e)
            return False
    removed.append(rel)
    return True
