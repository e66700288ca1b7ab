"""Helpers for tests that talk to the real Slurm cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

ACTIVE = "PD,R,CG,CF,S,RQ,RS,SO,ST,SI"


def slurm_usable() -> tuple[bool, str]:
    if not shutil.which("sbatch"):
        return False, "sbatch not on PATH"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    states = proc.stdout.split()
    if proc.returncode or not any(s.rstrip("*") in ("idle", "mixed",
                                                       "allocated")
                                  for s in states):
        return False, "no usable node: %s %s" % (proc.stdout, proc.stderr)
    return True, ""


def wait_jobs(job_ids, timeout=120.0):
    """Block until none of `job_ids` is active in Slurm (bounded)."""
    ids = {str(j) for j in job_ids}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-r", "-t", ACTIVE, "-o", "%F"],
                             capture_output=True, text=True).stdout.split()
        if not ids & set(out):
            # accounting lags the controller by up to a few seconds
            acc = subprocess.run(
                ["sacct", "-n", "-X", "-P", "-j", ",".join(sorted(ids)),
                 "-o", "JobID,State"], capture_output=True, text=True).stdout
            if not any(s in acc for s in ("PENDING", "RUNNING",
                                          "COMPLETING")) and \
                    len({l.split("|")[0].split("_")[0]
                         for l in acc.splitlines() if l}) >= len(ids):
                return
        time.sleep(0.3)
    raise TimeoutError("jobs %s still active after %.0f s" % (ids, timeout))


JOB_SH = """#!/bin/sh
#SBATCH --job-name=hpcdata-test
set -e
mkdir -p "$(dirname "$1")"
{ cat "$2" 2>/dev/null || true; echo "job ${SLURM_JOB_ID:-none} arg $1"; } > "$1"
exit "${3:-0}"
"""


def results(gen):
    return list(gen)


def one(res, **match):
    hits = [r for r in res if all(r.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, (match, res)
    return hits[0]


def text(res):
    """A result's message as a string (DataLad allows (fmt, *args))."""
    msg = res.get("message")
    if isinstance(msg, tuple):
        return msg[0] % tuple(msg[1:])
    return msg or ""


@pytest.fixture
def slurm_calls(tmp_path, monkeypatch):
    """A log of every Slurm tool call made by this test's processes."""
    shims, log = tmp_path / "shims", tmp_path / "slurm-calls.log"
    shims.mkdir()
    for tool in ("sacct", "squeue", "scontrol", "sbatch", "scancel"):
        real = shutil.which(tool)
        (shims / tool).write_text(
            '#!/bin/sh\necho "%s $*" >> "%s"\nexec "%s" "$@"\n'
            % (tool, log, real))
        (shims / tool).chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (shims, os.environ["PATH"]))

    def calls(tool=None):
        lines = log.read_text().splitlines() if log.exists() else []
        return [line.split() for line in lines
                if tool is None or line.split()[0] == tool]
    return calls
