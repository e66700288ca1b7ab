"""tools/bench_remote.py still runs end to end: quick mode (tiny sizes, one
round), every phase, every row of the report filled.  No timing assertions."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import requires_annex

pytestmark = requires_annex

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def test_bench_remote_quick(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("git-annex's S3 remote needs SeaweedFS on port 80 (root)")
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(TOOLS / "bench_remote.py"), "--quick",
                           "--no-plot", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "remote-results.json").read_text())
    names = set(results["medians"])
    for what in ("upload", "download"):
        for who in ("boto3", "ours", "builtin"):
            assert "large %s %s" % (what, who) in names
    for name in ("zenodo curl", "zenodo get ours", "zenodo get ours noverify",
                 "large download ours noverify", "large git-annex hash",
                 "small ours copy -J8",
                 "small builtin copy -J8", "sweep upload 8 MiB x 2"):
        assert name in names
    assert results["medians"]["large upload ours"]["remote_rss"] > 0
    for name in ("large download ours", "large upload ours",
                 "zenodo get ours"):  # parsed from git-annex's --debug log
        phases = results["phases"][name]
        assert phases["remote"] > 0 and phases["wall"] >= phases["remote"]
    assert len(results["load_start"]) == len(results["load_end"]) == 3
    report = (out / "remote-results.md").read_text()
    assert "| target | figure | verdict |" in report
    assert "Machine load (1/5/15 min) at the start" in report
    # memory is compared per direction, at every size
    assert "remote memory independent of file size (upload)" in report
