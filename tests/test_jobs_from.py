"""slurm-schedule --jobs-from against the real local Slurm cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import datalad.api as dl
import pytest
from slurmtest import KW, one, text, wait_jobs

from datalad_hpcdata.dataset.handle import DatasetHandle
from datalad_hpcdata.jobs import schedule as schedule_mod
from datalad_hpcdata.jobs.record import parse_message

pytestmark = pytest.mark.slurm


def git(ds, *args):
    return subprocess.run(["git", *args], cwd=ds.path, capture_output=True,
                          text=True, check=True).stdout


def lines(*items):
    return "".join((i if isinstance(i, str) else json.dumps(i)) + "\n"
                   for i in items)


def records(stdout):
    return [json.loads(line) for line in stdout.splitlines()
            if line.startswith("{")]


def state(ds):
    store = DatasetHandle(ds).store
    rows = [(j.row, j.status) for j in store.jobs(
        ("submitting", "open", "committed", "abandoned", "rejected"))]
    return (git(ds, "rev-parse", "HEAD"),
            git(ds, "status", "--porcelain", "--untracked-files=all"), rows)


def test_jobs_from_file_placeholders_per_line(slurm, dataset, tmp_path):
    ds = dataset
    Path(ds.path, "data", "b.txt").write_text("second input\n")
    ds.save(message="b", result_renderer="disabled")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(lines(
        "# one job per line; blank lines and comments are skipped",
        {"cmd": "sbatch code/job.sh {outputs} {inputs}",
         "inputs": "data/in.txt", "outputs": "res/a.txt", "message": "A"},
        "",
        {"cmd": ["sbatch", "code/job.sh", "{outputs}", "{inputs}"],
         "inputs": ["data/b.txt"], "outputs": ["res/b.txt"]},
    ))
    proc = subprocess.run(
        ["datalad", "-f", "json", "slurm-schedule", "-d", ds.path,
         "--jobs-from", str(jobs), "-m", "campaign"],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    res = [r for r in records(proc.stdout) if r["action"] ==
           "slurm-schedule"]
    assert [r["status"] for r in res] == ["ok", "ok"]
    assert [r["where"] for r in res] == ["%s line 2" % jobs,
                                         "%s line 4" % jobs]
    ids = [r["slurm_job_id"] for r in res]
    assert len(set(ids)) == 2
    wait_jobs(ids)
    fin = dl.slurm_finish(dataset=ds, **KW)
    assert sorted(r["slurm_job_id"] for r in fin if r["status"] == "ok") \
        == sorted(ids)
    # each job got its own inputs and outputs
    assert Path(ds.path, "res/a.txt").read_text().startswith("input data")
    assert Path(ds.path, "res/b.txt").read_text().startswith("second input")
    for jid, out, subject in ((ids[0], "res/a.txt", "A"),
                              (ids[1], "res/b.txt", "campaign")):
        sha = one(fin, slurm_job_id=jid)["commit"]
        msg = git(ds, "log", "-1", "--format=%B", sha)
        assert subject in msg.splitlines()[0] + msg
        rec = parse_message(msg)[1]
        assert rec["outputs"] == [out]
        assert "{outputs}" in rec["cmd"]
        # the details asked for while the next job was submitted are in
        assert rec["slurm_outputs"] == ["slurm-%s.out" % jid]


def test_jobs_from_stdin_and_python_list(slurm, dataset):
    ds = dataset
    proc = subprocess.run(
        ["datalad", "-f", "json", "slurm-schedule", "-d", ds.path,
         "--jobs-from", "-"],
        input=lines({"cmd": "sbatch code/job.sh {outputs}",
                     "outputs": "s/1.txt"}),
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    r = one(records(proc.stdout), action="slurm-schedule")
    assert r["status"] == "ok" and r["where"] == "stdin line 1"
    res = dl.slurm_schedule(dataset=ds, jobs_from=[
        {"cmd": "sbatch code/job.sh {outputs}", "outputs": "p/%d.txt" % i}
        for i in range(3)], **KW)
    assert [r["where"] for r in res] == ["job 1", "job 2", "job 3"]
    ids = [r["slurm_job_id"] for r in res if r["status"] == "ok"]
    assert len(ids) == 3
    wait_jobs(ids + [r["slurm_job_id"]])
    fin = dl.slurm_finish(dataset=ds, **KW)
    assert len([r for r in fin if r.get("commit")]) == 4


GOOD = {"cmd": "sbatch code/job.sh {outputs}", "outputs": "good/1.txt"}
GOOD2 = {"cmd": "sbatch code/job.sh {outputs}", "outputs": "good/2.txt"}
BAD = {
    "not-json": '{"cmd": "sbatch code/job.sh", outputs: x}',
    "not-an-object": '["sbatch", "code/job.sh"]',
    "unknown-key": dict(GOOD, outputs="x", output="y"),
    "no-cmd": {"outputs": "x"},
    "no-outputs": {"cmd": "sbatch code/job.sh x"},
    "bad-type": {"cmd": "sbatch code/job.sh", "outputs": ["x", 3]},
    "missing-input": dict(GOOD, outputs="x", inputs="nope.txt"),
    "outside": dict(GOOD, outputs="/tmp/elsewhere.txt"),
    "bad-expand": dict(GOOD, outputs="x", expand="everything"),
    "bad-placeholder": {"cmd": "sbatch code/job.sh {nosuch}",
                        "outputs": "x"},
    "overlaps-line-1": dict(GOOD, outputs="good"),
    "overlaps-open-job": dict(GOOD, outputs="held/sub/x"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_line_nothing_submitted(slurm, dataset, tmp_path, case,
                                    slurm_calls):
    ds = dataset
    held = one(dl.slurm_schedule("sbatch --hold code/job.sh held/x",
                                 dataset=ds, outputs=["held"], **KW),
               status="ok")["slurm_job_id"]
    try:
        before = state(ds)
        submitted = len(slurm_calls("sbatch"))
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_text(lines(GOOD, GOOD2, BAD[case]))
        res = dl.slurm_schedule(dataset=ds, jobs_from=str(jobs), **KW)
    finally:
        subprocess.run(["scancel", held])
    bad = [r for r in res if r["status"] != "ok"]
    assert len(bad) == 1 and len(res) == 1, res
    assert bad[0]["status"] == "impossible"
    assert bad[0]["where"] == "%s line 3" % jobs
    assert text(bad[0]).startswith("%s line 3: " % jobs)
    assert "nothing was submitted" in text(bad[0])
    # nothing submitted, claimed, prepared or recorded
    assert len(slurm_calls("sbatch")) == submitted
    assert state(ds) == before


def test_every_bad_line_reported(slurm, dataset, tmp_path):
    ds = dataset
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(lines(BAD["no-cmd"], GOOD, BAD["unknown-key"]))
    before = state(ds)
    res = dl.slurm_schedule(dataset=ds, jobs_from=str(jobs), **KW)
    assert [r["where"] for r in res] == ["%s line 1" % jobs,
                                         "%s line 3" % jobs]
    assert "no 'cmd'" in text(res[0]) and "'output'" in text(res[1])
    assert state(ds) == before


@pytest.mark.parametrize("case", ["empty", "missing-file", "with-cmd"])
def test_jobs_from_refusals(slurm, dataset, tmp_path, case):
    ds = dataset
    before = state(ds)
    path = tmp_path / "jobs.jsonl"
    kw = dict(jobs_from=str(path))
    if case == "empty":
        path.write_text("\n# nothing\n")
    elif case == "with-cmd":
        path.write_text(lines(GOOD))
        kw.update(cmd="sbatch code/job.sh x", outputs=["x"])
    res = dl.slurm_schedule(dataset=ds, **dict(KW, **kw))
    assert len(res) == 1 and res[0]["status"] == "impossible"
    assert {"empty": "no jobs", "missing-file": "cannot read",
            "with-cmd": "on each line"}[case] in text(res[0])
    assert state(ds) == before


def test_one_lock_per_job_and_dry_run(slurm, dataset, monkeypatch,
                                      slurm_calls):
    ds = dataset
    specs = [{"cmd": "sbatch code/job.sh {outputs}", "outputs": "l/%d" % i}
             for i in range(4)]
    before = state(ds)
    res = dl.slurm_schedule(dataset=ds, jobs_from=specs, dry_run="basic",
                            **KW)
    assert [r["status"] for r in res] == ["ok"] * 4
    assert all(r["dry_run"] == "basic" for r in res)
    assert "code/job.sh l/2" in res[2]["cmd_expanded"]
    assert slurm_calls("sbatch") == [] and state(ds) == before
    taken = []
    real_lock = schedule_mod.repository_lock

    def counting_lock(*args, **kwargs):
        taken.append(args)
        return real_lock(*args, **kwargs)

    monkeypatch.setattr(schedule_mod, "repository_lock", counting_lock)
    res = dl.slurm_schedule(dataset=ds, jobs_from=specs, **KW)
    ids = [r["slurm_job_id"] for r in res if r["status"] == "ok"]
    assert len(ids) == 4 and len(taken) == 4
    assert len(slurm_calls("sbatch")) == 4
    wait_jobs(ids)
    assert len([r for r in dl.slurm_finish(dataset=ds, **KW)
                if r.get("commit")]) == 4


def test_head_commit_reads_refs_like_git(tmp_path, dataset):
    """HEAD as every job records it, read without a git process."""
    from datalad_hpcdata.dataset.git import head_commit, rev_parse
    ds = dataset
    handle = DatasetHandle(ds)

    def same():
        return head_commit(ds.path, handle.git_dir) == \
            rev_parse(ds.path, "HEAD") is not None

    assert same()                                   # a loose ref
    git(ds, "pack-refs", "--all")
    assert same()                                   # packed-refs only
    git(ds, "checkout", "-q", "--detach")
    assert same()                                   # detached
    git(ds, "checkout", "-q", "-")
    wt = tmp_path / "wt"
    git(ds, "worktree", "add", "-q", str(wt), "-b", "other")
    wt_git = DatasetHandle(dl.Dataset(str(wt))).git_dir
    assert head_commit(str(wt), wt_git) == rev_parse(str(wt), "HEAD")
    empty = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    assert head_commit(str(empty), empty / ".git") is None   # unborn


def test_stopping_midway_loses_no_submitted_job(slurm, dataset,
                                                slurm_calls):
    """Stop consuming after the first result: every job sbatch submitted
    is open in the store with its details (none left 'submitting')."""
    ds = dataset
    specs = [{"cmd": "sbatch --hold code/job.sh {outputs}",
              "outputs": "m/%d" % i} for i in range(5)]
    gen = dl.slurm_schedule(dataset=ds, jobs_from=specs,
                            result_renderer="disabled",
                            return_type="generator")
    first = next(gen)
    gen.close()
    store = DatasetHandle(ds).store
    jobs = store.jobs(("submitting", "open"))
    try:
        assert first["status"] == "ok"
        submitted = [c[-1] for c in slurm_calls("sbatch")]
        # jobs are submitted one after the other: closing the generator
        # after the first result stops before the next sbatch
        assert len(jobs) == len(submitted) >= 1
        for job in jobs:
            assert job.status == "open" and job.job_id
            assert job.spec["slurm_logs"] == [
                str(Path(ds.path, "slurm-%s.out" % job.job_id))]
    finally:
        subprocess.run(["scancel"] + [j.job_id for j in jobs if j.job_id])
