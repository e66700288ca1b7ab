"""--alt-dir on the real cluster: stage, run there, copy back, commit, clean."""

from __future__ import annotations

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


JOB = """#!/bin/sh
# reads nested inputs, writes nested outputs, records where it ran
set -e
mkdir -p res/deep
cat data/sub/in.txt data/plain.txt > res/deep/out.txt
pwd > res/where.txt
exit "${1:-0}"
"""


@pytest.fixture
def altds(dataset, tmp_path):
    ds = dataset
    root = Path(ds.path)
    (root / "code" / "alt.sh").write_text(JOB)
    (root / "code" / "alt.sh").chmod(0o755)
    (root / "data" / "sub").mkdir()
    (root / "data" / "sub" / "in.txt").write_text("annexed input\n")
    ds.save(message="alt job", result_renderer="disabled")
    (root / "data" / "plain.txt").write_text("plain git input\n")
    ds.save(path="data/plain.txt", to_git=True, message="plain",
            result_renderer="disabled")
    assert os.path.islink(root / "data" / "sub" / "in.txt")
    assert not os.path.islink(root / "data" / "plain.txt")
    # the staging tree lives apart from the dataset's tree
    scratch = tmp_path.parent / (tmp_path.name + "-scratch")
    scratch.mkdir()
    return ds, scratch


def git(ds, *args):
    return subprocess.run(["git", *args], cwd=ds.path, capture_output=True,
                          text=True, check=True).stdout


def _schedule(ds, alt, cmd="sbatch code/alt.sh", **kw):
    res = dl.slurm_schedule(cmd, dataset=ds, inputs=["data"],
                            outputs=["res"], alt_dir=str(alt),
                            **dict(KW, **kw))
    return one(res, action="slurm-schedule")


def _finish_one(ds, jid, **kw):
    deadline = time.monotonic() + 60
    while True:
        r = one(dl.slurm_finish(dataset=ds, **dict(KW, **kw)),
                slurm_job_id=jid)
        if r["status"] != "notneeded" or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def test_alt_dir_round_trip(slurm, altds):
    ds, scratch = altds
    alt = scratch / "run1"
    r = _schedule(ds, alt)
    assert r["status"] == "ok", r
    jid = r["slurm_job_id"]
    assert r["staged_files"] == 3 and r["staged_bytes"] > 0
    # inputs staged as content, not symlinks; dataset untouched
    staged = alt / "data" / "sub" / "in.txt"
    assert staged.read_text() == "annexed input\n"
    assert not staged.is_symlink()
    assert git(ds, "status", "--porcelain") == ""
    wait_jobs([jid])
    r = _finish_one(ds, jid)
    assert r["status"] == "ok", r
    root = Path(ds.path)
    assert (root / "res" / "deep" / "out.txt").read_text() == \
        "annexed input\nplain git input\n"
    assert (root / "res" / "where.txt").read_text().strip() == \
        os.path.realpath(alt)
    msg = git(ds, "log", "-1", "--format=%B")
    rec = parse_message(msg)[1]
    assert rec["alt_dir"] == str(alt)
    changed = git(ds, "diff", "--name-only", "HEAD~1", "HEAD").split()
    assert sorted(changed) == ["res/deep/out.txt", "res/where.txt",
                               "slurm-%s.out" % jid]
    assert git(ds, "status", "--porcelain") == ""
    # staged files removed; the alt-dir itself stays
    assert alt.is_dir() and list(alt.iterdir()) == []


def test_alt_dir_from_subdirectory_and_keep(slurm, altds):
    ds, scratch = altds
    root = Path(ds.path)
    (root / "sub").mkdir()
    cwd = os.getcwd()
    try:
        os.chdir(root / "sub")
        res = dl.slurm_schedule(
            ["sbatch", "--wrap", "mkdir -p out && cat ../data/plain.txt > "
             "out/o.txt"], inputs=["../data/plain.txt"], outputs=["out"],
            alt_dir=str(scratch / "sub-run"), **KW)
    finally:
        os.chdir(cwd)
    jid = one(res, status="ok")["slurm_job_id"]
    wait_jobs([jid])
    r = _finish_one(ds, jid, keep_alt_dir=True)
    assert r["status"] == "ok"
    assert (root / "sub" / "out" / "o.txt").read_text() == "plain git input\n"
    rec = parse_message(git(ds, "log", "-1", "--format=%B"))[1]
    assert rec["pwd"] == "sub" and rec["slurm_outputs"] == [
        "slurm-%s.out" % jid]
    assert (scratch / "sub-run" / "sub" / "out" / "o.txt").exists()


def test_failing_job_nothing_copied_back(slurm, altds):
    ds, scratch = altds
    head = git(ds, "rev-parse", "HEAD")
    r = _schedule(ds, scratch / "fail", cmd="sbatch code/alt.sh 5")
    jid = r["slurm_job_id"]
    wait_jobs([jid])
    r = _finish_one(ds, jid)
    assert r["status"] == "impossible" and r["state"] == "FAILED"
    assert not (Path(ds.path) / "res").exists()
    assert git(ds, "rev-parse", "HEAD") == head
    assert git(ds, "status", "--porcelain") == ""
    # staged output stays for inspection
    assert (scratch / "fail" / "res" / "deep" / "out.txt").exists()


def test_tampered_staged_output_detected(slurm, altds):
    ds, scratch = altds
    alt = scratch / "tamper"
    jid = _schedule(ds, alt)["slurm_job_id"]
    wait_jobs([jid])
    time.sleep(3)   # past the job's end plus the mtime tolerance
    (alt / "res" / "deep" / "out.txt").write_text("forged\n")
    head = git(ds, "rev-parse", "HEAD")
    r = _finish_one(ds, jid)
    assert r["status"] == "error"
    assert r["tampered"] == ["res/deep/out.txt"]
    assert "modified after the job ended" in text(r)
    assert git(ds, "rev-parse", "HEAD") == head
    assert not (Path(ds.path) / "res" / "deep" / "out.txt").exists()
    # still open: nothing was lost
    assert DatasetHandle(ds).store.find(jid)[-1].status == "open"


def test_reschedule_other_alt_dir_and_in_place(slurm, altds):
    ds, scratch = altds
    jid = _schedule(ds, scratch / "first")["slurm_job_id"]
    wait_jobs([jid])
    assert _finish_one(ds, jid)["status"] == "ok"
    first = git(ds, "rev-parse", "HEAD").strip()
    # recorded alt-dir overridden by another one
    r = one(dl.slurm_reschedule(first, dataset=ds, alt_dir=str(
        scratch / "second"), **KW), action="slurm-reschedule")
    assert r["status"] == "ok" and r["alt_dir"] == str(scratch / "second")
    wait_jobs([r["slurm_job_id"]])
    assert _finish_one(ds, r["slurm_job_id"])["status"] == "ok"
    assert Path(ds.path, "res", "where.txt").read_text().strip() == \
        os.path.realpath(scratch / "second")
    # and in place
    r = one(dl.slurm_reschedule(first, dataset=ds, no_alt_dir=True, **KW),
            action="slurm-reschedule")
    assert r["status"] == "ok" and not r.get("alt_dir")
    wait_jobs([r["slurm_job_id"]])
    assert _finish_one(ds, r["slurm_job_id"])["status"] == "ok"
    assert Path(ds.path, "res", "where.txt").read_text().strip() == \
        os.path.realpath(ds.path)
    rec = parse_message(git(ds, "log", "-1", "--format=%B"))[1]
    assert rec["alt_dir"] == "" and rec["chain"] == [first]


@pytest.mark.parametrize("where", ["inside", "root", "parent", "uncreatable"])
def test_alt_dir_refusals_change_nothing(slurm, altds, where, tmp_path):
    ds, scratch = altds
    blocker = scratch / "file"
    blocker.write_text("x")
    alt = {"inside": Path(ds.path) / "stage", "root": Path("/"),
           "parent": Path(ds.path).parent,
           "uncreatable": blocker / "sub"}[where]
    status = git(ds, "status", "--porcelain")
    r = _schedule(ds, alt)
    assert r["status"] == "impossible" and "--alt-dir" in text(r)
    assert git(ds, "status", "--porcelain") == status
    assert DatasetHandle(ds).store.jobs() == []
    if where == "inside":
        assert not alt.exists()
