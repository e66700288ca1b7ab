"""The benchmark suite (tools/bench.py) still runs: quick mode, no timing
assertions.  Needs the local Slurm cluster (tools/slurm-cluster.sh up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))

import bench  # noqa: E402

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    ok, why = bench.slurm_usable()
    if not ok:
        if os.environ.get("HPCDATA_REQUIRE_SLURM") == "1":
            pytest.fail("Slurm cluster required but unusable: %s" % why)
        pytest.skip("benchmark needs a usable Slurm cluster with accounting "
                    "(%s); run tools/slurm-cluster.sh up" % why)
    out = tmp_path_factory.mktemp("bench")
    cache = tmp_path_factory.mktemp("bench-cache")
    argv = [sys.executable, str(TOOLS / "bench.py"), "--quick", "--out",
            str(out), "--cache", str(cache)]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        argv.append("--no-plot")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, json.loads((out / "results.json").read_text()), argv


def _median(rec, key):
    x = rec[key]
    assert x["n"] >= 1 and x["median"] > 0, (key, x)
    return x["median"]


def test_quick_figures(quick_results):
    out, R, argv = quick_results
    assert R["config"]["quick"] is True
    assert {"host", "cpus", "datalad", "datalad_hpcdata", "slurm",
            "git_annex"} <= set(R["machine"])
    sizes = R["config"]["sizes"]
    assert sorted(R["sizes"], key=int) == [str(n) for n in sizes]
    for n in sizes:
        rec = R["sizes"][str(n)]
        assert rec["files_tracked"] >= n
        _median(rec["floor"], "sbatch_s")
        _median(rec["floor"], "commit_plumbing_s")
        for var in ("api", "cli"):
            for key in ("schedule_s", "finish_many_per_job_s",
                        "finish_single_s"):
                _median(rec[var], key)
        assert rec["cli"]["finish_peak_rss_mib"] > 0
        assert "peer" not in rec          # quick mode: no peer by default
    pts = R["list"]["points"]
    assert sorted(pts, key=int) == [str(k) for k in R["config"]["open_jobs"]]
    for p in pts.values():
        for key in ("api_s", "cli_s", "floor_sacct_batched_s"):
            _median(p, key)
        assert p["cli_peak_rss_mib"] > 0
    fo = R["list"]["finish_with_open_jobs"]
    assert fo["cli"]["committed"] == fo["completed"]
    assert fo["api_child"]["committed"] == fo["completed"]
    assert fo["cli"]["peak_rss_mib"] > 0
    names = [t["target"] for t in R["targets"]]
    assert any("finish many" in n for n in names)
    assert any("list open jobs" in n for n in names)
    assert any("peak memory" in n for n in names)


def test_quick_outputs(quick_results):
    out, R, argv = quick_results
    md = (out / "results.md").read_text()
    assert "## Targets" in md and "Physical floor" in md
    if "--no-plot" not in argv:
        png = (out / "results.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_jobs_left(quick_results):
    """Every job the benchmark submitted is gone from the queue."""
    out, R, argv = quick_results
    q = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True,
                       text=True).stdout.split()
    assert "hpcbench" not in q
