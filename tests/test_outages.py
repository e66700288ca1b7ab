"""The Slurm side failing, on the real cluster.

Daemons are stopped and started with ``tools/slurm-cluster.sh
stop-daemon|start-daemon`` (by the PIDs the script recorded), always
brought back in ``finally`` and waited for; outages last seconds (other
tests share the cluster).  The submit limit is a real ``MaxSubmitJobs``
on a test-only account, enforced while the test runs and removed after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import datalad.api as dl
import pytest
from faultkit import (
    cluster,
    fsck_clean,
    head,
    job_commit_counts,
    status,
    store_claims,
    store_rows,
    wait_cluster,
)
from slurmtest import KW, one, text, wait_jobs

from datalad_hpcdata.dataset.handle import DatasetHandle
from datalad_hpcdata.jobs.cluster import cluster_name

pytestmark = pytest.mark.slurm

# the cluster the suite runs on (tools/test.sh exports its SLURM_CONF)
SLURM_CONF = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))


@contextmanager
def stopped(daemon):
    proc = cluster("stop-daemon", daemon)
    assert proc.returncode == 0, proc.stderr
    try:
        yield
    finally:
        proc = cluster("start-daemon", daemon)
        wait_cluster()
        assert proc.returncode == 0, proc.stderr


def annexed_output(ds):
    Path(ds.path, "p.dat").write_text("before\n")
    ds.save(message="p", result_renderer="disabled")
    return os.readlink(Path(ds.path, "p.dat"))


def schedule(ds, cmd, **kw):
    return one(dl.slurm_schedule(cmd, dataset=ds, **dict(KW, **kw)),
               action="slurm-schedule")


def finish_all(ds, ids, timeout=90.0):
    """slurm-finish until every job in `ids` is committed (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dl.slurm_finish(dataset=ds, **KW)
        rows = {j: s for _, s, j, _ in store_rows(ds.path)}
        if all(rows.get(j) == "committed" for j in ids):
            return
        time.sleep(1.0)
    raise AssertionError("not all committed: %s" % store_rows(ds.path))


def test_slurmctld_down_during_schedule(slurm, dataset):
    ds = dataset
    link = annexed_output(ds)
    before = status(ds.path)
    cmd = ["sbatch", "--wrap", "echo new > p.dat"]
    with stopped("slurmctld"):
        r = schedule(ds, cmd, outputs=["p.dat"])
        assert r["status"] == "error"
        assert "slurm controller" in r["message"].lower(), r
        # nothing lost, nothing left claimed, worktree as before
        assert os.readlink(Path(ds.path, "p.dat")) == link
        assert status(ds.path) == before
        assert store_claims(ds.path) == []
    # the next call after the restart does the work
    r = schedule(ds, cmd, outputs=["p.dat"])
    assert r["status"] == "ok", r
    base = head(ds.path)
    wait_jobs([r["slurm_job_id"]])
    finish_all(ds, [r["slurm_job_id"]])
    assert job_commit_counts(ds.path, base) == {r["slurm_job_id"]: 1}
    assert Path(ds.path, "p.dat").read_text() == "new\n"
    fsck_clean(ds.path)


def test_slurmctld_down_during_finish(slurm, dataset):
    ds = dataset
    ids = [schedule(ds, ["sbatch", "--wrap", "echo %d > f%d.txt" % (i, i)],
                    outputs=["f%d.txt" % i])["slurm_job_id"]
           for i in range(2)]
    wait_jobs(ids)
    base = head(ds.path)
    with stopped("slurmctld"):
        res = dl.slurm_finish(dataset=ds, **KW)
        # accounting still answers: finished jobs are committed from it;
        # anything else gets a clear error and stays open
        for r in res:
            if r["status"] == "error":
                assert text(r), r
        rows = {j: s for _, s, j, _ in store_rows(ds.path)}
        assert set(rows.values()) <= {"open", "committed"}
    finish_all(ds, ids)
    assert job_commit_counts(ds.path, base) == {j: 1 for j in ids}
    assert status(ds.path) == "" and store_claims(ds.path) == []
    fsck_clean(ds.path)


def old_completed_job():
    """A COMPLETED job accounting knows but the controller has purged."""
    acct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "-S", "now-7days", "-E", "now",
         "-s", "CD",
         "-o", "JobID"], capture_output=True, text=True).stdout.split()
    known = set(subprocess.run(["squeue", "-h", "-a", "-t", "all", "-o",
                                "%F"], capture_output=True,
                               text=True).stdout.split())
    for jid in reversed(acct):
        if jid.isdigit() and jid not in known:
            return jid
    return None


def wait_controller(job_ids, timeout=120.0):
    """wait_jobs without accounting: until squeue shows them ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %T"],
                             capture_output=True, text=True).stdout
        states = dict(line.split() for line in out.splitlines() if line)
        if all(states.get(j) in ("COMPLETED", "FAILED") for j in job_ids):
            return
        time.sleep(0.5)
    raise TimeoutError("jobs %s not ended" % job_ids)


def test_slurmdbd_down_for_a_whole_run(slurm, dataset):
    """Finish works from slurmctld for the jobs it knows; a job only
    accounting knows is kept open with 'state not known yet' (never
    closed as unknown) and committed once accounting is back."""
    ds = dataset
    old = old_completed_job() or "99999990"
    Path(ds.path, "old.txt").write_text("output of an old job\n")
    store = DatasetHandle(ds).store
    row = store.claim(["old.txt"], {"cmd": "sbatch old", "outputs":
                                    ["old.txt"], "output_specs": ["old.txt"],
                                    "pwd": "."}, None)
    # the cluster the suite runs on (jobs of others are not asked about)
    store.set_submitted(row, cluster_name(DatasetHandle(ds)), old)
    store.con.execute("UPDATE jobs SET submit_time = 1 WHERE row = ?",
                      (row,))
    base = head(ds.path)
    with stopped("slurmdbd"):
        r = schedule(ds, ["sbatch", "--wrap", "echo x > new.txt"],
                     outputs=["new.txt"])
        assert r["status"] == "ok", r
        new = r["slurm_job_id"]
        wait_controller([new])
        seen = []
        for close in (False, True):
            res = dl.slurm_finish(dataset=ds, close_failed_jobs=close, **KW)
            seen += res
            kept = one(res, slurm_job_id=old)
            assert kept["status"] == "notneeded", kept
            assert "state not known yet" in text(kept)
        assert one(seen, slurm_job_id=new, status="ok")
    rows = {j: s for _, s, j, _ in store_rows(ds.path)}
    assert rows == {old: "open", new: "committed"}
    res = dl.slurm_finish(dataset=ds, **KW)
    if old != "99999990":
        assert one(res, slurm_job_id=old)["status"] == "ok"
        assert job_commit_counts(ds.path, base) == {old: 1, new: 1}
    else:   # no purged job in accounting on this machine: truly unknown
        assert one(res, slurm_job_id=old)["status"] == "impossible"
    fsck_clean(ds.path)


@contextmanager
def submit_limit(account):
    """A real MaxSubmitJobs=0 on a test-only account, enforced (slurm.conf
    AccountingStorageEnforce=limits, slurmctld restarted), all undone."""
    saved = SLURM_CONF.read_bytes()
    mgr = ["sacctmgr", "-i"]
    try:
        for args in (["add", "account", account],
                     ["add", "user", "root", "account=%s" % account],
                     ["modify", "user", "where", "name=root",
                      "account=%s" % account, "set", "MaxSubmitJobs=0"]):
            subprocess.run(mgr + args, check=True, capture_output=True)
        SLURM_CONF.write_bytes(saved.replace(
            b"\nAccountingStorageType=", b"\nAccountingStorageEnforce="
            b"limits\nAccountingStorageType=", 1))
        with stopped("slurmctld"):
            pass
        yield
    finally:
        SLURM_CONF.write_bytes(saved)
        with stopped("slurmctld"):
            pass
        subprocess.run(mgr + ["delete", "user", "where", "name=root",
                              "account=%s" % account], capture_output=True)
        subprocess.run(mgr + ["delete", "account", account],
                       capture_output=True)


def test_sbatch_rejected_by_max_submit_jobs(slurm, dataset):
    if not shutil.which("sacctmgr"):
        pytest.fail("sacctmgr missing")
    ds = dataset
    link = annexed_output(ds)
    before = status(ds.path)
    with submit_limit("hpcfault"):
        r = schedule(ds, ["sbatch", "--account=hpcfault", "--wrap",
                          "echo x > p.dat"], outputs=["p.dat"])
        assert r["status"] == "error", r
        # the clear error of sbatch itself (the limit's name may come too)
        assert "policy" in r["message"] or "limit" in r["message"], r
        assert os.readlink(Path(ds.path, "p.dat")) == link
        assert status(ds.path) == before
        assert store_claims(ds.path) == []
        assert [x[1] for x in store_rows(ds.path)] == ["rejected"]
    # the limit is gone again: the same output can be scheduled
    r = schedule(ds, ["sbatch", "--wrap", "echo y > p.dat"],
                 outputs=["p.dat"])
    assert r["status"] == "ok", r
    wait_jobs([r["slurm_job_id"]])
    finish_all(ds, [r["slurm_job_id"]])
    assert "AccountingStorageEnforce" not in SLURM_CONF.read_text()
