"""slurm-finish --wait against the real local Slurm cluster.

The Slurm tools are put behind logging shims on PATH (``slurm_calls``), so
the tests see every call the commands make: one batched query per poll,
and never a query about a job nobody waits for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import datalad.api as dl
import pytest
from faultkit import default_sigint
from slurmtest import KW, one, text

from datalad_hpcdata.dataset.handle import DatasetHandle
from datalad_hpcdata.jobs.wait import Backoff, poll_interval, wait
from datalad_hpcdata.slurm import JobInfo
from datalad_hpcdata.slurm.states import ACTIVE

pytestmark = pytest.mark.slurm

FAST = "datalad.hpcdata.poll-interval=0.3:1"
SLEEP_SH = """#!/bin/sh
sleep "$1"
mkdir -p "$(dirname "$2")"
echo "job ${SLURM_JOB_ID:-none} slept $1" > "$2"
exit "${3:-0}"
"""


@pytest.fixture
def ds(dataset):
    Path(dataset.path, "code", "sleep.sh").write_text(SLEEP_SH)
    Path(dataset.path, "code", "sleep.sh").chmod(0o755)
    dataset.save(message="sleep.sh", result_renderer="disabled")
    return dataset


def submit(ds, seconds, out, code=0, hold=False):
    res = dl.slurm_schedule(
        "sbatch %scode/sleep.sh %s %s %s" % ("--hold " if hold else "",
                                             seconds, out, code),
        dataset=ds, outputs=[out], **KW)
    return one(res, action="slurm-schedule", status="ok")["slurm_job_id"]


def git(ds, *args):
    return subprocess.run(["git", *args], cwd=ds.path, capture_output=True,
                          text=True, check=True).stdout


def commits_of(ds, jid):
    return [s for s in git(ds, "log", "--format=%s").splitlines()
            if s.startswith("[DATALAD SLURM RUN] Slurm job %s:" % jid)]


def status_of(ds, jid):
    return DatasetHandle(ds).store.find(jid)[-1].status


def datalad_cli(ds, *args, **kw):
    return ["datalad", "-f", "json", "-c", FAST, *args, "-d", ds.path] + \
        list(kw.get("ids", []))


def records(stdout):
    """-f json output; (format, *args) messages made strings."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            if isinstance(r.get("message"), list):
                r["message"] = tuple(r["message"])
            out.append(r)
    return out


def test_poll_interval_and_backoff():
    assert poll_interval(None) == (5.0, 180.0)
    assert poll_interval("2") == (2.0, 180.0)
    assert poll_interval("300") == (300.0, 300.0)
    assert poll_interval("0.5:3") == (0.5, 3.0)
    for bad in ("x", "0", "-1", "5:2", "1:y", ":3"):
        with pytest.raises(ValueError, match="poll-interval"):
            poll_interval(bad)
    b = Backoff(1.0, 4.0)
    assert [b.after(False) for _ in range(5)] == [1.5, 2.25, 3.375, 4.0, 4.0]
    assert [b.after(True) for _ in range(4)] == [2.0, 1.0, 1.0, 1.0]


def test_wait_commits_each_and_fails_for_a_failed_job(slurm, ds,
                                                      slurm_calls):
    a, b = submit(ds, 1, "res/a"), submit(ds, 3, "res/b")
    bad = submit(ds, 2, "res/bad", code=3)
    held = submit(ds, 1, "res/held", hold=True)
    try:
        proc = subprocess.run(
            datalad_cli(ds, "slurm-finish", "--wait", "--timeout", "300",
                        ids=[a, b, bad]),
            capture_output=True, text=True, timeout=400)
    finally:
        subprocess.run(["scancel", held])
    assert proc.returncode != 0, proc.stderr
    res = records(proc.stdout)
    for jid in (a, b):
        r = one(res, slurm_job_id=jid)
        assert r["status"] == "ok" and r["state"] == "COMPLETED"
        assert len(commits_of(ds, jid)) == 1
        assert status_of(ds, jid) == "committed"
    r = one(res, slurm_job_id=bad)
    assert r["status"] == "impossible" and r["state"] == "FAILED"
    assert r["exit_code"] == "3:0"
    assert commits_of(ds, bad) == [] and status_of(ds, bad) == "open"
    summary = res[-1]
    assert summary["waited"] and summary["status"] == "impossible"
    assert summary["failed"] == {bad: "FAILED"}
    assert summary["ended"] == {"COMPLETED": 2, "FAILED": 1}
    assert summary["still_open"] == []
    # one sacct per poll, each about the jobs still waited for only
    sacct = slurm_calls("sacct")
    assert len(sacct) == summary["slurm_queries"] == summary["polls"]
    for call in sacct:
        asked = set(call[call.index("-j") + 1].split(","))
        assert asked <= {a, b, bad}
    assert len(sacct[0][sacct[0].index("-j") + 1].split(",")) == 3
    # the job nobody waited for was never asked about, and is untouched
    assert not any(held in " ".join(c) for c in slurm_calls()
                   if c[0] in ("sacct", "squeue") and "-j" in c)
    assert status_of(ds, held) == "open"
    # only the failed job's own files are left, uncommitted
    assert sorted(git(ds, "status", "--porcelain").splitlines()) == [
        "?? res/bad", "?? slurm-%s.out" % bad]


def test_wait_timeout_keeps_jobs_open(slurm, ds):
    held = submit(ds, 1, "res/held", hold=True)
    head = git(ds, "rev-parse", "HEAD")
    ds.config.set("datalad.hpcdata.poll-interval", "0.3:1", scope="local")
    try:
        res = dl.slurm_finish(dataset=ds, wait=True, timeout=1.5, **KW)
    finally:
        subprocess.run(["scancel", held])
    r = one(res, slurm_job_id=held)
    assert r["status"] == "impossible" and r["state"] == "PENDING"
    assert "after --timeout 1.5 s" in text(r)
    summary = res[-1]
    assert summary["status"] == "impossible"
    assert summary["still_open"] == [held]
    assert git(ds, "rev-parse", "HEAD") == head
    assert status_of(ds, held) == "open"


def test_backoff_with_real_jobs(slurm, ds):
    """Delays grow while nothing ends, shrink when a job ended."""
    first, second = (submit(ds, 0, "res/%s" % n, hold=True)
                     for n in ("first", "second"))
    delays = []

    def sleep(delay):
        delays.append(delay)
        if len(delays) == 5:
            subprocess.run(["scontrol", "release", first], check=True)
        if len(delays) > 5 and delays[-1] < delays[-2]:
            subprocess.run(["scontrol", "release", second], check=True)
        if len(delays) > 200:
            subprocess.run(["scancel", first, second])
        time.sleep(0.3)

    try:
        res = list(wait(DatasetHandle(ds), interval="1:4", sleep=sleep))
    finally:
        subprocess.run(["scancel", first, second])
    assert res[-1]["status"] == "ok", res
    assert delays[:5] == [1.0, 1.5, 2.25, 3.375, 4.0]
    # after the first job ended the next delay is half the last one
    shrink = [i for i in range(1, len(delays)) if delays[i] < delays[i - 1]]
    assert shrink and delays[shrink[0]] == delays[shrink[0] - 1] / 2
    assert all(delays[i] == min(4.0, delays[i - 1] * 1.5)
               for i in range(1, shrink[0]))
    assert len(commits_of(ds, first)) == len(commits_of(ds, second)) == 1


def _install_ref_hook(ds, mark):
    """git's reference-transaction hook: when the branch is about to
    move, say so (touch `mark`) and take a few seconds."""
    branch = git(ds, "symbolic-ref", "HEAD").strip()
    hook = Path(ds.path, ".git", "hooks", "reference-transaction")
    hook.write_text(
        '#!/bin/sh\n[ "$1" = prepared ] || exit 0\n'
        'if grep -q " %s$"; then touch "%s"; sleep 3; fi\nexit 0\n'
        % (branch, mark))
    hook.chmod(0o755)
    return hook


def _wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_ctrl_c_during_commit_finishes_that_commit(slurm, ds, tmp_path):
    quick = submit(ds, 0, "res/quick")
    held = submit(ds, 1, "res/held", hold=True)
    mark = tmp_path / "committing"
    hook = _install_ref_hook(ds, mark)
    proc = subprocess.Popen(datalad_cli(ds, "slurm-finish", "--wait"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)
    try:
        _wait_for(mark.exists)
        os.kill(proc.pid, signal.SIGINT)      # while HEAD is being moved
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", held])
        hook.unlink()
    assert proc.returncode not in (0, None), err
    assert "interrupted" in err.lower(), (out, err)
    # the commit in progress was completed, nothing is half-done
    assert len(commits_of(ds, quick)) == 1
    job = DatasetHandle(ds).store.find(quick)[-1]
    assert job.status == "committed" and job.pending_commit is None
    assert job.commit_sha == git(ds, "rev-parse", "HEAD").strip()
    assert one(records(out), slurm_job_id=quick)["status"] == "ok"
    # and it stopped there: the other job stays open, nothing else changed
    assert status_of(ds, held) == "open"
    assert git(ds, "status", "--porcelain") == ""


def test_ctrl_c_while_waiting_stops_at_once(slurm, ds, slurm_calls):
    held = submit(ds, 1, "res/held", hold=True)
    head = git(ds, "rev-parse", "HEAD")
    proc = subprocess.Popen(datalad_cli(ds, "slurm-finish", "--wait"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)
    try:
        _wait_for(lambda: len(slurm_calls("sacct")) >= 2)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", held])
    assert proc.returncode not in (0, None)
    assert "interrupted" in err.lower(), (out, err)
    assert git(ds, "rev-parse", "HEAD") == head
    assert status_of(ds, held) == "open"
    assert git(ds, "status", "--porcelain") == ""


def test_wait_beside_another_finish(slurm, ds):
    ids = [submit(ds, s, "res/%d" % s) for s in (1, 2, 3, 4)]
    proc = subprocess.Popen(datalad_cli(ds, "slurm-finish", "--wait"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while any(status_of(ds, j) == "open" for j in ids):
            assert time.monotonic() < deadline
            dl.slurm_finish(dataset=ds, **KW)     # the other finish
            time.sleep(0.2)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    res = records(out)
    assert res[-1]["status"] == "ok" and res[-1]["ended"] == {"COMPLETED": 4}
    for jid in ids:
        assert len(commits_of(ds, jid)) == 1
        r = one(res, slurm_job_id=jid)
        assert r["status"] == "ok" or "by another slurm-finish" in text(r)
    assert git(ds, "status", "--porcelain") == ""


@pytest.mark.parametrize("case", ["bad-interval", "timeout-alone",
                                  "with-list", "not-open"])
def test_wait_bad_input_changes_nothing(slurm, ds, case):
    head = git(ds, "rev-parse", "HEAD")
    kw = dict(wait=True)
    if case == "bad-interval":
        ds.config.set("datalad.hpcdata.poll-interval", "soon", scope="local")
    elif case == "timeout-alone":
        kw = dict(timeout=5)
    elif case == "with-list":
        kw["list_open_jobs"] = True
    else:
        kw["job_id"] = ["999999"]
    res = dl.slurm_finish(dataset=ds, **dict(KW, **kw))
    r = res[0]
    assert r["status"] == "impossible", res
    assert {"bad-interval": "poll-interval", "timeout-alone": "needs --wait",
            "with-list": "cannot be combined",
            "not-open": "not open"}[case] in text(r)
    assert git(ds, "rev-parse", "HEAD") == head


def test_consumer_is_committed_after_a_producer_slurm_reports_late(slurm,
                                                                   ds):
    """Slurm's accounting can report a producer (an array, typically) as
    active after its consumer has completed: the consumer is not given up
    as 'not committed', it is committed once the producer is."""
    a = submit(ds, 0, "res/a")
    res = dl.slurm_schedule("sbatch code/sleep.sh 0 res/b", dataset=ds,
                            inputs=["res/a"], outputs=["res/b"], **KW)
    b = one(res, action="slurm-schedule", status="ok")["slurm_job_id"]
    handle = DatasetHandle(ds)
    real = handle.backend.query
    for _ in range(300):                   # both ended in Slurm (<= 60 s)
        infos = real([a, b])
        if all(i in infos and infos[i].state_class != ACTIVE
               for i in (a, b)):
            break
        time.sleep(0.2)
    else:
        pytest.fail("jobs %s, %s did not end" % (a, b))
    calls = []

    def lagging(ids):
        calls.append(sorted(ids))
        infos = real(ids)
        if len(calls) == 1:                # the producer reported late
            infos[a] = JobInfo(a, "RUNNING", source="sacct")
        return infos

    handle.backend.query = lagging
    out = list(wait(handle, timeout=120, interval="0.1:0.5"))
    assert len(calls) >= 2
    done = [r for r in out if r.get("commit")]
    assert [r["slurm_job_id"] for r in done] == [a, b]
    summary = out[-1]
    assert summary["status"] == "ok", summary
    assert summary["ended"] == {"COMPLETED": 2} and summary["failed"] == {}
    assert status_of(ds, a) == status_of(ds, b) == "committed"
