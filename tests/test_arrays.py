"""Array jobs with per-task outputs, on the real cluster.

``-o 'res/sim-%a'`` claims one path per task of the array; finishing an
array commits the COMPLETED tasks and reports the others;
``slurm-reschedule --failed-tasks`` re-runs just those.  The task that
runs into its time limit is submitted when this module starts (a
module-scoped fixture) and collected by the module's last test.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import datalad.api as dl
import pytest
from slurmtest import KW, one, text, wait_jobs

from datalad_hpcdata.dataset.handle import DatasetHandle
from datalad_hpcdata.jobs.record import parse_message

pytestmark = pytest.mark.slurm

# writes "task N" to its pattern ($1, %a/%A expanded), sleeps $2 s in task
# $3, fails for the tasks in $FAIL_TASKS (comma list)
TASK_SH = """#!/bin/sh
out=$(printf '%s' "$1" | sed "s/%a/$SLURM_ARRAY_TASK_ID/g; \
s/%A/$SLURM_ARRAY_JOB_ID/g")
mkdir -p "$(dirname "$out")"
echo "task $SLURM_ARRAY_TASK_ID" > "$out"
[ "$SLURM_ARRAY_TASK_ID" = "${3:-x}" ] && sleep "$2"
case ",$FAIL_TASKS," in *",$SLURM_ARRAY_TASK_ID,"*) exit 3;; esac
exit 0
"""


def make(path: Path):
    ds = dl.create(str(path), result_renderer="disabled")
    (path / "code").mkdir()
    (path / "code" / "task.sh").write_text(TASK_SH)
    (path / "code" / "task.sh").chmod(0o755)
    ds.save(message="task.sh", result_renderer="disabled")
    return ds


def git(ds, *args) -> str:
    return subprocess.run(["git", *args], cwd=ds.path, capture_output=True,
                          text=True, check=True).stdout


def schedule(ds, cmd, outputs, monkeypatch=None, fail="", **kw):
    if monkeypatch is not None:
        monkeypatch.setenv("FAIL_TASKS", fail)
    res = dl.slurm_schedule(cmd, dataset=ds, outputs=outputs, **kw, **KW)
    return one(res, action="slurm-schedule", status="ok")["slurm_job_id"]


def finish(ds, *ids, **kw):
    """slurm-finish once the jobs ended and accounting knows their tasks
    (bounded)."""
    wait_jobs(ids, timeout=240)
    deadline = time.monotonic() + 60
    while True:
        res = dl.slurm_finish(dataset=ds, **kw, **KW)
        lag = [r for r in res if "known to Slurm yet" in text(r)
               or "not yet visible" in text(r)]
        if not lag or time.monotonic() > deadline:
            return res
        time.sleep(1)


def head_record(ds, rev="HEAD"):
    return parse_message(git(ds, "log", "-1", "--format=%B", rev))[1]


def tracked(ds, *paths) -> list[str]:
    return git(ds, "ls-files", "--", *paths).split()


@pytest.fixture(scope="module")
def timeout_array(tmp_path_factory, slurm):
    """An array whose task 1 runs into its 1-minute limit, submitted when
    the module starts; the module's last test collects it."""
    ds = make(tmp_path_factory.mktemp("timeout") / "ds")
    jid = schedule(ds, "sbatch --time=1 --array=0-2 code/task.sh {outputs} "
                   "600 1", ["out/t-%a"])
    return ds, jid


@pytest.fixture(autouse=True)
def _start_timeout_array(timeout_array):
    return timeout_array


# ------------------------------------------------------------------ refused
def test_pattern_without_array_is_refused(tmp_path, slurm):
    ds = make(tmp_path / "ds")
    before = git(ds, "rev-parse", "HEAD")
    res = dl.slurm_schedule("sbatch code/task.sh {outputs}", dataset=ds,
                            outputs=["res/sim-%a"], **KW)
    r = one(res, action="slurm-schedule")
    assert r["status"] == "impossible"
    assert "not an array job" in text(r) and "--array" in text(r)
    handle = DatasetHandle(ds)
    assert handle.store.jobs(("submitting", "open", "rejected")) == []
    assert handle.store.all_claims() == []
    assert git(ds, "rev-parse", "HEAD") == before
    assert git(ds, "status", "--porcelain") == ""
    assert not (Path(ds.path) / "res").exists()


# --------------------------------------- steps, failed task, reschedule it
def test_steps_failed_task_and_reschedule(tmp_path, slurm, monkeypatch):
    ds = make(tmp_path / "ds")
    root = Path(ds.path)
    jid = schedule(ds, "sbatch --array=1-9:2 code/task.sh {outputs}",
                   ["res/sim-%a"], monkeypatch, fail="3")
    handle = DatasetHandle(ds)
    job = handle.store.find(jid)[-1]
    # the claim covers exactly the task ids; {outputs} keeps the pattern
    assert handle.store.claims_of(job.row) == [
        "res/sim-%d" % t for t in (1, 3, 5, 7, 9)]
    assert job.spec["tasks"] == [1, 3, 5, 7, 9]
    assert job.spec["cmd_expanded"].endswith("code/task.sh res/sim-%a")

    res = finish(ds, jid)
    r = one(res, action="slurm-finish", slurm_job_id=jid)
    assert r["status"] == "ok", text(r)
    assert r["failed_tasks"] == [3]
    assert "res/sim-3" in r["left_on_disk"]
    assert "slurm-%s_3.out" % jid in r["left_on_disk"]
    # one commit: the completed tasks' outputs and logs
    assert sorted(tracked(ds, "res")) == [
        "res/sim-%d" % t for t in (1, 5, 7, 9)]
    logs = tracked(ds, "slurm-*")
    assert sorted(logs) == sorted("slurm-%s_%d.out" % (jid, t)
                                  for t in (1, 5, 7, 9))
    rec = head_record(ds)
    assert rec["outputs"] == ["res/sim-%a"]
    assert rec["failed_tasks"] == [3]
    assert rec["failed_tasks_committed"] is False
    assert rec["array_spec"] == "1-9:2"
    assert {t: v["state"] for t, v in rec["array_tasks"].items()} == {
        "1": "COMPLETED", "3": "FAILED", "5": "COMPLETED",
        "7": "COMPLETED", "9": "COMPLETED"}
    assert rec["array_tasks"]["3"]["exit_code"] == "3:0"
    assert not rec["array_tasks"]["3"]["committed"]
    assert "4 of 5 tasks completed" in git(ds, "log", "-1", "--format=%s")
    # the failed task's output is on disk, untracked; every claim released
    assert (root / "res" / "sim-3").read_text() == "task 3\n"
    assert handle.store.all_claims() == []
    partial = git(ds, "rev-parse", "HEAD").strip()

    # re-run just the failed task (it succeeds now)
    monkeypatch.setenv("FAIL_TASKS", "")
    res = dl.slurm_reschedule(dataset=ds, failed_tasks="HEAD", **KW)
    r = one(res, action="slurm-reschedule", status="ok")
    again = r["slurm_job_id"]
    spec = handle.store.find(again)[-1].spec
    assert spec["array_override"] == "3"
    assert spec["tasks"] == [3]
    assert handle.store.claims_of(handle.store.find(again)[-1].row) == [
        "res/sim-3"]
    res = finish(ds, again)
    assert one(res, action="slurm-finish", slurm_job_id=again)["status"] \
        == "ok", res
    rec = head_record(ds)
    assert rec["chain"] == [partial]
    assert list(rec["array_tasks"]) == ["3"]
    assert rec["failed_tasks"] == []
    assert "tasks 3 of job %s" % jid in git(ds, "log", "-1", "--format=%B")
    assert sorted(tracked(ds, "res")) == [
        "res/sim-%d" % t for t in (1, 3, 5, 7, 9)]
    assert git(ds, "status", "--porcelain", "res") == ""

    # --script: the re-run's sbatch line carries the tasks
    script = tmp_path / "rerun.sh"
    res = dl.slurm_reschedule(partial, dataset=ds, failed_tasks=partial,
                              script=str(script), **KW)
    assert "--array=3 code/task.sh" in script.read_text()
    # --tasks: only tasks of the recorded array
    res = dl.slurm_reschedule(partial, dataset=ds, tasks="2,3", **KW)
    r = one(res, action="slurm-reschedule")
    assert r["status"] == "impossible" and "task 2 not in" in text(r)


# ------------------------- commit-failed: marked; the throttle is kept
def test_commit_failed_marked_and_throttle_kept(tmp_path, slurm,
                                                 monkeypatch):
    ds = make(tmp_path / "ds")
    jid = schedule(ds, "sbatch --array=0-5%2 code/task.sh {outputs}",
                   ["res/%A/sim-%a.txt"], monkeypatch, fail="1,4")
    handle = DatasetHandle(ds)
    # %A is not known before submission: it claims like a glob
    assert handle.store.claims_of(handle.store.find(jid)[-1].row) == ["res"]
    res = finish(ds, jid, commit_failed_jobs=True)
    r = one(res, action="slurm-finish", slurm_job_id=jid)
    assert r["status"] == "ok" and r["failed_tasks"] == [1, 4], res
    assert r["failed_tasks_committed"] is True
    assert sorted(tracked(ds, "res")) == [
        "res/%s/sim-%d.txt" % (jid, t) for t in range(6)]
    rec = head_record(ds)
    assert rec["failed_tasks_committed"] is True
    assert rec["array_tasks"]["1"]["committed"] is True
    assert rec["array_tasks"]["1"]["state"] == "FAILED"
    assert "2 failed tasks committed" in git(ds, "log", "-1", "--format=%s")
    # the failed tasks again, as an array of just them, same throttle
    monkeypatch.setenv("FAIL_TASKS", "")
    res = dl.slurm_reschedule(dataset=ds, failed_tasks="HEAD", **KW)
    again = one(res, action="slurm-reschedule", status="ok")["slurm_job_id"]
    assert handle.store.find(again)[-1].spec["array_override"] == "1,4%2"
    sub = subprocess.run(["scontrol", "show", "job", "-o", again],
                         capture_output=True, text=True).stdout
    assert "ArrayTaskThrottle=2" in sub
    res = finish(ds, again)
    assert one(res, action="slurm-finish", slurm_job_id=again)["status"] \
        == "ok", res
    assert sorted(tracked(ds, "res/%s" % again)) == [
        "res/%s/sim-%d.txt" % (again, t) for t in (1, 4)]


# ---------------------------------------- an array producer, a consumer
def test_array_producer_feeds_consumer(tmp_path, slurm):
    ds = make(tmp_path / "ds")
    root = Path(ds.path)
    (root / "code" / "sum.sh").write_text(
        "#!/bin/sh\ncat res/p-0 res/p-1 res/p-2 > sum.txt\n")
    (root / "code" / "sum.sh").chmod(0o755)
    ds.save(message="sum.sh", result_renderer="disabled")
    prod = schedule(ds, "sbatch --array=0-2 code/task.sh {outputs}",
                    ["res/p-%a"])
    res = dl.slurm_schedule("sbatch code/sum.sh", dataset=ds,
                            inputs=["res/p-0", "res/p-1", "res/p-2"],
                            outputs=["sum.txt"], **KW)
    r = one(res, action="slurm-schedule", status="ok")
    cons = r["slurm_job_id"]
    spec = DatasetHandle(ds).store.find(cons)[-1].spec
    assert [d["slurm_job_id"] for d in spec["depends_on"]] == [prod]
    assert spec["dependency"] == "afterok:%s" % prod
    res = finish(ds, prod, cons)
    done = [r for r in res if r.get("action") == "slurm-finish"
            and r.get("commit")]
    assert [r["slurm_job_id"] for r in done] == [prod, cons], res
    rec = head_record(ds)
    assert rec["depends_on"][0]["commit"] == done[0]["commit"]
    assert (root / "sum.txt").read_text() == "task 0\ntask 1\ntask 2\n"
    # a fix of the array's script re-runs the array, then the consumer of
    # its tasks' outputs (matched per task, not by the pattern's text)
    res = dl.slurm_reschedule(dataset=ds, report=True,
                              affected_by=["code/task.sh"], **KW)
    assert [r["commit"] for r in res] == [d["commit"] for d in done], res
    assert res[1]["depends_on"][0]["planned"] == done[0]["commit"]
    res = dl.slurm_reschedule(dataset=ds, report=True,
                              affected_by=["res/p-1"], **KW)
    assert [r["commit"] for r in res] == [done[1]["commit"]], res


# ------------------- per-task inputs: a fix re-runs only the tasks it hits
def test_fix_of_one_tasks_input_reruns_that_task(tmp_path, slurm):
    ds = make(tmp_path / "ds")
    root = Path(ds.path)
    (root / "params").mkdir()
    for t in (0, 1, 2):
        (root / "params" / ("p-%d" % t)).write_text("param %d\n" % t)
    (root / "code" / "sim.sh").write_text(
        "#!/bin/sh\nt=$SLURM_ARRAY_TASK_ID\nmkdir -p res\n"
        "sed 's/^/sim of /' params/p-$t > res/r-$t\n")
    (root / "code" / "sum.sh").write_text(
        "#!/bin/sh\ncat res/r-0 res/r-1 res/r-2 > sum.txt\n")
    for n in ("sim.sh", "sum.sh"):
        (root / "code" / n).chmod(0o755)
    ds.save(message="params and scripts", result_renderer="disabled")
    sims = schedule(ds, "sbatch --array=0-2%2 code/sim.sh {inputs}",
                    ["res/r-%a"], inputs=["params/p-%a"])
    spec = DatasetHandle(ds).store.find(sims)[-1].spec
    # the job reads every task's input; {inputs} keeps the pattern
    assert spec["input_specs"] == ["params/p-0", "params/p-1", "params/p-2"]
    assert spec["cmd_expanded"].endswith("code/sim.sh params/p-%a")
    total = schedule(ds, "sbatch code/sum.sh", ["sum.txt"],
                     inputs=["res/r-0", "res/r-1", "res/r-2"])
    res = finish(ds, sims, total)
    assert len([r for r in res if r.get("commit")]) == 2, res
    assert head_record(ds)["depends_on"]

    (root / "params" / "p-1").unlink()      # annexed: a symlink
    (root / "params" / "p-1").write_text("param 1 fixed\n")
    ds.save(message="fix task 1's parameter", result_renderer="disabled")
    res = dl.slurm_reschedule(dataset=ds, affected_by_commit="HEAD", **KW)
    ok = [r for r in res if r["status"] == "ok"]
    assert len(ok) == 2, res
    again, total2 = (r["slurm_job_id"] for r in ok)
    spec = DatasetHandle(ds).store.find(again)[-1].spec
    assert spec["array_override"] == "1%2"      # task 1, throttle kept
    assert spec["input_specs"] == ["params/p-1"]
    assert DatasetHandle(ds).store.find(total2)[-1].spec[
        "dependency"] == "afterok:%s" % again
    res = finish(ds, again, total2)
    assert len([r for r in res if r.get("commit")]) == 2, res
    assert (root / "sum.txt").read_text() == (
        "sim of param 0\nsim of param 1 fixed\nsim of param 2\n")
    rec = head_record(ds, "HEAD~1")
    assert list(rec["array_tasks"]) == ["1"]
    assert "tasks 1%%2 of job %s" % sims in git(ds, "log", "-1", "--format=%B",
                                               "HEAD~1")


def test_per_task_inputs_staged_to_the_alt_dir(tmp_path, slurm):
    """With --alt-dir every task's own input is staged and each task
    reads its own file there."""
    ds = make(tmp_path / "ds")
    root = Path(ds.path)
    (root / "params").mkdir()
    for t in (1, 2):
        (root / "params" / ("p-%d" % t)).write_text("param %d\n" % t)
    (root / "code" / "sim.sh").write_text(
        "#!/bin/sh\nt=$SLURM_ARRAY_TASK_ID\nin=$(echo \"$1\" | sed s/%a/$t/)"
        "\nmkdir -p res\nsed 's/^/staged /' \"$in\" > res/r-$t\n")
    (root / "code" / "sim.sh").chmod(0o755)
    ds.save(message="params", result_renderer="disabled")
    alt = tmp_path / "alt"
    jid = schedule(ds, "sbatch --array=1-2 code/sim.sh {inputs}",
                   ["res/r-%a"], inputs=["params/p-%a"], alt_dir=str(alt))
    wait_jobs([jid])
    res = finish(ds, jid)
    assert one(res, action="slurm-finish", slurm_job_id=jid)[
        "status"] == "ok", res
    for t in (1, 2):
        assert (root / "res" / ("r-%d" % t)).read_text() == \
            "staged param %d\n" % t
    assert not list(alt.rglob("p-*"))       # staged inputs cleaned up


# ------------------------------- alt-dir: a large output hashed once
def test_alt_dir_output_annexed_by_known_key(tmp_path, slurm, monkeypatch):
    from datalad_hpcdata.dataset import annexkeys
    ds = make(tmp_path / "ds")
    root = Path(ds.path)
    (root / "code" / "two.sh").write_text(
        "#!/bin/sh\nmkdir -p out\n"
        "head -c 3000000 /dev/urandom > out/big.tar.gz\n"
        "echo small > out/small.txt\n")
    (root / "code" / "two.sh").chmod(0o755)
    ds.save(message="two.sh", result_renderer="disabled")
    registered = {}
    real = annexkeys.register

    def spy(root_, keys, index):
        registered.update(keys)
        return real(root_, keys, index)

    monkeypatch.setattr(annexkeys, "register", spy)
    monkeypatch.setattr("datalad_hpcdata.jobs.commit.register_keys", spy)
    res = dl.slurm_schedule("sbatch code/two.sh", dataset=ds,
                            outputs=["out"], alt_dir=str(tmp_path / "alt"),
                            **KW)
    jid = one(res, action="slurm-schedule", status="ok")["slurm_job_id"]
    res = finish(ds, jid)
    assert one(res, action="slurm-finish", slurm_job_id=jid)["status"] \
        == "ok", res
    big = root / "out" / "big.tar.gz"
    md5 = hashlib.md5(big.read_bytes()).hexdigest()
    key = "MD5E-s3000000--%s.tar.gz" % md5    # datalad's backend: MD5E
    assert registered["out/big.tar.gz"] == key
    assert {"out/big.tar.gz", "out/small.txt"} <= set(registered)
    assert git(ds, "annex", "lookupkey", "out/big.tar.gz").strip() == key
    assert sorted(tracked(ds, "out")) == ["out/big.tar.gz", "out/small.txt"]
    fsck = subprocess.run(["git", "annex", "fsck", "--json", "out"],
                          cwd=ds.path, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    checked = [json.loads(line) for line in fsck.stdout.splitlines()]
    assert sorted(c["file"] for c in checked if c["success"]) == [
        "out/big.tar.gz", "out/small.txt"]
    assert git(ds, "status", "--porcelain") == ""


# ----------------------------------------- last: the task that timed out
def test_timed_out_task(timeout_array):
    ds, jid = timeout_array
    res = finish(ds, jid)
    r = one(res, action="slurm-finish", slurm_job_id=jid)
    assert r["status"] == "ok" and r["failed_tasks"] == [1], res
    rec = head_record(ds)
    assert rec["array_tasks"]["1"]["state"] == "TIMEOUT"
    assert sorted(tracked(ds, "out")) == ["out/t-0", "out/t-2"]
    assert os.path.exists(os.path.join(ds.path, "out", "t-1"))
