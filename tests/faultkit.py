"""Helpers for the fault, concurrency and outage tests.

Everything runs against the real Slurm cluster and real git/git-annex.
Commands that must die or run concurrently are separate processes (the
``datalad`` command line, or ``python -c`` through the Python API).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from slurmtest import wait_jobs

from datalad_hpcdata.dataset.handle import find_git_dir
from datalad_hpcdata.jobs.record import parse_message

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tools" / "slurm-cluster.sh"
SUBJECT = "[DATALAD SLURM RUN] Slurm job "


def git(path, *args, check=True) -> str:
    return subprocess.run(["git", *args], cwd=str(path), capture_output=True,
                          text=True, check=check).stdout


def head(path) -> str:
    return git(path, "rev-parse", "HEAD").strip()


def cli(ds_path, *args, env=None, check=False, hostname=None,
        timeout=300) -> subprocess.CompletedProcess:
    """`datalad -f json ARGS` in the dataset (optionally in a UTS
    namespace with its own host name: another 'login node')."""
    argv = ["datalad", "-f", "json", *args]
    if hostname:
        argv = ["unshare", "--uts", "sh", "-c",
                'hostname "$0" && exec "$@"', hostname, *argv]
    return subprocess.run(argv, cwd=str(ds_path), capture_output=True,
                          text=True, env=dict(os.environ, **(env or {})),
                          check=check, timeout=timeout,
                          preexec_fn=default_sigint)


def default_sigint():
    """A shell runs background jobs with SIGINT ignored, and Python then
    never raises KeyboardInterrupt: give the child Ctrl-C as a terminal
    would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def records(proc) -> list[dict]:
    out = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def job_store(ds_path) -> Path:
    """The job store's database file of the dataset at `ds_path`."""
    return find_git_dir(str(ds_path)) / "datalad-hpcdata" / "jobs.sqlite"


def _store_select(ds_path, sql: str) -> list[tuple]:
    """The rows `sql` selects in the job store, read without the package
    ([] while there is no job store)."""
    db = job_store(ds_path)
    if not db.exists():
        return []
    con = sqlite3.connect(str(db))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def store_rows(ds_path) -> list[tuple]:
    """(row, status, job_id, pid) of every job, read without the package."""
    return _store_select(ds_path, "SELECT row, status, job_id, pid FROM jobs "
                         "ORDER BY row")


def store_claims(ds_path) -> list[tuple]:
    return _store_select(ds_path, "SELECT c.path, j.status FROM claims c "
                         "JOIN jobs j ON c.row = j.row ORDER BY c.path")


def store_integrity(ds_path) -> str:
    db = job_store(ds_path)
    con = sqlite3.connect(str(db))
    try:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        return "%s/%s" % (ok, mode)
    finally:
        con.close()


def commits_since(ds_path, base) -> list[tuple[str, dict]]:
    """(subject, record) of every commit after `base`, oldest first; a
    commit whose record does not parse fails the test."""
    out = git(ds_path, "log", "--reverse", "-z", "--format=%H%n%B",
              "%s..HEAD" % base)
    found = []
    for entry in out.split("\0"):
        if not entry.strip():
            continue
        sha, _, msg = entry.strip().partition("\n")
        parsed = parse_message(msg)
        assert parsed, "commit %s has no readable record:\n%s" % (sha, msg)
        found.append((msg.splitlines()[0], parsed[1]))
    return found


def job_commit_counts(ds_path, base) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, rec in commits_since(ds_path, base):
        jid = str(rec["slurm_job_id"])
        counts[jid] = counts.get(jid, 0) + 1
    return counts


def fsck_clean(ds_path) -> None:
    proc = subprocess.run(["git", "fsck", "--no-dangling", "--no-progress"],
                          cwd=str(ds_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stderr.lower(), proc.stderr


def status(ds_path) -> str:
    return git(ds_path, "status", "--porcelain", "--untracked-files=all")


def changed_paths(ds_path, base) -> set[str]:
    return set(git(ds_path, "diff", "--name-only", base, "HEAD").split())


def python_api(code: str, ds_path, env=None,
               timeout=300) -> subprocess.CompletedProcess:
    """Run `code` (with `dl` = datalad.api, `ds` = the dataset path)."""
    prog = ("import datalad.api as dl, json, sys\nds = sys.argv[1]\n"
            + code)
    return subprocess.run([sys.executable, "-c", prog, str(ds_path)],
                          cwd=str(ds_path), capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})),
                          timeout=timeout)


def copy_dataset(template: Path, dest: Path) -> Path:
    """A copy of a prepared dataset (cheaper than creating one)."""
    shutil.copytree(template, dest, symlinks=True)
    return dest


def cluster(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), *args], capture_output=True,
                          text=True, timeout=timeout)


def wait_cluster(timeout=90.0) -> None:
    """Until the controller and accounting answer again (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster("status").returncode == 0:
            return
        time.sleep(1.0)
    raise TimeoutError("the Slurm cluster did not come back within %.0f s"
                       % timeout)


def finish_api(ds_path, **kw) -> list[dict]:
    """slurm-finish through the Python API, in this process (cheaper than
    the command line for re-runs that are not meant to die)."""
    import datalad.api as dl
    return dl.slurm_finish(dataset=str(ds_path), result_renderer="disabled",
                           return_type="list", on_failure="ignore", **kw)


def text(res) -> str:
    """A result's message as a string ((fmt, *args) from the Python API, a
    list from JSON)."""
    msg = res.get("message")
    if isinstance(msg, (list, tuple)):
        return msg[0] % tuple(msg[1:])
    return msg or ""


def finish_until(ds_path, job_ids, timeout=60.0, **env):
    """slurm-finish (command line) until none of `job_ids` is still
    reported as not done yet; returns the last records."""
    wait_jobs(job_ids)
    deadline = time.monotonic() + timeout
    while True:
        recs = finish_api(ds_path) if not env else records(
            cli(ds_path, "slurm-finish", env=env))
        waiting = [r for r in recs if r.get("slurm_job_id") in job_ids
                   and r["status"] == "notneeded"
                   and "commit" not in r]
        if not waiting or time.monotonic() > deadline:
            return recs
        time.sleep(0.5)
