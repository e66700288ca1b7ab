"""schedule -> finish -> reschedule against the real local Slurm cluster."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import datalad.api as dl
import pytest
from slurmtest import KW, one, store_snapshot, wait_jobs

from datalad_hpcdata.dataset.handle import DatasetHandle
from datalad_hpcdata.jobs.record import parse_message

pytestmark = pytest.mark.slurm


def schedule(ds, cmd, **kw):
    return dl.slurm_schedule(cmd, dataset=ds, **dict(KW, **kw))


def finish(ds, **kw):
    return dl.slurm_finish(dataset=ds, **dict(KW, **kw))


def finish_settled(ds, jid, timeout=60.0, **kw):
    """finish until job `jid` is no longer reported as still active
    (accounting may need a few seconds to split an array into tasks)."""
    deadline = time.monotonic() + timeout
    while True:
        res = finish(ds, **kw)
        r = one(res, slurm_job_id=jid)
        if r["status"] != "notneeded" or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def job_id(res):
    return one(res, action="slurm-schedule", status="ok")["slurm_job_id"]


def git(ds, *args):
    return subprocess.run(["git", *args], cwd=ds.path, capture_output=True,
                          text=True, check=True).stdout


def head_record(ds, rev="HEAD"):
    msg = git(ds, "log", "-1", "--format=%B", rev)
    parsed = parse_message(msg)
    assert parsed, msg
    return msg, parsed[1]


def test_schedule_finish_commit_full_record(slurm, dataset):
    ds = dataset
    head0 = git(ds, "rev-parse", "HEAD").strip()
    res = schedule(ds, "sbatch code/job.sh {outputs} {inputs}",
                   inputs=["data/in.txt"], outputs=["results/out.txt"],
                   message="copy it")
    jid = job_id(res)
    # nothing committed at schedule time
    assert git(ds, "rev-parse", "HEAD").strip() == head0
    wait_jobs([jid])
    res = finish(ds)
    r = one(res, action="slurm-finish", status="ok")
    assert r["slurm_job_id"] == jid and r["state"] == "COMPLETED"
    msg, rec = head_record(ds)
    assert msg.startswith("[DATALAD SLURM RUN] Slurm job %s: Completed" % jid)
    assert "copy it" in msg
    for key in ("cmd", "dsid", "exit", "inputs", "outputs", "pwd", "chain",
                "extra_inputs", "slurm_job_id", "slurm_outputs", "cluster",
                "slurm_state", "slurm_exit_code", "submit_time", "start_time",
                "end_time", "elapsed", "nodes", "submit_head"):
        assert key in rec, key
    assert rec["exit"] == 0 and rec["slurm_state"] == "COMPLETED"
    assert rec["submit_head"] == head0
    assert rec["outputs"] == ["results/out.txt"]
    assert rec["inputs"] == ["data/in.txt"]
    assert rec["slurm_outputs"] == ["slurm-%s.out" % jid]
    assert rec["cluster"] and rec["dsid"] == ds.id
    # exactly the declared output and the log were committed
    changed = git(ds, "diff", "--name-only", "HEAD~1", "HEAD").split()
    assert sorted(changed) == ["results/out.txt", "slurm-%s.out" % jid]
    assert git(ds, "status", "--porcelain") == ""
    assert Path(ds.path, "results/out.txt").read_text().startswith(
        "input data")
    # the job is history now, its claim released
    rows, claims = store_snapshot(ds)
    assert rows[-1][1:] == ("committed", jid) and claims == []
    # a second finish has nothing to do
    assert one(finish(ds), status="notneeded")


def test_failed_job_kept_open_then_committed(slurm, dataset):
    ds = dataset
    jid = job_id(schedule(ds, ["sbatch", "code/job.sh", "res/out.txt",
                               "data/in.txt", "3"], outputs=["res"]))
    wait_jobs([jid])
    r = one(finish(ds), slurm_job_id=jid)
    assert r["status"] == "impossible" and r["state"] == "FAILED"
    assert r["exit_code"] == "3:0"
    head = git(ds, "rev-parse", "HEAD")
    # still open, nothing committed; a second finish reports it again
    r = one(finish(ds), slurm_job_id=jid)
    assert r["status"] == "impossible"
    assert git(ds, "rev-parse", "HEAD") == head
    r = one(finish(ds, commit_failed_jobs=True), slurm_job_id=jid)
    assert r["status"] == "ok"
    msg, rec = head_record(ds)
    assert msg.startswith("[DATALAD SLURM RUN] Slurm job %s: Failed" % jid)
    assert rec["exit"] == 3 and rec["slurm_exit_code"] == "3:0"


def test_cancelled_job_closed_claim_released(slurm, dataset):
    ds = dataset
    jid = job_id(schedule(ds, "sbatch --hold code/job.sh out.txt",
                          outputs=["out.txt"]))
    # the claim blocks a second job on the same output
    r = one(schedule(ds, "sbatch code/job.sh out.txt", outputs=["./out.txt"]),
            action="slurm-schedule")
    assert r["status"] == "impossible" and jid in r["message"]
    # held: still active
    assert one(finish(ds), slurm_job_id=jid)["status"] == "notneeded"
    subprocess.run(["scancel", jid], check=True)
    wait_jobs([jid])
    r = one(finish(ds, close_failed_jobs=True), slurm_job_id=jid)
    assert r["status"] == "ok" and r["state"] == "CANCELLED"
    rows, claims = store_snapshot(ds)
    assert ("abandoned", jid) in [x[1:] for x in rows] and claims == []
    # now the output is free again
    jid2 = job_id(schedule(ds, "sbatch code/job.sh out.txt",
                           outputs=["out.txt"]))
    wait_jobs([jid2])
    assert one(finish(ds), slurm_job_id=jid2)["status"] == "ok"


def test_array_with_one_failing_task(slurm, dataset):
    ds = dataset
    script = Path(ds.path, "code", "array.sh")
    script.write_text("#!/bin/sh\nmkdir -p arr\necho $SLURM_ARRAY_TASK_ID "
                      "> arr/t$SLURM_ARRAY_TASK_ID.txt\n"
                      "[ $SLURM_ARRAY_TASK_ID -ne 3 ]\n")
    ds.save(message="array script", result_renderer="disabled")
    jid = job_id(schedule(ds, "sbatch --array=1-4 code/array.sh",
                          outputs=["arr"]))
    wait_jobs([jid])
    r = finish_settled(ds, jid)
    assert r["status"] == "impossible"
    assert "FAILED" in r["state"] and "COMPLETED" in r["state"]
    info = DatasetHandle(ds).store.find(jid)[-1].slurm
    assert {t: v["state"] for t, v in info["tasks"].items()} == {
        "1": "COMPLETED", "2": "COMPLETED", "3": "FAILED", "4": "COMPLETED"}
    r = one(finish(ds, commit_failed_jobs=True), slurm_job_id=jid)
    assert r["status"] == "ok"
    msg, rec = head_record(ds)
    assert rec["array_tasks"]["3"]["state"] == "FAILED"
    assert rec["array_tasks"]["3"]["exit_code"] == "1:0"
    assert sorted(rec["slurm_outputs"]) == sorted(
        "slurm-%s_%d.out" % (jid, t) for t in range(1, 5))
    changed = git(ds, "diff", "--name-only", "HEAD~1", "HEAD").split()
    assert sorted(changed) == sorted(
        ["arr/t%d.txt" % t for t in range(1, 5)]
        + ["slurm-%s_%d.out" % (jid, t) for t in range(1, 5)])


@pytest.mark.parametrize("spelling", [
    "res", "./res", "res/", "res/../res", "{root}/res", "link/res",
    "res/sub/file", "{rel_from_sub}",
])
def test_conflicts_by_spelling_and_prefix(slurm, dataset, spelling):
    ds = dataset
    root = Path(ds.path)
    os.symlink(".", root / "link")
    (root / "sub").mkdir()
    jid = job_id(schedule(ds, "sbatch --hold code/job.sh res/x",
                          outputs=["res"]))
    try:
        before = store_snapshot(ds)
        cwd = os.getcwd()
        try:
            if spelling == "{rel_from_sub}":
                # no dataset argument: paths are relative to the current dir
                os.chdir(root / "sub")
                res = dl.slurm_schedule("sbatch ../code/job.sh x",
                                        outputs=["../res"], **KW)
            else:
                res = schedule(ds, "sbatch code/job.sh x",
                               outputs=[spelling.format(root=ds.path)])
        finally:
            os.chdir(cwd)
        r = one(res, action="slurm-schedule")
        assert r["status"] == "impossible", r
        assert jid in r["message"]
        assert store_snapshot(ds) == before
    finally:
        subprocess.run(["scancel", jid])


def test_sibling_outputs_do_not_conflict(slurm, dataset):
    ds = dataset
    a = job_id(schedule(ds, "sbatch --hold code/job.sh r/a", outputs=["r/a"]))
    b = job_id(schedule(ds, "sbatch --hold code/job.sh r/b", outputs=["r/b"]))
    subprocess.run(["scancel", a, b])
    assert a != b


def test_concurrent_schedules_one_wins(slurm, dataset):
    ds = dataset
    procs = [subprocess.Popen(
        ["datalad", "-f", "json", "slurm-schedule",
         "-d", ds.path, "-o", "same/out.txt", "sbatch", "--hold",
         "code/job.sh", "same/out.txt"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    recs = [json.loads(l) for o, _ in outs for l in o.splitlines()
            if l.startswith("{")]
    ok = [r for r in recs if r["status"] == "ok"]
    refused = [r for r in recs if r["status"] == "impossible"]
    try:
        assert len(ok) == 1 and len(refused) == 3, outs
        owner = ok[0]["slurm_job_id"]
        assert all(owner in r["message"] for r in refused)
        rows, claims = store_snapshot(ds)
        assert claims == [("same/out.txt", rows[0][0])]
    finally:
        if ok:
            subprocess.run(["scancel"] + [r["slurm_job_id"] for r in ok])


def test_unknown_job_does_not_block_others(slurm, dataset):
    ds = dataset
    jid = job_id(schedule(ds, "sbatch code/job.sh a.txt", outputs=["a.txt"]))
    store = DatasetHandle(ds).store
    row = store.claim(["ghost.txt"], {"cmd": "sbatch x", "outputs":
                                      ["ghost.txt"], "output_specs":
                                      ["ghost.txt"], "pwd": "."}, None)
    # submitted to this cluster (a job of another one is not asked about)
    from datalad_hpcdata.jobs.cluster import cluster_name
    store.set_submitted(row, cluster_name(DatasetHandle(ds)), "987654")
    # pretend it was submitted long ago (no grace period for fresh jobs)
    store.con.execute("UPDATE jobs SET submit_time = 1 WHERE row = ?", (row,))
    wait_jobs([jid])
    res = finish(ds)
    assert one(res, slurm_job_id=jid)["status"] == "ok"
    ghost = one(res, slurm_job_id="987654")
    assert ghost["status"] == "impossible" and "unknown" in ghost["message"]
    # and it can be closed explicitly
    r = one(finish(ds, close_failed_jobs=True), slurm_job_id="987654")
    assert r["status"] == "ok"


def test_reschedule_same_outputs_from_root_and_subdir(slurm, dataset):
    ds = dataset
    root = Path(ds.path)
    (root / "jobA").mkdir()
    cwd = os.getcwd()
    try:
        os.chdir(root / "jobA")
        res = dl.slurm_schedule("sbatch ../code/job.sh result.txt",
                                outputs=["result.txt"], **KW)
    finally:
        os.chdir(cwd)
    jid = job_id(res)
    wait_jobs([jid])
    one(finish(ds), status="ok")
    first = git(ds, "rev-parse", "HEAD").strip()
    _, rec = head_record(ds)
    assert rec["pwd"] == "jobA" and rec["outputs"] == ["result.txt"]
    assert rec["slurm_outputs"] == ["slurm-%s.out" % jid]
    changed = git(ds, "diff", "--name-only", "HEAD~1", "HEAD").split()
    assert sorted(changed) == ["jobA/result.txt", "jobA/slurm-%s.out" % jid]

    ids = []
    for where in (root, root / "jobA"):
        try:
            os.chdir(where)
            res = dl.slurm_reschedule(first, **KW)
        finally:
            os.chdir(cwd)
        r = one(res, action="slurm-reschedule", status="ok")
        ids.append(r["slurm_job_id"])
        wait_jobs([r["slurm_job_id"]])
        one(finish(ds), status="ok")
        msg, rec2 = head_record(ds)
        assert rec2["pwd"] == "jobA" and rec2["outputs"] == ["result.txt"]
        assert rec2["chain"] == [first]
        assert "Re-submission of job %s" % jid in msg
        changed = git(ds, "diff", "--name-only", "HEAD~1", "HEAD").split()
        assert set(changed) <= {"jobA/result.txt",
                                "jobA/slurm-%s.out" % r["slurm_job_id"]}
        assert "jobA/slurm-%s.out" % r["slurm_job_id"] in changed
    assert ids[0] != ids[1]


def test_json_output_parses(slurm, dataset):
    ds = dataset
    out = subprocess.run(
        ["datalad", "-f", "json", "slurm-schedule", "-d", ds.path, "-o",
         "j.txt", "sbatch", "code/job.sh", "j.txt"], capture_output=True,
        text=True, check=True).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    assert rec["status"] == "ok" and rec["slurm_job_id"]
    wait_jobs([rec["slurm_job_id"]])
    out = subprocess.run(
        ["datalad", "-f", "json", "slurm-finish", "-d", ds.path, "-l"],
        capture_output=True, text=True, check=True).stdout
    listed = [json.loads(l) for l in out.splitlines()]
    assert listed[0]["slurm_job_id"] == rec["slurm_job_id"]
    assert listed[0]["state"] == "COMPLETED"
    out = subprocess.run(
        ["datalad", "-f", "json", "slurm-finish", "-d", ds.path],
        capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1])["commit"]


def _worktree_state(ds):
    return (git(ds, "status", "--porcelain", "--untracked-files=all"),
            git(ds, "rev-parse", "HEAD"), store_snapshot(ds))


@pytest.mark.parametrize("case", [
    "outside", "missing-input", "unknown-partition", "no-output", "no-cmd",
    "bad-quote"])
def test_bad_input_changes_nothing(slurm, dataset, tmp_path, case):
    ds = dataset
    # an annexed output that a failed schedule must restore exactly
    Path(ds.path, "kept.dat").write_text("precious\n")
    ds.save(message="annexed output", result_renderer="disabled")
    link = os.readlink(Path(ds.path, "kept.dat"))
    before = _worktree_state(ds)
    kw = {
        "outside": dict(cmd="sbatch code/job.sh x",
                        outputs=[str(tmp_path / "elsewhere.txt")]),
        "missing-input": dict(cmd="sbatch code/job.sh kept.dat",
                              inputs=["nope.txt"], outputs=["kept.dat"]),
        "unknown-partition": dict(cmd="sbatch -p nosuchpartition code/job.sh",
                                  outputs=["kept.dat"]),
        "no-output": dict(cmd="sbatch code/job.sh x"),
        "no-cmd": dict(cmd="", outputs=["x"]),
        "bad-quote": dict(cmd="sbatch 'code/job.sh", outputs=["x"]),
    }[case]
    cmd = kw.pop("cmd")
    r = one(schedule(ds, cmd, **kw), action="slurm-schedule")
    assert r["status"] in ("impossible", "error")
    assert r["message"]
    if case == "unknown-partition":
        assert "partition" in r["message"].lower()
    assert os.readlink(Path(ds.path, "kept.dat")) == link
    after = _worktree_state(ds)
    assert after[:2] == before[:2]
    # the store gained at most a 'rejected' history row, never a claim
    assert after[2][1] == [] and all(
        s == "rejected" for _, s, _ in after[2][0][len(before[2][0]):])


@pytest.mark.parametrize("case", ["unknown-revision", "no-record"])
def test_reschedule_bad_revision(slurm, dataset, case):
    ds = dataset
    before = _worktree_state(ds)
    rev = "nosuchrev" if case == "unknown-revision" else "HEAD"
    r = one(dl.slurm_reschedule(rev, dataset=ds.path, **KW),
            action="slurm-reschedule")
    assert r["status"] == "impossible"
    assert ("unknown revision" if case == "unknown-revision"
            else "has no") in r["message"]
    assert _worktree_state(ds) == before


def test_annexed_output_prepared_other_jobs_untouched(slurm, dataset):
    ds = dataset
    Path(ds.path, "model.dat").write_text("v1\n")
    ds.save(message="v1", result_renderer="disabled")
    # another open job's (untracked) output must survive
    other = job_id(schedule(ds, "sbatch --hold code/job.sh other.txt",
                            outputs=["other.txt"]))
    Path(ds.path, "other.txt").write_text("other job's partial output\n")
    # the job appends: it needs the content, writable, not the annex object
    jid = job_id(schedule(ds, ["sbatch", "--wrap", "echo job >> model.dat"],
                          outputs=["model.dat"]))
    wait_jobs([jid])
    assert Path(ds.path, "other.txt").read_text().startswith("other job")
    r = one(finish(ds), slurm_job_id=jid)
    assert r["status"] == "ok"
    assert Path(ds.path, "model.dat").read_text().startswith("v1\njob")
    assert os.path.islink(Path(ds.path, "model.dat"))  # annexed again
    # the annex still has v1's content (not overwritten through the link)
    git(ds, "annex", "fsck", "--fast", "--quiet")
    subprocess.run(["scancel", other])


@pytest.mark.parametrize("crash_at", ["before-ref", "after-ref"])
def test_finish_killed_midway_then_rerun(slurm, dataset, monkeypatch,
                                         crash_at):
    ds = dataset
    ids = [job_id(schedule(ds, "sbatch code/job.sh o%d.txt" % i,
                           outputs=["o%d.txt" % i])) for i in range(3)]
    wait_jobs(ids)
    head0 = git(ds, "rev-parse", "HEAD").strip()
    from datalad_hpcdata.jobs import commit
    real_update_ref = commit.update_ref

    class Killed(BaseException):
        pass

    def crash(*a, **kw):
        if crash_at == "after-ref":
            real_update_ref(*a, **kw)
        raise Killed()

    monkeypatch.setattr(commit, "update_ref", crash)
    with pytest.raises(Killed):
        finish(ds)
    monkeypatch.setattr(commit, "update_ref", real_update_ref)
    res = finish(ds)
    assert sorted(r["slurm_job_id"] for r in res if r["status"] == "ok") == \
        sorted(ids)
    log = git(ds, "log", "--format=%s", head0 + "..HEAD").splitlines()
    assert sorted(log) == sorted(
        "[DATALAD SLURM RUN] Slurm job %s: Completed" % i for i in ids)
    assert git(ds, "status", "--porcelain") == ""
    assert one(finish(ds), status="notneeded")


def test_reschedule_reads_peer_record(slurm, dataset):
    """A [DATALAD SLURM RUN] commit written by datalad-slurm 0.2.8."""
    ds = dataset
    Path(ds.path, "jobA").mkdir()
    record = {
        "alt_dir": "", "chain": [], "cmd": "sbatch ../code/job.sh result.txt",
        "dsid": ds.id, "extra_inputs": [], "inputs": [],
        "outputs": ["jobA/result.txt", "jobA/slurm-77.out",
                    "jobA/slurm-job-77.env.json"],
        "pwd": "jobA", "slurm_job_id": 77,
        "slurm_outputs": ["slurm-77.out", "slurm-job-77.env.json"]}
    msg = ("[DATALAD SLURM RUN] Slurm job 77: Completed\n\n"
           "=== Do not change lines below ===\n%s\n"
           "^^^ Do not change lines above ^^^\n"
           % json.dumps(record, indent=1, sort_keys=True))
    git(ds, "commit", "--allow-empty", "-q", "-m", msg)
    peer = git(ds, "rev-parse", "HEAD").strip()
    r = one(dl.slurm_reschedule(dataset=ds, **KW), action="slurm-reschedule",
            status="ok")
    assert r["outputs"] == ["result.txt"] and r["pwd"] == "jobA"
    wait_jobs([r["slurm_job_id"]])
    one(finish(ds), status="ok")
    _, rec = head_record(ds)
    assert rec["chain"] == [peer] and rec["outputs"] == ["result.txt"]
    changed = git(ds, "diff", "--name-only", "HEAD~1", "HEAD").split()
    assert sorted(changed) == ["jobA/result.txt",
                               "jobA/slurm-%s.out" % r["slurm_job_id"]]


def _peer_commit(ds, cmd="sbatch code/job.sh out.txt"):
    record = {"chain": [], "cmd": cmd, "dsid": ds.id, "extra_inputs": [],
              "inputs": ["data/in.txt"], "outputs": ["./out.txt"],
              "pwd": ".", "slurm_job_id": 5, "slurm_outputs": []}
    git(ds, "commit", "--allow-empty", "-q", "-m",
        "[DATALAD SLURM RUN] Slurm job 5: Completed\n\n"
        "=== Do not change lines below ===\n%s\n"
        "^^^ Do not change lines above ^^^\n" % json.dumps(record))
    return git(ds, "rev-parse", "HEAD").strip()


def test_dry_run_report_script_submit_nothing(slurm, dataset, tmp_path):
    ds = dataset
    before = _worktree_state(ds)
    r = one(schedule(ds, "sbatch code/job.sh {outputs} {inputs}",
                     inputs=["data/in.txt"], outputs=["o.txt"],
                     dry_run="basic"), action="slurm-schedule")
    assert r["status"] == "ok"
    assert r["cmd_expanded"] == "sbatch code/job.sh o.txt data/in.txt"
    assert _worktree_state(ds) == before
    sha = _peer_commit(ds)
    state = _worktree_state(ds)
    r = one(dl.slurm_reschedule(dataset=ds, report=True, **KW),
            action="slurm-reschedule")
    assert r["status"] == "ok" and r["commit"] == sha
    assert r["outputs"] == ["out.txt"] and r["inputs"] == ["data/in.txt"]
    script = tmp_path / "resubmit.sh"
    one(dl.slurm_reschedule(dataset=ds, script=str(script), **KW),
        status="ok")
    body = script.read_text()
    assert "datalad slurm-schedule" in body and "-o out.txt" in body
    assert "'sbatch code/job.sh out.txt'" in body
    assert _worktree_state(ds) == state
