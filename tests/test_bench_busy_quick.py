"""The busy-cluster benchmark (tools/bench_busy.py) still runs: quick mode
on two private 1-node instances of tools/slurm-cluster.sh (root, network
namespaces), no timing assertions.  What it asserts is behaviour: the
history really is in the busy cluster's accounting, its other users' jobs
are in its queue, and our commands send the same RPCs to slurmctld and
slurmdbd for more jobs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from slurmtest import multinode_usable

TOOLS = Path(__file__).resolve().parent.parent / "tools"

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def busy_results(tmp_path_factory):
    ok, why = multinode_usable()
    if not ok or os.geteuid() != 0:
        if os.environ.get("HPCDATA_REQUIRE_MULTINODE") == "1":
            pytest.fail("the busy benchmark needs root and namespaces (the "
                        "multi-node cluster is unusable: %s)" % why)
        pytest.skip("needs root and the multi-node cluster (%s)" % why)
    # instance names of their own per suite (another suite on another
    # instance may run this test at the same time)
    conf = os.environ.get("SLURM_CONF", "")
    base = re.sub(r"^/etc/slurm-([a-z0-9]+)/slurm\.conf$", r"\1",
                  conf) if conf.startswith("/etc/slurm-") else "q"
    names = ["%s%s" % (base[:7], k) for k in "eb"]
    out = tmp_path_factory.mktemp("busy")
    cache = tmp_path_factory.mktemp("busy-cache")
    argv = [sys.executable, str(TOOLS / "bench_busy.py"), "--quick",
            "--instances", ",".join(names), "--out", str(out), "--cache",
            str(cache)]
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, json.loads((out / "busy.json").read_text()), names


def test_busy_cluster_is_busy(busy_results):
    out, R, _ = busy_results
    cfg = R["config"]
    hist = R["fill"]["history"]
    assert hist["job_rows"] >= cfg["history_jobs"]
    assert hist["distinct_users"] >= cfg["history_users"]
    busy = R["phases"]["busy"]["queue"]
    empty = R["phases"]["empty"]["queue"]
    assert busy["jobs_in_slurmctld"] >= cfg["pending"] + cfg["open_jobs"]
    assert empty["jobs_in_slurmctld"] < busy["jobs_in_slurmctld"]
    assert busy["users_in_slurmctld"] > empty["users_in_slurmctld"]


def test_figures_and_rpcs(busy_results):
    out, R, _ = busy_results
    for phase in ("empty", "busy"):
        P = R["phases"][phase]
        for var in ("api", "cli"):
            assert P["work"][var]["schedule_s"]["n"] == cfg_batch(R) * (
                R["config"]["rounds_" + var])
            assert P["work"][var]["finish_batch"]["jobs"] == cfg_batch(R)
            # one sacct: the same slurmdbd RPCs for 2 and for 5 jobs
            small = P["work"][var]["finish_small"]["rpc"]
            big = P["work"][var]["finish_batch"]["rpc"]
            assert small == big and big["slurmdbd"]["DBD_GET_JOBS_COND"] == 1
            assert big["slurmctld"] == {}
            nxt = P["work"][var]["schedule_rpc"]["next"]["slurmctld"]
            assert nxt["REQUEST_SUBMIT_BATCH_JOB"] == 1
        L = P["list"]
        assert L["api_s"]["n"] >= 1 and L["floor_sacct_s"]["n"] >= 1
        assert L["api_rpc"] == L["api_rpc_tenth"]
    met = {t["target"]: t["met"] for t in R["targets"]}
    assert all(v for k, v in met.items() if k.startswith("RPCs constant"))
    md = (out / "busy.md").read_text()
    assert "## Empty vs busy" in md and "## Slurm RPCs per command" in md


def cfg_batch(R):
    return R["config"]["batch"]


def test_instances_removed(busy_results):
    """down --purge removed both instances (config, namespaces)."""
    for name in busy_results[2]:
        assert not Path("/etc/slurm-%s" % name).exists()
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True,
                            text=True).stdout
        assert "hpc-%s-" % name not in ns
