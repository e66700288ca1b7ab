"""A producer that appears between planning a job and claiming its outputs
(another slurm-schedule at the same time, or an earlier line of the same
--jobs-from file) is never missed: the job is refused with nothing changed,
or, within --jobs-from, planned again so its --dependency names it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import datalad.api as dl
import pytest
from slurmtest import KW, one, wait_jobs

from datalad_hpcdata.dataset.handle import DatasetHandle
from datalad_hpcdata.jobs.schedule import plan, schedule

pytestmark = pytest.mark.slurm


def git(ds, *args) -> str:
    return subprocess.run(["git", *args], cwd=ds.path, capture_output=True,
                          text=True, check=True).stdout.strip()


def cancel_all(ds):
    ids = [j.job_id for j in DatasetHandle(ds).store.jobs() if j.job_id]
    if ids:
        subprocess.run(["scancel"] + ids)


def test_producer_claimed_after_planning_refuses_the_job(slurm, dataset):
    ds = dataset
    Path(ds.path, "mid.txt").write_text("old version\n")
    ds.save(message="mid", result_renderer="disabled")
    handle = DatasetHandle(ds)
    # B is planned while nothing produces mid.txt ...
    spec_b = plan(handle, "sbatch --hold code/job.sh out.txt {inputs}",
                  ds.path, inputs=["mid.txt"], outputs=["out.txt"])
    assert not spec_b.depends_on
    try:
        # ... then A claims mid.txt (a schedule running at the same time)
        a = one(dl.slurm_schedule("sbatch --hold code/job.sh mid.txt",
                                  dataset=ds, outputs=["mid.txt"], **KW),
                action="slurm-schedule")
        assert a["status"] == "ok", a
        before = git(ds, "status", "--porcelain")
        res = list(schedule(DatasetHandle(ds), spec_b))
        r = one(res, action="slurm-schedule")
        assert r["status"] == "error", r
        assert "job %s claimed mid.txt" % a["slurm_job_id"] in r["message"]
        assert "nothing was submitted" in r["message"]
        store = DatasetHandle(ds).store
        assert [j.job_id for j in store.jobs(("open", "submitting"))] == [
            a["slurm_job_id"]]
        assert git(ds, "status", "--porcelain") == before
        # scheduled again, it depends on A
        r = one(dl.slurm_schedule(
            "sbatch --hold code/job.sh out.txt {inputs}", dataset=ds,
            inputs=["mid.txt"], outputs=["out.txt"], **KW),
            action="slurm-schedule")
        assert r["status"] == "ok", r
        assert r["dependency"] == "afterok:%s" % a["slurm_job_id"]
    finally:
        cancel_all(ds)


def test_jobs_from_line_reading_an_earlier_lines_output(slurm, dataset):
    """Line 2 reads what line 1 writes (not there yet): it waits for line
    1's job and is committed after it."""
    ds = dataset
    specs = [{"cmd": "sbatch code/job.sh stage/a.txt first",
              "outputs": "stage/a.txt"},
             {"cmd": "sbatch code/job.sh stage/b.txt second",
              "inputs": "stage/a.txt", "outputs": "stage/b.txt"}]
    res = dl.slurm_schedule(dataset=ds, jobs_from=specs, **KW)
    try:
        ok = [r for r in res if r.get("action") == "slurm-schedule"]
        assert [r["status"] for r in ok] == ["ok", "ok"], res
        first, second = ok
        assert second.get("dependency") == "afterok:%s" % first["slurm_job_id"], second
        wait_jobs([first["slurm_job_id"], second["slurm_job_id"]])
        done = [r for r in dl.slurm_finish(dataset=ds, **KW)
                if r.get("commit")]
        assert [r["slurm_job_id"] for r in done] == [
            first["slurm_job_id"], second["slurm_job_id"]]
        assert Path(ds.path, "stage", "b.txt").exists()
    finally:
        cancel_all(ds)
