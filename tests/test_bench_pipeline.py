"""tools/bench_pipeline.py still runs (quick mode) and its run shows what
the full run is for: commits in data-flow order, one commit round per
stage, one Slurm query to finish, a lookup that reads only the claims
index, --affected-by reading the history once.  No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"

pytestmark = pytest.mark.slurm


def test_pipeline_benchmark_quick(slurm, tmp_path):
    proc = subprocess.run([sys.executable, str(TOOLS / "bench_pipeline.py"),
                           "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    R = json.loads((tmp_path / "pipeline.json").read_text())
    cfg = R["config"]
    jobs = cfg["stages"] * cfg["width"]
    assert R["schedule"]["jobs"] == jobs
    assert R["schedule"]["calls_per_job"]["sbatch"] == 1
    assert R["finish"]["committed"] == jobs and R["finish"]["order_ok"]
    assert R["finish"]["rounds"] == [cfg["width"]] * cfg["stages"]
    assert R["finish"]["slurm_calls"] == {"sacct": 1}
    for h in R["lookup"]["history"].values():
        assert h["statements"] == 2          # one per input, whatever N
    assert any("USING INDEX" in p for p in R["lookup"]["query_plan"])
    assert "SCAN" not in " ".join(R["lookup"]["query_plan"])
    A = R["affected_by"]
    assert A["affected"] == A["expected"] == sum(
        min(k + 1, cfg["width"]) for k in range(cfg["stages"]))
    assert A["git_calls"].get("git log") == 1 and not A["slurm_calls"]
    md = (tmp_path / "pipeline.md").read_text()
    assert "## Dependency lookup vs. history" in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:     # the plot needs the [bench] extra
        assert not (tmp_path / "pipeline.png").exists()
    else:
        assert (tmp_path / "pipeline.png").read_bytes()[:4] == b"\x89PNG"
    left = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True,
                          text=True).stdout.split()
    assert "hpcbench-pipe" not in left
