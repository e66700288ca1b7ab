"""Many commands at once on one dataset: exactly one commit per job.

Real Slurm, real git-annex, separate processes.  "Login nodes" are
processes in their own UTS namespace with their own host name (login1,
login2) sharing the dataset's directory, using the lock-file lock
(``DATALAD_HPCDATA_LOCK=file``) that network file systems get.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import datalad.api as dl
import pytest
from faultkit import (
    cli,
    fsck_clean,
    head,
    job_commit_counts,
    records,
    status,
    store_claims,
    store_integrity,
    store_rows,
)
from slurmtest import KW, one, wait_jobs

from datalad_hpcdata.dataset import lock as lockmod
from datalad_hpcdata.dataset.handle import DatasetHandle

pytestmark = pytest.mark.slurm


def submit_many(ds, n, prefix="o"):
    ids = []
    for i in range(n):
        res = dl.slurm_schedule(["sbatch", "--wrap", "echo %d > %s%d.txt"
                                 % (i, prefix, i)], dataset=ds,
                                outputs=["%s%d.txt" % (prefix, i)], **KW)
        ids.append(one(res, action="slurm-schedule",
                       status="ok")["slurm_job_id"])
    return ids


def run_parallel(argvs, cwd, env=None):
    procs = [subprocess.Popen(a, cwd=str(cwd), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, **(env or {})))
             for a in argvs]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        outs.append((p.returncode, out, err))
    return outs


def parsed(outs):
    return [json.loads(line) for _, out, _ in outs
            for line in out.splitlines() if line.startswith("{")]


def check_one_commit_each(ds, base, ids):
    counts = job_commit_counts(ds.path, base)
    assert counts == {j: 1 for j in ids}, counts
    assert status(ds.path) == ""
    assert store_claims(ds.path) == []
    assert not [r for r in store_rows(ds.path) if r[1] == "submitting"]
    assert store_integrity(ds.path) == "ok/delete"
    fsck_clean(ds.path)


def test_four_concurrent_finishes_one_commit_per_job(slurm, dataset):
    """Defect 1: four finishes at once on ten jobs made 40 commits."""
    ds = dataset
    ids = submit_many(ds, 10)
    wait_jobs(ids)
    base = head(ds.path)
    outs = run_parallel([["datalad", "-f", "json", "slurm-finish"]] * 4,
                        ds.path)
    recs = parsed(outs)
    check_one_commit_each(ds, base, ids)
    for jid in ids:
        # a finish that started after the others were done just sees no
        # open jobs; one that read the rows before saw them committed
        mine = [r for r in recs if r.get("slurm_job_id") == jid]
        ok = [r for r in mine if r["status"] == "ok"]
        assert len(ok) == 1, mine
        # the others say it was already committed, and by which commit
        for r in mine:
            if r["status"] != "ok":
                assert r["status"] == "notneeded", r
                assert r["commit"] == ok[0]["commit"], (r, ok)


def test_schedules_finishes_reschedules_at_once(slurm, dataset):
    ds = dataset
    first = submit_many(ds, 3, prefix="a")
    wait_jobs(first)
    one(dl.slurm_finish(dataset=ds, slurm_job_id=first[0], **KW),
        status="ok")
    base = head(ds.path)
    d = ds.path
    argvs = [["datalad", "-f", "json", "slurm-finish"]] * 3 + [
        ["datalad", "-f", "json", "slurm-schedule", "-o", "b%d.txt" % i,
         "sbatch", "--wrap", "echo %d > b%d.txt" % (i, i)] for i in range(3)
    ] + [["datalad", "-f", "json", "slurm-reschedule", base]]
    recs = parsed(run_parallel(argvs, d))
    new = [r["slurm_job_id"] for r in recs if r["status"] == "ok"
           and r["action"] in ("slurm-schedule", "slurm-reschedule")]
    assert len(new) == 4, recs
    wait_jobs(new)
    recs = parsed(run_parallel([["datalad", "-f", "json",
                                 "slurm-finish"]] * 3, d))
    check_one_commit_each(ds, base, first[1:] + new)


def test_two_login_nodes_one_dataset(slurm, dataset):
    """Finishes from 'login1' and 'login2' (own host names, lock file)."""
    ds = dataset
    env = {"DATALAD_HPCDATA_LOCK": "file"}
    ids = submit_many(ds, 6)
    wait_jobs(ids)
    base = head(ds.path)
    argv = ["datalad", "-f", "json", "slurm-finish"]
    ns = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"']
    outs = run_parallel([ns + ["login1"] + argv, ns + ["login2"] + argv,
                         ns + ["login1"] + argv, ns + ["login2"] + argv],
                        ds.path, env)
    assert all(rc == 0 for rc, _, _ in outs), outs
    check_one_commit_each(ds, base, ids)
    # no lock file left behind
    lockfile = DatasetHandle(ds).state_dir / "repo.lockfile"
    assert not lockfile.exists()


def hold_lock_in(ds, hostname, seconds, env):
    code = ("import sys, time\n"
            "from datalad_hpcdata.dataset.lock import repository_lock\n"
            "with repository_lock(sys.argv[1], command='holder'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(float(sys.argv[2]))\n")
    argv = [sys.executable, "-c", code,
            str(DatasetHandle(ds).git_dir), str(seconds)]
    if hostname:
        argv = ["unshare", "--uts", "sh", "-c",
                'hostname "$0" && exec "$@"', hostname] + argv
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, **env))
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.mark.parametrize("mode", ["file", "flock"])
def test_lock_timeout_names_the_holder(dataset, monkeypatch, mode):
    env = {"DATALAD_HPCDATA_LOCK": mode}
    monkeypatch.setenv("DATALAD_HPCDATA_LOCK", mode)
    p = hold_lock_in(dataset, "login9" if mode == "file" else None, 30, env)
    try:
        with pytest.raises(lockmod.LockTimeout) as exc:
            with lockmod.repository_lock(DatasetHandle(dataset).git_dir,
                                         timeout=0.5):
                pass
        msg = str(exc.value)
        assert "pid %d" % p.pid in msg and "(holder)" in msg, msg
        if mode == "file":
            assert "host login9" in msg, msg
    finally:
        p.kill()
        p.wait()


def test_stale_lock_of_dead_process_other_host(dataset, monkeypatch):
    """A holder on 'login9' killed -9: taken over once its heartbeat has
    not moved for DATALAD_HPCDATA_LOCK_STALE seconds."""
    env = {"DATALAD_HPCDATA_LOCK": "file", "DATALAD_HPCDATA_LOCK_STALE": "2"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    p = hold_lock_in(dataset, "login9", 300, env)
    p.kill()
    p.wait()
    lockfile = DatasetHandle(dataset).state_dir / "repo.lockfile"
    holder = json.loads(lockfile.read_text())
    assert holder["host"] == "login9" and holder["pid"] == p.pid
    t0 = time.monotonic()
    with lockmod.repository_lock(DatasetHandle(dataset).git_dir, timeout=60):
        waited = time.monotonic() - t0
        mine = json.loads(lockfile.read_text())
        assert mine["pid"] == os.getpid()
    assert not lockfile.exists()
    assert waited >= 2.0


def test_stale_lock_of_dead_process_same_host(dataset, monkeypatch):
    monkeypatch.setenv("DATALAD_HPCDATA_LOCK", "file")
    p = hold_lock_in(dataset, None, 300, {"DATALAD_HPCDATA_LOCK": "file"})
    p.kill()
    p.wait()
    # the holder is known dead at once: no heartbeat wait
    with lockmod.repository_lock(DatasetHandle(dataset).git_dir, timeout=5):
        pass


def test_live_holder_heartbeat_keeps_its_lock(dataset, monkeypatch):
    env = {"DATALAD_HPCDATA_LOCK": "file", "DATALAD_HPCDATA_LOCK_STALE": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    p = hold_lock_in(dataset, "login9", 6, env)
    try:
        with pytest.raises(lockmod.LockTimeout):
            with lockmod.repository_lock(DatasetHandle(dataset).git_dir,
                                         timeout=3):
                pass
    finally:
        p.kill()
        p.wait()


def test_filesystem_detection(tmp_path, monkeypatch):
    monkeypatch.delenv("DATALAD_HPCDATA_LOCK", raising=False)
    fstype = lockmod.filesystem_type(tmp_path)
    assert fstype and not lockmod.is_network_fs(fstype)
    assert lockmod.lock_mode(tmp_path) == "flock"
    for net in ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "fuse.sshfs"):
        assert lockmod.is_network_fs(net)
    monkeypatch.setenv("DATALAD_HPCDATA_LOCK", "file")
    assert lockmod.lock_mode(tmp_path) == "file"
    monkeypatch.setenv("DATALAD_HPCDATA_LOCK", "bogus")
    with pytest.raises(ValueError):
        lockmod.lock_mode(tmp_path)
    assert lockmod._unescape(r"/mnt/with\040space") == "/mnt/with space"


def test_store_has_no_wal_and_file_mode_works(slurm, dataset, monkeypatch):
    """Defect 4: the store was WAL; with lock-file locking SQLite's own
    locking is off and every access is under the repository lock."""
    monkeypatch.setenv("DATALAD_HPCDATA_LOCK", "file")
    ds = dataset
    store = DatasetHandle(ds).store
    assert store.locking == "file"
    wal = Path(str(store.path) + "-wal")
    ids = submit_many(ds, 2)
    wait_jobs(ids)
    base = head(ds.path)
    res = dl.slurm_finish(dataset=ds, **KW)
    assert sorted(r["slurm_job_id"] for r in res
                  if r["status"] == "ok") == sorted(ids)
    assert not wal.exists()
    assert store_integrity(ds.path) == "ok/delete"
    check_one_commit_each(ds, base, ids)
    # and a command-line finish from another 'host' sees the same store
    recs = records(cli(ds.path, "slurm-finish", hostname="login2",
                       env={"DATALAD_HPCDATA_LOCK": "file"}))
    assert one(recs, status="notneeded")["message"] == "no open jobs"
