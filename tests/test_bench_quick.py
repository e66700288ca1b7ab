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
            str(out), "--cache", str(cache), "--record-jobs",
            str(out / "jobs.txt")]
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
        for key in ("sbatch_s", "commit_plumbing_s", "sacct_1_s",
                    "annex_add_4_s", "annex_add_80_s"):
            _median(rec["floor"], key)
        for var in ("api", "cli"):
            for key in ("schedule_s", "finish_many_per_job_s",
                        "finish_single_s", "list_batch_s"):
                _median(rec[var], key)
        # the warm-up finish committed one job; its cost is kept apart
        assert rec["api"]["first_finish_s"] > 0
        assert rec["index_after"]["index_bytes"] > 0
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
    """Every job the benchmark submitted is gone from the queue (its own
    ids only: other users' benchmark jobs may share the cluster)."""
    out, R, argv = quick_results
    ours = (out / "jobs.txt").read_text().split()
    assert ours, "the benchmark recorded no submitted job"
    q = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "--jobs",
                        ",".join(ours)], capture_output=True, text=True)
    # squeue --jobs fails with "Invalid job id" once all are purged
    left = set(q.stdout.split()) & set(ours) if q.returncode == 0 else set()
    assert not left, sorted(left)


def test_flat_targets_from_figures():
    """The issue-16 targets (1M files vs 10k) are computed from a run's
    figures; checked on made-up figures, no cluster needed."""
    def rec(sched, many, single, listing):
        return {k: {"median": v} for k, v in (
            ("schedule_s", sched), ("finish_many_per_job_s", many),
            ("finish_single_s", single), ("list_batch_s", listing))}
    S = {"10000": {"api": rec(0.015, 0.008, 0.15, 0.07),
                   "cli": rec(0.17, 0.05, 0.30, 0.25)},
         "1000000": {"api": rec(0.016, 0.009, 0.25, 0.07),
                     "cli": rec(0.18, 0.08, 0.31, 0.26)}}
    t = []

    def add(name, value, limit, ok, unit="s"):
        t.append((name, round(value, 3), bool(ok)))
    bench.flat_targets({"sizes": S, "config": {"sizes": [10000, 1000000]}},
                       lambda r, k: r[k]["median"] if r else None, add)
    got = {name: (value, ok) for name, value, ok in t}
    assert got["finish many (API), per job at 1000000 files <= 0.010 s"] \
        == (0.009, True)
    assert got["finish one at a time (API) at 1000000 files <= 0.2 s"] \
        == (0.25, False)
    assert got["finish one at a time (API), 1000000-file / 10000-file "
               "ratio <= 1.3"] == (1.667, False)
    assert got["finish many (CLI), 1000000-file / 10000-file ratio <= 1.3"] \
        == (1.6, False)
    assert got["list open jobs (API), 1000000-file / 10000-file ratio "
               "<= 1.3"] == (1.0, True)
    assert len(t) == 2 + 2 * 4
