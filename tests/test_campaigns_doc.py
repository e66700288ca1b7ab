"""docs/campaigns.md: every ``sh`` block runs, in order, in one shell."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

PAGE = Path(__file__).resolve().parent.parent / "docs" / "campaigns.md"


def blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)


def test_the_page_has_examples():
    found = blocks(PAGE.read_text())
    assert len(found) >= 5
    assert any("--jobs-from" in b for b in found)
    assert any("--wait" in b for b in found)
    assert any("%a" in b for b in found)
    assert any("--failed-tasks" in b for b in found)
    assert any("--affected-by-commit" in b and "-i 'params/s-%a.txt'" in b
               for b in found)
    assert any("--alt-dir" in b for b in found)


def test_campaigns_page_runs(slurm, tmp_path):
    script = "set -e\n" + "\n".join(blocks(PAGE.read_text()))
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ds = tmp_path / "campaign"
    log = subprocess.run(["git", "log", "--format=%s"], cwd=ds,
                         capture_output=True, text=True).stdout
    # p1..p5, the re-run of task 3, the sweep, the re-run of its task 1
    # and the big job committed once each;
    # the failing p13 closed, not committed; the array: 5 of 6 tasks
    assert len(re.findall(r"\[DATALAD SLURM RUN\] Slurm job \d+: "
                          r"Completed$", log, re.M)) == 9
    assert len(re.findall(r"Slurm job \d+: 5 of 6 tasks completed$", log,
                          re.M)) == 1
    for p in (1, 2, 3, 4, 5):
        assert (ds / "results" / ("p%d.txt" % p)).read_text() == \
            "parameter %d\n" % p
    assert "slurm-finish --wait exited with 1" in proc.stdout
    assert "results/p4.txt" not in log
    files = subprocess.run(["git", "ls-files", "results"], cwd=ds,
                           capture_output=True, text=True).stdout.split()
    assert ["results/task-%d.txt" % t for t in range(6)] == sorted(
        f for f in files if "task-" in f)
    # the sweep: 3 tasks, then only task 1 after its parameter was fixed
    assert (ds / "results" / "sweep-1.txt").read_text() == \
        "SETTING 1, FIXED\n"
    assert (ds / "results" / "sweep-0.txt").read_text() == "SETTING 0\n"
    assert "would resubmit" in proc.stdout and ", tasks 1)" in proc.stdout
    key = subprocess.run(["git", "annex", "lookupkey", "big/sample.bin"],
                         cwd=ds, capture_output=True, text=True).stdout
    assert re.fullmatch(r"MD5E-s20000000--[0-9a-f]{32}\.bin\n", key)
