"""Kill slurm-schedule, slurm-finish and the alt-dir copy-back at every
step, then run again: exactly one commit per finished job, no orphan
claim, no half-written record, a clean ``git fsck``, nothing outside the
declared paths changed.

The kill is deterministic: ``HPCDATA_FAULT=STEP`` makes the process send
itself SIGKILL (or ``HPCDATA_FAULT_SIGNAL`` TERM/INT) at that step
(``datalad_hpcdata/faults.py``).  Real Slurm, real git-annex.  Each case
prints one ``MATRIX`` line (step, command, outcome) for the report.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import datalad.api as dl
import pytest
from faultkit import (
    changed_paths,
    cli,
    copy_dataset,
    finish_api,
    finish_until,
    fsck_clean,
    git,
    head,
    job_commit_counts,
    records,
    status,
    store_claims,
    store_rows,
    text,
)
from slurmtest import JOB_SH, KW, one, wait_jobs

from datalad_hpcdata.jobs import submit as submit_mod

pytestmark = pytest.mark.slurm

CMD = ["sbatch", "--wrap", "cat data/in.txt > p.dat; echo ok >> p.dat"]


@pytest.fixture(scope="module")
def template(tmp_path_factory, slurm):
    """A dataset with an annexed, committed p.dat (an output the job
    rewrites) and data/in.txt; copied for every case."""
    root = tmp_path_factory.mktemp("tpl") / "ds"
    ds = dl.create(str(root), result_renderer="disabled")
    (root / "code").mkdir()
    (root / "code" / "job.sh").write_text(JOB_SH)
    (root / "code" / "job.sh").chmod(0o755)
    (root / "data").mkdir()
    (root / "data" / "in.txt").write_text("input data\n")
    (root / "p.dat").write_text("previous result\n")
    ds.save(message="template", result_renderer="disabled")
    return root


@pytest.fixture
def ds(template, tmp_path):
    return copy_dataset(template, tmp_path / "ds")


def no_leftovers(path):
    assert store_claims(path) == [], store_claims(path)
    assert not [r for r in store_rows(path) if r[1] == "submitting"]
    fsck_clean(path)


def report(step, command, outcome):
    print("\nMATRIX | %s | %s | %s" % (command, step, outcome))


# -- slurm-schedule ----------------------------------------------------------

SCHEDULE_STEPS = ["claim", "get", "prepare", "submit", "submitted",
                  "store-update"]


@pytest.mark.parametrize("step", SCHEDULE_STEPS)
def test_schedule_killed_at(ds, step):
    base = head(ds)
    link = os.readlink(ds / "p.dat")
    proc = cli(ds, "slurm-schedule", "-o", "p.dat", "-i", "data/in.txt",
               *CMD, env={"HPCDATA_FAULT": "schedule:" + step})
    assert proc.returncode == -9, (proc.stdout, proc.stderr)
    # the next command resolves the interrupted submission
    fin = finish_api(ds)
    adopted = [r for r in fin if r.get("state") == "SUBMITTED"]
    released = [r for r in fin if r.get("state") == "RELEASED"]
    if released:
        # the claim is gone and the worktree is as before
        assert os.readlink(ds / "p.dat") == link
        assert status(ds) == ""
    # run the schedule again: refused if the job exists, else submitted
    again = dl.slurm_schedule(CMD, dataset=str(ds), outputs=["p.dat"],
                              inputs=["data/in.txt"], **KW)
    r = one(again, action="slurm-schedule")
    open_ids = [j for _, s, j, _ in store_rows(ds) if j and s == "open"]
    if r["status"] == "impossible":
        assert open_ids and open_ids[0] in r["message"], (r, open_ids)
    else:
        assert r["status"] == "ok", r
    assert len(open_ids) == 1, store_rows(ds)
    finish_until(ds, open_ids)
    # every job that ran (the killed one's, if it was submitted and the
    # first finish already committed it, and the re-run's) once
    ran = [j for _, s, j, _ in store_rows(ds) if j]
    assert job_commit_counts(ds, base) == {j: 1 for j in ran}
    assert changed_paths(ds, base) <= {"p.dat"} | {
        "slurm-%s.out" % j for j in ran}
    assert (ds / "p.dat").read_text() == "input data\nok\n"
    assert status(ds) == ""
    no_leftovers(ds)
    report(step, "slurm-schedule", "%s; re-run %s; 1 commit" % (
        "adopted by slurm-finish" if adopted else
        "released by slurm-finish, worktree restored" if released else
        "job recorded before the kill",
        "refused (job exists)" if r["status"] == "impossible"
        else "submitted"))


@pytest.mark.parametrize("signal", ["TERM", "INT"])
@pytest.mark.parametrize("step", ["prepare", "submit"])
def test_schedule_interrupted_cleans_up_itself(ds, step, signal):
    """SIGTERM / Ctrl-C after the claim: the process itself restores the
    worktree and releases the claim (nothing left for the next command)."""
    before = (status(ds), os.readlink(ds / "p.dat"))
    proc = cli(ds, "slurm-schedule", "-o", "p.dat", *CMD,
               env={"HPCDATA_FAULT": "schedule:" + step,
                    "HPCDATA_FAULT_SIGNAL": signal})
    assert proc.returncode != 0
    assert (status(ds), os.readlink(ds / "p.dat")) == before
    rows = store_rows(ds)
    assert [r[1] for r in rows] == ["rejected"], rows
    no_leftovers(ds)
    report(step, "slurm-schedule (SIG%s)" % signal,
           "claim released and worktree restored by the process itself")


def test_backend_config_error_changes_nothing(ds):
    """Defect 2: datalad.hpcdata.backend bogus left p.dat unlocked."""
    git(ds, "config", "datalad.hpcdata.backend", "bogus")
    before = (status(ds), os.readlink(ds / "p.dat"), head(ds))
    r = one(records(cli(ds, "slurm-schedule", "-o", "p.dat", *CMD)),
            action="slurm-schedule")
    assert r["status"] == "error"
    assert "datalad.hpcdata.backend" in r["message"]
    assert "bogus" in r["message"]
    assert (status(ds), os.readlink(ds / "p.dat"), head(ds)) == before
    assert store_claims(ds) == [] and store_rows(ds) == []


SLOW_SBATCH = """#!/bin/sh
# FAKE SLURM (only the delay): a real cluster cannot be made to answer
# sbatch late on demand.  {when} the real sbatch, then sleep past the
# (test-shortened) timeout.
{before}
exec sleep 30
"""


@pytest.mark.parametrize("queued", [False, True])
def test_sbatch_timeout(ds, tmp_path, monkeypatch, queued):
    """sbatch does not answer in time: before it reached the controller
    the claim is released; if the job was queued it is adopted."""
    real = shutil.which("sbatch")
    shim = tmp_path / "bin" / "sbatch"
    shim.parent.mkdir()
    shim.write_text(SLOW_SBATCH.format(
        when="runs" if queued else "never runs",
        before='"%s" "$@" >/dev/null' % real if queued else ""))
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", "%s:%s" % (shim.parent, os.environ["PATH"]))
    from datalad_hpcdata.slurm import cli as cli_mod
    real_run = cli_mod.run

    def short(argv, timeout=300, **kw):
        return real_run(argv, timeout=min(timeout, 5), **kw)

    monkeypatch.setattr(cli_mod, "run", short)
    link = os.readlink(ds / "p.dat")
    res = dl.slurm_schedule(CMD, dataset=str(ds), outputs=["p.dat"], **KW)
    r = one(res, action="slurm-schedule")
    assert r["status"] == "error" and "did not answer" in r["message"], r
    rows = store_rows(ds)
    if queued:
        assert "was submitted and is recorded" in r["message"]
        assert rows[0][1] == "open" and rows[0][2] == r["slurm_job_id"]
        monkeypatch.setattr(cli_mod, "run", real_run)
        monkeypatch.setenv("PATH", os.environ["PATH"].split(":", 1)[1])
        base = head(ds)
        finish_until(ds, [r["slurm_job_id"]])
        assert job_commit_counts(ds, base) == {r["slurm_job_id"]: 1}
    else:
        assert [x[1] for x in rows] == ["rejected"]
        assert os.readlink(ds / "p.dat") == link and status(ds) == ""
    no_leftovers(ds)


def test_released_claim_cancels_late_job(ds, monkeypatch):
    """A submitter whose row another command released meanwhile cancels
    the job it got (no job writes into outputs nobody claimed)."""
    real = submit_mod.record_submission

    def released_meanwhile(handle, row, *a, **kw):
        handle.store.reject(row, "closed by another command (test)")
        return real(handle, row, *a, **kw)

    monkeypatch.setattr(submit_mod, "record_submission", released_meanwhile)
    r = one(dl.slurm_schedule(["sbatch", "--hold", "--wrap", "true"],
                              dataset=str(ds), outputs=["p.dat"], **KW),
            action="slurm-schedule")
    assert r["status"] == "error" and "cancelled" in text(r)
    wait_jobs([r["slurm_job_id"]])
    assert [x[1] for x in store_rows(ds)] == ["rejected"]


# -- slurm-finish --------------------------------------------------------------

FINISH_STEPS = ["state-query", "annex-add", "tree-build", "commit",
                "pending", "ref-update", "store-update"]


def two_finished_jobs(ds, alt=None):
    ids = []
    for name in ("o1.dat", "sub/o2.dat"):
        cmd = ["sbatch", "--wrap",
               "mkdir -p sub; echo %s > %s" % (name, name)]
        res = dl.slurm_schedule(cmd, dataset=str(ds), outputs=[name],
                                alt_dir=alt, **KW)
        ids.append(one(res, action="slurm-schedule",
                       status="ok")["slurm_job_id"])
    wait_jobs(ids)
    return ids


def check_finished(ds, base, ids):
    assert job_commit_counts(ds, base) == {j: 1 for j in ids}
    declared = {"o1.dat", "sub/o2.dat"} | {"slurm-%s.out" % j for j in ids}
    assert changed_paths(ds, base) <= declared
    assert status(ds) == ""
    assert (ds / "o1.dat").read_text() == "o1.dat\n"
    assert (ds / "sub" / "o2.dat").read_text() == "sub/o2.dat\n"
    no_leftovers(ds)
    assert [r[1] for r in store_rows(ds)] == ["committed"] * len(ids)


@pytest.mark.parametrize("step", FINISH_STEPS)
def test_finish_killed_at(ds, step):
    ids = two_finished_jobs(ds)
    base = head(ds)
    proc = cli(ds, "slurm-finish", env={"HPCDATA_FAULT": "finish:" + step})
    assert proc.returncode == -9, (proc.stdout, proc.stderr)
    moved = head(ds) != base
    rerun = finish_api(ds)
    check_finished(ds, base, ids)
    how = {text(r) for r in rerun if r["status"] == "ok"}
    report(step, "slurm-finish", "%s; re-run: %s" % (
        "HEAD had moved" if moved else "HEAD unchanged",
        "closed from the noted pending commits" if any(
            "interrupted earlier run" in str(m) for m in how)
        else "committed both jobs" if how
        else "nothing left to do (jobs were marked committed)"))


ALT_STEPS = ["copy-back", "copied-back", "annex-add", "ref-update",
             "store-update", "cleanup"]


@pytest.mark.parametrize("step", ALT_STEPS)
def test_altdir_finish_killed_at(ds, tmp_path, step):
    alt = tmp_path / "alt"
    ids = two_finished_jobs(ds, alt=str(alt))
    base = head(ds)
    proc = cli(ds, "slurm-finish", env={"HPCDATA_FAULT": "finish:" + step})
    assert proc.returncode == -9, (proc.stdout, proc.stderr)
    finish_api(ds)
    check_finished(ds, base, ids)
    left = sorted(str(p.relative_to(alt)) for p in alt.rglob("*")
                  if p.is_file())
    report(step, "slurm-finish --alt-dir", "one commit per job; staged "
           "files left in the alt-dir: %s" % (", ".join(left) or "none"))
    assert left == []


def test_update_ref_failure_restores_index(ds, monkeypatch):
    """update-ref refused after staging: the real index is as before."""
    from datalad_hpcdata.dataset.git import GitError
    from datalad_hpcdata.jobs import commit
    ids = two_finished_jobs(ds)
    base = head(ds)
    index_before = git(ds, "ls-files", "-s")

    def refuse(*a, **kw):
        raise GitError("update-ref refused (test)")

    monkeypatch.setattr(commit, "update_ref", refuse)
    res = dl.slurm_finish(dataset=str(ds), **KW)
    assert all(r["status"] == "error" for r in res
               if r.get("slurm_job_id") in ids)
    assert head(ds) == base
    assert git(ds, "ls-files", "-s") == index_before
    assert [r[1] for r in store_rows(ds)] == ["open", "open"]
    monkeypatch.undo()
    one_more = dl.slurm_finish(dataset=str(ds), **KW)
    assert sorted(r["slurm_job_id"] for r in one_more
                  if r["status"] == "ok") == sorted(ids)
    check_finished(ds, base, ids)


def test_dataset_path_with_glob_characters(tmp_path, slurm):
    root = tmp_path / "my [data] set*? x"
    ds = dl.create(str(root), result_renderer="disabled")
    Path(root, "in put.txt").write_text("x\n")
    ds.save(result_renderer="disabled")
    # (an output named with [ ] would be a glob pattern, as in datalad run)
    r = one(dl.slurm_schedule(["sbatch", "--wrap", "cat 'in put.txt' > "
                               "'out put.txt'"], dataset=ds,
                              inputs=["in put.txt"],
                              outputs=["out put.txt"], **KW),
            action="slurm-schedule", status="ok")
    base = head(root)
    finish_until(root, [r["slurm_job_id"]])
    assert job_commit_counts(root, base) == {r["slurm_job_id"]: 1}
    assert Path(root, "out put.txt").read_text() == "x\n"
    assert status(root) == ""
    no_leftovers(root)


def test_other_hosts_submission_listed_then_closed(ds):
    """A 'being submitted' row of a process on another host is reported
    (it may be alive) and --close-failed-jobs resolves it."""
    from datalad_hpcdata.dataset.handle import DatasetHandle
    store = DatasetHandle(dl.Dataset(str(ds))).store
    row = store.claim(["p.dat"], {"cmd": "sbatch x", "output_specs":
                                  ["p.dat"], "pwd": ".",
                                  "submit_token": "datalad-hpcdata:none"},
                      None)
    store.con.execute("UPDATE jobs SET host = 'login9', pid = 4242 "
                      "WHERE row = ?", (row,))
    listed = one(records(cli(ds, "slurm-finish", "--list-open-jobs")),
                 state="SUBMITTING")
    assert "pid 4242 on login9" in text(listed)
    kept = one(records(cli(ds, "slurm-finish")), state="SUBMITTING")
    assert kept["status"] == "notneeded"
    assert store_claims(ds) == [("p.dat", "submitting")]
    closed = one(records(cli(ds, "slurm-finish", "--close-failed-jobs")),
                 state="RELEASED")
    assert closed["status"] == "ok" and "closed by the user" in text(closed)
    assert store_claims(ds) == [] and status(ds) == ""
    no_leftovers(ds)


def test_guarantees_page_example_runs(slurm, tmp_path):
    """The crash example of docs/guarantees.md, as written."""
    page = (Path(__file__).resolve().parents[1] / "docs" /
            "guarantees.md").read_text()
    block = page.split("```sh\n", 1)[1].split("```", 1)[0]
    proc = subprocess.run(["bash", "-e", "-c", block], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "killed (137)" in proc.stdout
    demo = tmp_path / "crash-demo"
    assert len(job_commit_counts(demo, "HEAD~1")) == 1
    no_leftovers(demo)
