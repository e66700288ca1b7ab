"""Benchmark fixtures: DataLad datasets tracking N files, built with git plumbing.

A dataset is made by ``datalad create`` followed by ONE ``git fast-import``
stream that adds N files in a single commit: 90 % annex-style symlinks
(mode 120000, pointing to ``.git/annex/objects/Xx/Yy/KEY/KEY`` whose content
is absent, as in a real dataset whose data lives elsewhere) and 10 % small
regular files, spread over directories of 500 files.  A second commit of
the same stream gives the git-annex branch a location log for every annexed
key (content in a repository "bench-origin"), as a real dataset has: without
them git-annex's own index (``.git/annex/index``, one entry per key) would
be tiny and its per-command cost of committing that branch would not show.
``git reset --hard`` then populates the worktree.  A 100k-file dataset takes a few seconds.

Datasets are cached (``--cache``; by default on tmpfs,
``/dev/shm/hpcdata-bench-cache``, when it has room for the sizes asked for,
else ``/tmp/hpcdata-bench-cache``) and reused across runs; a 1M-file
dataset takes ~4.5 GB and ~2.5 min to build, and is removed from tmpfs at
the end of a run unless ``--keep-cache``.  Before every use :func:`reset_dataset` brings a cached
dataset back to its fixture commit (tag ``bench-fixture``), removes job
outputs/logs and both job stores (ours and the peer's), so every measurement
starts from the same state.  A dataset is rebuilt only if it is missing or
was built by an older fixture version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

FIXTURE_VERSION = 3
TMPFS_CACHE = Path("/dev/shm/hpcdata-bench-cache")
DISK_CACHE = Path("/tmp/hpcdata-bench-cache")
BIG = 1_000_000             # datasets this large leave tmpfs after a run
# measured: a 1M-file fixture takes 4.1 GiB (worktree symlinks are a page
# each on tmpfs) plus ~0.2 GiB of .git
BYTES_PER_FILE = 4600
TAG = "bench-fixture"
FILES_PER_DIR = 500
REGULAR_EVERY = 10          # every 10th file is a small regular file

# the job every benchmark submits: writes 3 small files into $1 (= out/<n>)
JOB_SH = """#!/bin/sh
#SBATCH --job-name=hpcbench
#SBATCH --time=00:05:00
set -e
mkdir -p "$1"
echo "job ${SLURM_JOB_ID:-none} a" > "$1/a.txt"
echo "job ${SLURM_JOB_ID:-none} b" > "$1/b.txt"
printf '{"job": "%s"}\\n' "${SLURM_JOB_ID:-none}" > "$1/c.json"
"""


def git(root, *args, input=None, env=None, check=True):
    proc = subprocess.run(["git", *args], cwd=root, input=input,
                          capture_output=True, env=env,
                          text=isinstance(input, str) or input is None)
    if check and proc.returncode:
        raise RuntimeError("git %s failed: %s" % (" ".join(args[:3]),
                                                   proc.stderr))
    return proc


def _annex_key(i: int, size: int) -> tuple[str, str]:
    digest = hashlib.md5(b"bench-%d" % i).hexdigest()
    key = "MD5E-s%d--%s.dat" % (size, digest)
    # two hash directories like annex's mixed-case hashdirmixed layout
    h = hashlib.md5(key.encode()).hexdigest()
    d1 = h[0].upper() + h[1]
    d2 = h[2] + h[3].upper()
    return key, "%s/%s/%s/%s" % (d1, d2, key, key)


ORIGIN_UUID = "00000000-0000-4000-8000-0000000b0b0b"
LOG_TIME = b"1700000000s"


def fast_import_stream(n_files: int, parent: str, annex_parent: str = "",
                       uuid_log: bytes = b"") -> bytes:
    """One commit adding n_files below data/ plus code/job.sh; with
    `annex_parent`, one commit on the git-annex branch with a location log
    for each annexed key (and "bench-origin" added to `uuid_log`)."""
    chunks = []
    add = chunks.append
    log = b"%s 1 %s\n" % (LOG_TIME, ORIGIN_UUID.encode())
    add(b"blob\nmark :1\ndata %d\n%s\n" % (len(log), log))
    add(b"commit refs/heads/bench-import\n")
    add(b"committer bench <bench@example.com> 1700000000 +0000\n")
    msg = b"bench fixture: %d files" % n_files
    add(b"data %d\n%s\n" % (len(msg), msg))
    add(b"from %s\n" % parent.encode())
    job = JOB_SH.encode()
    add(b"M 100755 inline code/job.sh\ndata %d\n%s\n" % (len(job), job))
    logs = []
    for i in range(n_files):
        d = "data/d%04d" % (i // FILES_PER_DIR)
        if i % REGULAR_EVERY == 0:
            path = "%s/meta%06d.json" % (d, i)
            body = b'{"file": %d}\n' % i
            add(b"M 100644 inline %s\ndata %d\n%s\n"
                % (path.encode(), len(body), body))
        else:
            path = "%s/f%06d.dat" % (d, i)
            key, objpath = _annex_key(i, 1000 + i % 4096)
            # data/dXXXX/file -> ../../.git/annex/objects/...
            target = ("../../.git/annex/objects/%s" % objpath).encode()
            add(b"M 120000 inline %s\ndata %d\n%s\n"
                % (path.encode(), len(target), target))
            if annex_parent:
                # git-annex's hashdirlower layout of the branch
                h = hashlib.md5(key.encode()).hexdigest()
                logs.append(b"M 100644 :1 %s/%s/%s.log\n"
                            % (h[:3].encode(), h[3:6].encode(),
                               key.encode()))
    add(b"\n")
    if annex_parent:
        add(b"commit refs/heads/git-annex\n")
        add(b"committer bench <bench@example.com> 1700000000 +0000\n")
        msg = b"bench fixture: location logs"
        add(b"data %d\n%s\n" % (len(msg), msg))
        add(b"from %s\n" % annex_parent.encode())
        uuids = uuid_log + b"%s bench-origin timestamp=%s\n" % (
            ORIGIN_UUID.encode(), LOG_TIME)
        add(b"M 100644 inline uuid.log\ndata %d\n%s\n"
            % (len(uuids), uuids))
        chunks.extend(logs)
        add(b"\n")
    return b"".join(chunks)


def build_dataset(path: Path, n_files: int, log=print) -> float:
    """Create the dataset at `path` (must not exist). Return seconds."""
    t0 = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    subprocess.run(["datalad", "create",
                    str(path)], check=True, capture_output=True, env=env)
    head = git(path, "rev-parse", "HEAD").stdout.strip()
    annex = git(path, "rev-parse", "refs/heads/git-annex").stdout.strip()
    uuids = git(path, "cat-file", "blob", "git-annex:uuid.log",
                check=False).stdout.encode()
    stream = fast_import_stream(n_files, head, annex, uuids)
    git(path, "fast-import", "--quiet", input=stream)
    # git-annex builds its index of the branch (one entry per key) once
    git(path, "annex", "merge", "-q")
    branch = git(path, "symbolic-ref", "--short", "HEAD").stdout.strip()
    git(path, "reset", "--hard", "-q", "refs/heads/bench-import")
    git(path, "branch", "-D", "bench-import")
    git(path, "tag", "-f", TAG)
    # entries written in the same second as the index are "racily clean"
    # and would be re-read by the first status; refresh once, a second later
    time.sleep(1.1)
    git(path, "update-index", "-q", "--refresh", check=False)
    # no automatic gc in the middle of a measurement
    git(path, "config", "gc.auto", "0")
    git(path, "config", "gc.autoDetach", "false")
    (path / ".git" / "bench-fixture.json").write_text(json.dumps({
        "version": FIXTURE_VERSION, "files": n_files, "branch": branch,
        "built_s": round(time.monotonic() - t0, 3)}))
    dt = time.monotonic() - t0
    log("  built %d-file dataset %s in %.1f s" % (n_files, path, dt))
    return dt


def fixture_info(path: Path) -> dict | None:
    try:
        return json.loads((path / ".git" / "bench-fixture.json").read_text())
    except (OSError, ValueError):
        return None


def get_dataset(cache: Path, n_files: int, name: str = "", log=print) -> tuple[Path, float | None]:
    """Cached dataset tracking n_files (+ a few fixture files).

    Returns (path, build seconds or None if it came from the cache)."""
    path = cache / ("ds-%d%s" % (n_files, "-" + name if name else ""))
    info = fixture_info(path)
    if info and info.get("version") == FIXTURE_VERSION \
            and info.get("files") == n_files:
        reset_dataset(path)
        return path, None
    if path.exists():
        shutil.rmtree(path)
    dt = build_dataset(path, n_files, log=log)
    return path, dt


def reset_dataset(path: Path):
    """Back to the fixture commit: drop bench commits, outputs, job stores."""
    git(path, "reset", "--hard", "-q", TAG)
    for sub in ("out", "logs"):
        shutil.rmtree(path / sub, ignore_errors=True)
    for p in path.glob("slurm-*"):
        p.unlink()
    gitdir = path / ".git"
    shutil.rmtree(gitdir / "datalad-hpcdata", ignore_errors=True)
    for db in gitdir.glob("*.db"):      # the peer's store: .git/<dsid>.db
        db.unlink()
    git(path, "update-ref", "-d", "refs/bench/floor", check=False)
    # the setting the committed figures were measured with (the default,
    # "commit", costs each finish the floor "git annex add ... git-annex
    # branch committed")
    git(path, "config", "datalad.hpcdata.annex-journal", "defer")
    # location logs a run left in git-annex's journal: committed now, not
    # by some git-annex call in the middle of the next measurement
    journal = gitdir / "annex" / "journal"
    if journal.is_dir() and any(journal.iterdir()):
        git(path, "annex", "merge", "-q")


def tracked_files(path: Path) -> int:
    """Entries in the index, counted as they stream by: the benchmark
    process must stay small (a child's peak RSS reported by wait4 is at
    least its parent's at the time it was started)."""
    p = subprocess.Popen(["git", "ls-files", "-z"], cwd=path,
                         stdout=subprocess.PIPE)
    n = 0
    for chunk in iter(lambda: p.stdout.read(1 << 20), b""):
        n += chunk.count(b"\0")
    if p.wait():
        raise RuntimeError("git ls-files failed in %s" % path)
    return n


def needed_bytes(n_files: int) -> int:
    return n_files * BYTES_PER_FILE + (64 << 20)


def _available(path: Path) -> tuple[int, int]:
    """(free bytes on the file system of `path`, MemAvailable bytes)."""
    p = path
    while not p.exists():
        p = p.parent
    st = os.statvfs(p)
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return st.f_bavail * st.f_frsize, mem


def on_tmpfs(path: Path) -> bool:
    p = os.path.realpath(path)
    best, fstype = "", ""
    try:
        for line in open("/proc/mounts"):
            parts = line.split()
            mnt = parts[1]
            if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and \
                    len(mnt) > len(best):
                best, fstype = mnt, parts[2]
    except OSError:
        return False
    return fstype == "tmpfs"


def _missing(cache: Path, sizes) -> int:
    return sum(needed_bytes(n) for n in sizes
               if not (fixture_info(cache / ("ds-%d" % n)) or {}).get(
                   "version") == FIXTURE_VERSION)


def choose_cache(sizes) -> Path:
    """tmpfs if it (and memory) has room for the datasets not built yet."""
    if TMPFS_CACHE.parent.is_dir():
        need = _missing(TMPFS_CACHE, sizes)
        free, mem = _available(TMPFS_CACHE)
        if free >= need * 1.1 and mem >= need + (2 << 30):
            return TMPFS_CACHE
    return DISK_CACHE


def check_room(cache: Path, n_files: int, built: bool = True):
    """Refuse (clearly, before anything is built) a dataset that would not
    fit: on tmpfs it takes memory.  With `built` a dataset already in the
    cache needs no room; without, room for one more copy (a clone)."""
    need = _missing(cache, [n_files]) if built else needed_bytes(n_files)
    if not need:
        return
    free, mem = _available(cache)
    short = free < need * 1.1 or (on_tmpfs(cache) and
                                  mem < need + (2 << 30))
    if short:
        raise SystemExit(
            "not enough room for the %d-file dataset in %s: needs ~%.1f GiB, "
            "%.1f GiB free, %.1f GiB memory available (use --cache or "
            "--sizes)" % (n_files, cache, need / 2**30, free / 2**30,
                          mem / 2**30))


def drop_big(cache: Path, sizes) -> list[Path]:
    """Remove datasets of BIG files and more from tmpfs."""
    gone = []
    if not on_tmpfs(cache):
        return gone
    for n in sizes:
        path = cache / ("ds-%d" % n)
        if n >= BIG and path.exists():
            shutil.rmtree(path)
            gone.append(path)
    return gone


def index_info(path: Path) -> dict:
    """Size of the index file and, when it is split, of its shared part
    (the one whose hash the index's link extension names).  Reads the
    index in chunks (see tracked_files)."""
    gitdir = path / ".git"
    index = gitdir / "index"
    names = {bytes.fromhex(p.name.split(".", 1)[1]): p
             for p in gitdir.glob("sharedindex.*")}
    found, tail = None, b""
    with open(index, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            buf = tail + chunk
            found = found or next((p for h, p in names.items() if h in buf),
                                  None)
            tail = buf[-32:]
    return {"index_bytes": index.stat().st_size,
            "shared_bytes": found.stat().st_size if found else None}
