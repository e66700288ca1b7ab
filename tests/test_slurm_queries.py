"""Slurm-friendly state queries (issue 10), against real Slurm.

* sacct searches from a margin before the earliest submit time of the
  jobs asked about to now (``-S``/``-E``), never from the epoch;
* squeue is asked only about the wanted jobs (``--jobs``);
* the number of Slurm calls per command is bounded and counted
  (docs/slurm-calls.md): schedule = one sbatch + one scontrol show job
  (+ one scontrol show config per host); finish / list = one sacct (+ at
  most one squeue);
* a busy or unreachable controller is retried a bounded number of times
  with backoff.  Freezing the shared cluster's controller would break
  every other test, so these use a private, throw-away slurmctld
  (tests/private_slurm.py) frozen with SIGSTOP: the texts and timeouts
  are Slurm's own.
* a submission limit refusing the job names the limit and claims nothing.
  The shared cluster enforces no accounting limits, so sbatch here is a
  stand-in printing what the real sbatch printed for that refusal
  (recorded with tools/sbatch-refusals.sh, see tests/test_parsing.py);
  the real-limit test is the fault tests' (MaxSubmitJobs set with
  sacctmgr).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import datalad.api as dl
import pytest
from private_slurm import PrivateController
from slurmtest import KW, one, text, wait_jobs

from datalad_hpcdata.dataset.handle import DatasetHandle
from datalad_hpcdata.slurm import cli

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture
def slurm_calls(monkeypatch):
    """Every Slurm tool the package runs: [(argv, stdout, stderr)]."""
    seen = []
    real = cli.run

    def recording(argv, **kw):
        proc = real(argv, **kw)
        seen.append((list(argv), proc.stdout, proc.stderr))
        return proc
    monkeypatch.setattr(cli, "run", recording)
    return seen


def tools(calls) -> list[str]:
    return [argv[0] for argv, _, _ in calls]


def test_calls_per_command_are_bounded_and_windowed(dataset, slurm,
                                                    slurm_calls):
    ds = dataset
    ids = []
    for i in range(3):
        res = dl.slurm_schedule("sbatch code/job.sh out%d data/in.txt" % i,
                                dataset=ds, outputs=["out%d" % i], **KW)
        ids.append(one(res, status="ok")["slurm_job_id"])
    # per schedule: sbatch + its details; the cluster name once per host
    assert tools(slurm_calls).count("sbatch") == 3
    shows = [a for a, _, _ in slurm_calls if a[0] == "scontrol"]
    assert [a[:2] for a in shows].count(["scontrol", "show"]) == len(shows)
    assert len([a for a in shows if a[2] == "job"]) == 3
    assert len([a for a in shows if a[2] == "config"]) <= 1
    assert set(tools(slurm_calls)) <= {"sbatch", "scontrol"}
    wait_jobs(ids)
    submitted = min(j.submit_time for j in DatasetHandle(ds).store.jobs())

    del slurm_calls[:]
    res = dl.slurm_finish(dataset=ds, list_open_jobs=True, **KW)
    assert {r["slurm_job_id"] for r in res} == set(ids)
    assert tools(slurm_calls) == ["sacct"]
    argv = slurm_calls[0][0]
    assert sorted(argv[argv.index("-j") + 1].split(",")) == sorted(ids)
    start = time.mktime(time.strptime(argv[argv.index("-S") + 1],
                                      "%Y-%m-%dT%H:%M:%S"))
    assert submitted - cli.SINCE_MARGIN - 1 <= start <= submitted
    assert argv[argv.index("-E") + 1] == "now"

    del slurm_calls[:]
    res = dl.slurm_finish(dataset=ds, **KW)
    assert len([r for r in res if r.get("commit")]) == 3
    assert tools(slurm_calls) == ["sacct"]


def test_squeue_asks_only_for_the_wanted_jobs(slurm, tmp_path, slurm_calls):
    mine = [cli.run(["sbatch", "--parsable", "--hold", "-o", "/dev/null",
                     "--wrap", "true"], cwd=str(tmp_path)).stdout.strip()
            for _ in range(2)]
    try:
        backend = cli.CLIBackend()
        res = backend._query_controller(mine[:1])
        argv = slurm_calls[-1][0]
        assert argv[0] == "squeue" and "--jobs=%s" % mine[0] in argv
        assert set(res) == {mine[0]}
        assert res[mine[0]].state == "PENDING"
        assert res[mine[0]].exit_code == "0:0"
        # a purged id: Slurm's definite "Invalid job id" is not retried
        assert backend._query_controller(["1"]) == {}
        assert "Invalid job id" in slurm_calls[-1][2]
        assert backend.calls == {"squeue": 2}
    finally:
        cli.run(["scancel"] + mine)


@pytest.fixture
def private(slurm, tmp_path, monkeypatch):
    ctl = PrivateController(tmp_path / "ctld")
    ctl.start()
    monkeypatch.setenv("SLURM_CONF", str(ctl.conf))
    yield ctl
    ctl.stop()


def test_busy_controller_is_retried_with_backoff(private, slurm_calls,
                                                 monkeypatch, tmp_path):
    job = cli.run(["sbatch", "--parsable", "--hold", "-o", "/dev/null",
                   "--wrap", "true"], cwd=str(tmp_path)).stdout.strip()
    pauses = []

    def pause(seconds):
        # the controller recovers while the backend waits
        pauses.append(seconds)
        private.thaw()
    monkeypatch.setattr(cli, "pause", pause)
    private.freeze()
    backend = cli.CLIBackend()
    res = backend._query_controller([job])
    assert res[job].state == "PENDING"
    assert backend.calls == {"squeue": 2} and pauses == [cli.RETRY_DELAYS[0]]
    first_query = slurm_calls[1]               # [0] is the test's sbatch
    assert first_query[0][0] == "squeue"
    assert "Socket timed out" in first_query[2]


def test_unreachable_controller_gives_up_after_bounded_retries(
        private, slurm_calls, monkeypatch):
    pauses = []
    monkeypatch.setattr(cli, "pause", pauses.append)
    private.stop()
    backend = cli.CLIBackend()
    # accounting is off on the private cluster; squeue cannot connect
    assert backend.query(["5", "6"], since=time.time()) == {}
    attempts = 1 + len(cli.RETRY_DELAYS)
    assert backend.calls == {"sacct": 1, "squeue": attempts}
    assert pauses == list(cli.RETRY_DELAYS)
    assert "Unable to contact slurm controller" in slurm_calls[-1][2]
    assert "accounting storage is disabled" in slurm_calls[0][2]


def test_recorded_refusal_texts_are_what_sbatch_prints(slurm):
    """tools/sbatch-refusals.sh --quick against a private controller that
    enforces limits: sbatch still prints what tests/test_parsing.py holds
    (MaxJobCount is left out: sbatch retries it for two minutes)."""
    from test_parsing import REFUSED
    out = subprocess.run(["bash", str(TOOLS / "sbatch-refusals.sh"),
                          "--quick"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    printed = dict(re.findall(r"^=== (\S+) \(rc 1\)\n(.*?)(?=^===|\Z)",
                              out.stdout, re.S | re.M))
    names = {"InvalidAccount": "invalid account", "InvalidQOS": "invalid QOS"}
    assert len(printed) == 4
    for name, text_ in printed.items():
        assert text_.strip() == REFUSED[names.get(name, name)]


QOS_REFUSAL = (
    "sbatch: error: QOSMaxSubmitJobPerUserLimit\n"
    "sbatch: error: Batch job submission failed: Job violates "
    "accounting/QOS policy (job submit limit, user's size and/or time "
    "limits)\n")


def test_limit_refusal_names_the_limit_and_claims_nothing(
        dataset, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "sbatch"
    fake.write_text("#!/bin/sh\nprintf '%%s' \"%s\" >&2\nexit 1\n"
                    % QOS_REFUSAL.replace('"', '\\"'))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))
    ds = dataset
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ds.path,
                          capture_output=True, text=True).stdout
    res = dl.slurm_schedule("sbatch code/job.sh out data/in.txt",
                            dataset=ds, outputs=["out"], **KW)
    err = one(res, status="error")
    msg = text(err)
    assert "QOSMaxSubmitJobPerUserLimit" in msg
    assert "MaxSubmitJobsPerUser" in msg and "no job was submitted" in msg
    store = DatasetHandle(ds).store
    assert store.jobs(("submitting", "open")) == []
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=ds.path,
                          capture_output=True, text=True).stdout == head
    assert not Path(ds.path, "out").exists()
