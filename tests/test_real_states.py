"""Failure states produced for real on the multi-node test cluster.

Needs ``tools/slurm-cluster.sh --instance NAME up --nodes 3`` and
``SLURM_CONF`` pointing at it (``tools/test.sh`` does both): three nodes in
their own network and UTS namespaces, partitions ``low`` (preempted by
requeue), ``lowcancel`` (preempted by cancel), ``high`` (preempts them) and
``short`` (MaxTime 1 minute), SlurmdTimeout 10 s.  Node roles keep the
tests apart: node1 runs the background TIMEOUT job, node2 the preemption
tests, node3 the node failure.

What stays faked (tests/test_fake_slurm_states.py), because this cluster
cannot produce it on demand: OUT_OF_MEMORY (set only from a cgroup OOM
event; without cgroups jobacct_gather's OverMemoryKill ends the job
FAILED 0:9 - tried), COMPLETING held for a chosen time, a job purged from
accounting, and a submission command that starts two jobs.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import datalad.api as dl
import pytest
from slurmtest import (
    KW,
    cluster_sh,
    controller_job,
    expand_nodes,
    one,
    sacct_state,
    sh,
    text,
    wait_jobs,
    wait_until,
)

from datalad_hpcdata.dataset.handle import DatasetHandle
from datalad_hpcdata.jobs.record import parse_message

pytestmark = pytest.mark.slurm


def schedule(ds, cmd, out):
    res = dl.slurm_schedule(cmd, dataset=ds, outputs=[out], **KW)
    return one(res, action="slurm-schedule", status="ok")["slurm_job_id"]


def finish(ds, **kw):
    return dl.slurm_finish(dataset=ds, **dict(KW, **kw))


def git(ds, *args):
    return subprocess.run(["git", *args], cwd=ds.path, capture_output=True,
                          text=True, check=True).stdout.strip()


def record(ds, rev="HEAD"):
    parsed = parse_message(git(ds, "log", "-1", "--format=%B", rev))
    assert parsed, git(ds, "log", "-1", "--format=%B", rev)
    return parsed[1]


def status_of(ds, jid):
    hist = DatasetHandle(ds).store.find(str(jid))
    return hist[-1].status if hist else None


def running(jid, timeout=120.0):
    wait_until(lambda: controller_job(jid).get("JobState") == "RUNNING",
               timeout, "job %s running" % jid)


def start_now(jid):
    """Make a requeued job eligible now (Slurm delays it by 120 s)."""
    sh("scontrol", "update", "JobId=%s" % jid, "StartTime=now")


def test_job_runs_on_a_compute_node(multinode, dataset):
    """slurm-finish runs on the login node; the job ran elsewhere."""
    ds = dataset
    jid = schedule(ds, "sbatch code/state.sh out/where.txt", "out/where.txt")
    wait_jobs([jid])
    assert one(finish(ds), slurm_job_id=jid)["status"] == "ok"
    ran_on = Path(ds.path, "out", "where.txt").read_text().split()[-1]
    assert ran_on in multinode["nodes"]
    assert ran_on != socket.gethostname()
    rec = record(ds)
    assert rec["nodes"] == ran_on and rec["slurm_state"] == "COMPLETED"
    assert rec["cluster"] == multinode["cluster"]


def test_two_node_job_records_both_nodes(multinode, dataset):
    ds = dataset
    jid = schedule(ds, "sbatch -N 2 --ntasks-per-node=1 code/state.sh "
                   "out/hosts.txt", "out/hosts.txt")
    wait_jobs([jid])
    assert one(finish(ds), slurm_job_id=jid)["status"] == "ok"
    ran_on = Path(ds.path, "out", "hosts.txt").read_text().split()
    assert len(set(ran_on)) == 2
    assert sorted(expand_nodes(record(ds)["nodes"])) == sorted(ran_on)


def test_node_failure(multinode, dataset):
    """Kill one node's slurmd while its jobs run: the job that may not be
    requeued ends NODE_FAIL (named with its node, kept open until closed);
    the requeueable one is never closed as failed, runs again on another
    node and is committed once."""
    ds = dataset
    node = multinode["nodes"][2]
    gone = schedule(ds, "sbatch -w %s --no-requeue code/state.sh out/nf.txt "
                    "300" % node, "out/nf.txt")
    back = schedule(ds, "sbatch -w %s --requeue code/state.sh out/rq.txt 300"
                    % node, "out/rq.txt")
    running(gone)
    running(back)
    head0 = git(ds, "rev-parse", "HEAD")
    cluster_sh("kill-slurmd", node)
    try:
        wait_until(lambda: sacct_state(gone) == "NODE_FAIL", 180,
                   "job %s NODE_FAIL after slurmd on %s was killed"
                   % (gone, node))
        res = finish(ds, close_failed_jobs=True)
        r = one(res, slurm_job_id=gone)
        assert r["status"] == "ok" and r["state"] == "NODE_FAIL", r
        assert node in text(r)
        r = one(res, slurm_job_id=back)
        assert r["status"] == "notneeded", r
        assert status_of(ds, gone) == "abandoned"
        assert status_of(ds, back) == "open"
        assert git(ds, "rev-parse", "HEAD") == head0
        wait_until(lambda: controller_job(back).get("JobState") == "PENDING",
                   60, "job %s requeued" % back)
        # as an admin would: let it run elsewhere now (Slurm would wait for
        # the node and delay a requeued job by 120 s)
        sh("scontrol", "update", "JobId=%s" % back, "ReqNodeList=",
           "ExcNodeList=%s" % node, "StartTime=now")
        wait_jobs([back], timeout=180)
    finally:
        cluster_sh("start-slurmd", node)
    r = one(finish(ds), slurm_job_id=back)
    assert r["status"] == "ok" and r["state"] == "COMPLETED", r
    assert git(ds, "rev-list", "--count", "%s..HEAD" % head0) == "1"
    rerun = Path(ds.path, "out", "rq.txt").read_text().split()
    assert rerun[3] == "1" and rerun[-1] != node
    assert record(ds)["nodes"] == rerun[-1]
    assert not Path(ds.path, "out", "nf.txt").exists()


def _preempt(node):
    """A high-priority job on `node` (another user's work, not ours)."""
    jid = sh("sbatch", "--parsable", "-p", "high", "-w", node, "-o",
             "/dev/null", "--wrap", "sleep 1").strip()
    return jid


def test_preempted_and_requeued(multinode, dataset):
    """PreemptMode=REQUEUE: right after preemption accounting still says
    PREEMPTED while the controller has the job pending again; finish must
    leave it alone (even with --close-failed-jobs) and commit it once after
    it ran again."""
    ds = dataset
    node = multinode["nodes"][1]
    low = schedule(ds, "sbatch -p low -w %s --exclusive --requeue "
                   "code/state.sh out/low.txt 300" % node, "out/low.txt")
    running(low)
    head0 = git(ds, "rev-parse", "HEAD")
    high = _preempt(node)
    try:
        wait_until(lambda: controller_job(low).get("Restarts", "0") != "0",
                   120, "job %s preempted by %s" % (low, high))
        res = finish(ds, close_failed_jobs=True)
        r = one(res, slurm_job_id=low)
        assert r["status"] == "notneeded", r
        assert status_of(ds, low) == "open"
        start_now(low)
        wait_jobs([low, high], timeout=180)
    finally:
        sh("scancel", high, check=False)
    r = one(finish(ds), slurm_job_id=low)
    assert r["status"] == "ok" and r["state"] == "COMPLETED"
    assert git(ds, "rev-list", "--count", "%s..HEAD" % head0) == "1"
    assert record(ds)["slurm_state"] == "COMPLETED"
    assert "restart 1" in Path(ds.path, "out", "low.txt").read_text()


def test_preempted_and_cancelled(multinode, dataset):
    """PreemptMode=CANCEL: PREEMPTED is final; kept open until closed."""
    ds = dataset
    node = multinode["nodes"][1]
    jid = schedule(ds, "sbatch -p lowcancel -w %s --exclusive code/state.sh "
                   "out/lc.txt 300" % node, "out/lc.txt")
    running(jid)
    high = _preempt(node)
    try:
        wait_until(lambda: sacct_state(jid) == "PREEMPTED", 120,
                   "job %s preempted" % jid)
        r = one(finish(ds), slurm_job_id=jid)
        assert r["status"] == "impossible" and r["state"] == "PREEMPTED"
        assert status_of(ds, jid) == "open"
        r = one(finish(ds, close_failed_jobs=True), slurm_job_id=jid)
        assert r["status"] == "ok" and r["state"] == "PREEMPTED"
        assert status_of(ds, jid) == "abandoned"
    finally:
        sh("scancel", high, check=False)


def test_requeue_hold_suspend_deadline(multinode, dataset):
    """scontrol requeuehold/release and suspend/resume: active states that
    are never closed; a job that cannot finish before its deadline ends
    DEADLINE at once."""
    ds = dataset
    w = "-w %s" % multinode["nodes"][0]
    rq = schedule(ds, "sbatch %s code/state.sh out/rq.txt 300" % w,
                  "out/rq.txt")
    sus = schedule(ds, "sbatch %s code/state.sh out/s.txt 3" % w, "out/s.txt")
    dead = schedule(ds, "sbatch %s --time=10 --deadline=now+60 code/state.sh "
                    "out/d.txt" % w, "out/d.txt")
    try:
        running(rq)
        running(sus)
        sh("scontrol", "requeuehold", rq)
        sh("scontrol", "suspend", sus)
        wait_until(lambda: sacct_state(dead) == "DEADLINE", 60,
                   "job %s DEADLINE" % dead)
        wait_until(lambda: controller_job(rq).get("JobState") == "PENDING", 60,
                   "job %s requeued and held" % rq)
        # finish reads accounting, which learns of the start and the
        # suspension through slurmctld's queue to slurmdbd: under load it
        # said PENDING for a job the controller had already suspended
        wait_until(lambda: sacct_state(sus) == "SUSPENDED", 60,
                   "accounting shows job %s SUSPENDED" % sus)
        res = finish(ds, close_failed_jobs=True)
        r = one(res, slurm_job_id=rq)
        assert r["status"] == "notneeded", r
        r = one(res, slurm_job_id=sus)
        assert r["status"] == "notneeded" and r["state"] == "SUSPENDED", r
        r = one(res, slurm_job_id=dead)
        assert r["status"] == "ok" and r["state"] == "DEADLINE", r
        assert [status_of(ds, j) for j in (rq, sus, dead)] == [
            "open", "open", "abandoned"]
        sh("scontrol", "resume", sus)
        sh("scontrol", "release", rq)
        start_now(rq)
        wait_jobs([rq, sus], timeout=180)
        # accounting may still show the requeued job's first run
        # (REQUEUED) after the controller has seen the second end
        wait_until(lambda: not {sacct_state(j) for j in (rq, sus)} & {
            "PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "COMPLETING"}, 60,
            "accounting shows jobs %s and %s ended" % (rq, sus))
        res = finish(ds)
        for jid in (rq, sus):
            r = one(res, slurm_job_id=jid)
            assert r["status"] == "ok", (jid, r.get("state"), r["message"])
    finally:
        # a held or suspended job would keep its slot on the node
        sh("scancel", rq, sus, dead, check=False)
    assert "restart 1" in Path(ds.path, "out", "rq.txt").read_text()


@pytest.mark.background
def test_timeout(multinode, timeout_job):
    """A job over the partition's 1-minute MaxTime ends TIMEOUT (it was
    submitted when the session started and ran meanwhile)."""
    assert timeout_job is not None
    ds, jid, node = timeout_job
    wait_until(lambda: sacct_state(jid) == "TIMEOUT", 300,
               "job %s TIMEOUT" % jid, interval=2)
    head0 = git(ds, "rev-parse", "HEAD")
    r = one(finish(ds), slurm_job_id=jid)
    assert r["status"] == "impossible" and r["state"] == "TIMEOUT"
    assert git(ds, "rev-parse", "HEAD") == head0
    res = finish(ds, commit_failed_jobs=True)
    r = one(res, slurm_job_id=jid)
    assert r["status"] == "ok", res
    rec = record(ds)
    assert rec["slurm_state"] == "TIMEOUT" and rec["nodes"] == node
    assert "Timeout" in git(ds, "log", "-1", "--format=%s")


@pytest.mark.parametrize("nodelist,n", [
    ("node1", 1), ("node[1-2]", 2), ("n[1-3,7],m2", 5), ("", 0), (None, 0),
    ("gpu[01-10],cpu5", 11), ("a[1-2]b[3-4]", 4)])
def test_count_hosts(nodelist, n):
    from datalad_hpcdata.slurm.parse import count_hosts
    assert count_hosts(nodelist) == n


def test_stale_allocation_nodelist_uses_steps():
    """Seen on this cluster: for ~3 s after a 2-node job ended, sacct lists
    only the batch host for the allocation; its srun step has both."""
    from datalad_hpcdata.slurm.parse import parse_sacct
    out = "\n".join([
        "197|197|COMPLETED|0:0|t|t|t|00:00:00|node1|",
        "197.batch|197.batch|COMPLETED|0:0|t|t|t|00:00:00|node1|",
        "197.0|197.0|COMPLETED|0:0|t|t|t|00:00:00|node[1-2]|"])
    assert parse_sacct(out, ["197"])["197"].nodes == "node[1-2]"
    settled = out.replace("|node1|\n197.batch", "|node[1-2]|\n197.batch")
    assert parse_sacct(settled, ["197"])["197"].nodes == "node[1-2]"


def test_jobs_of_another_cluster_are_not_asked_about(slurm, dataset):
    """A job submitted to cluster A is never looked up on cluster B (the
    same id there is another job): finish leaves it open and says so."""
    ds = dataset
    jid = schedule(ds, "sbatch code/job.sh a.txt", "a.txt")
    wait_jobs([jid])
    store = DatasetHandle(ds).store
    row = store.find(jid)[-1]
    store.con.execute("UPDATE jobs SET cluster = 'elsewhere' WHERE row = ?",
                      (row.row,))
    store.con.commit()
    head0 = git(ds, "rev-parse", "HEAD")
    for kw in ({}, {"list_open_jobs": True}, {"commit_failed_jobs": True}):
        r = one(finish(ds, **kw), slurm_job_id=jid)
        assert r["status"] == "notneeded" and r["state"] == "OTHER_CLUSTER"
        assert "elsewhere" in text(r)
    assert git(ds, "rev-parse", "HEAD") == head0
    assert status_of(ds, jid) == "open"
    store.con.execute("UPDATE jobs SET cluster = ? WHERE row = ?",
                      (row.cluster, row.row))
    store.con.commit()
    assert one(finish(ds), slurm_job_id=jid)["status"] == "ok"
