"""tools/bench_campaign.py's array and alt-dir phases still run (quick
mode: a 20-task array, an 8 MiB output); no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"

pytestmark = pytest.mark.slurm


def test_array_and_altdir_phases_quick(slurm, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(TOOLS / "bench_campaign.py"), "--quick",
         "--phases", "array,altdir", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    res = json.loads((tmp_path / "campaign.json").read_text())
    a, d = res["array"], res["altdir"]
    assert a["tasks"] == 20 and len(a["failed_tasks"]) == 3
    assert a["finish_failed"] == a["failed_tasks"]
    assert a["committed_outputs"] == 17
    assert a["outputs_after_rerun"] == 20
    assert a["reschedule_job"]
    assert d["fsck_ok"] and d["key"].startswith("MD5E-s%d--" % d["bytes"])
    assert set(d["baselines"]) == {"cp+md5sum", "cp+sha256sum"}
    assert all(v is not None for v in d["annex_ways"].values())
    assert len(res["machine"]["load_end"]) == 3
    md = (tmp_path / "campaign.md").read_text()
    assert "20-task array" in md and "--alt-dir" in md
