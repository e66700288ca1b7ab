"""Helpers for tests that talk to the real Slurm cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from datalad_hpcdata.dataset.handle import DatasetHandle

ACTIVE = "PD,R,CG,CF,S,RQ,RS,SO,ST,SI"
USABLE = ("idle", "mixed", "allocated", "completing", "planned")
CLUSTER_SH = Path(__file__).resolve().parents[1] / "tools" / "slurm-cluster.sh"
# partitions of `tools/slurm-cluster.sh up --nodes N` that real-state tests
# use: preemptable (requeue / cancel), preempting, and a 1-minute MaxTime
STATE_PARTITIONS = {"low", "lowcancel", "high", "short"}
STATE_NODES = 3


def slurm_usable() -> tuple[bool, str]:
    if not shutil.which("sbatch"):
        return False, "sbatch not on PATH"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    states = proc.stdout.split()
    if proc.returncode or not any(s.rstrip("*~#") in USABLE
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

# real-state jobs: $1 output, $2 seconds to sleep first; a requeued run
# (SLURM_RESTART_COUNT >= 1) does not sleep; a multi-node job lists its
# nodes (one srun task per node)
STATE_SH = """#!/bin/sh
set -e
mkdir -p "$(dirname "$1")"
if [ "${SLURM_RESTART_COUNT:-0}" -eq 0 ]; then sleep "${2:-0}"; fi
if [ "${SLURM_JOB_NUM_NODES:-1}" -gt 1 ]; then
    srun --ntasks-per-node=1 hostname | sort > "$1"
else
    echo "job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0} on $(hostname)" > "$1"
fi
"""


# keyword arguments of a Python API call whose results a test inspects
KW = dict(result_renderer="disabled", return_type="list", on_failure="ignore")


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


def store_snapshot(ds):
    """(row, status, job id) of every job in the job store, and its claims
    (path, row), sorted: equal before and after a refused command."""
    store = DatasetHandle(ds).store
    rows = [(j.row, j.status, j.job_id) for j in store.jobs(
        ("submitting", "open", "committed", "abandoned", "rejected"))]
    claims = store.con.execute("SELECT path, row FROM claims").fetchall()
    return rows, sorted(map(tuple, claims))


def sh(*argv, timeout: float = 120, check: bool = True) -> str:
    """stdout of a Slurm tool (talks to the cluster SLURM_CONF names)."""
    proc = subprocess.run(argv, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv),
                                                   proc.returncode,
                                                   proc.stderr))
    return proc.stdout


def cluster_layout() -> dict:
    """Nodes (and their states) and partitions of the current cluster."""
    nodes = {}
    for line in sh("sinfo", "-h", "-N", "-o", "%N %T").splitlines():
        name, state = line.split()
        nodes[name] = state.rstrip("*~#")
    parts = {p.rstrip("*") for p in sh("sinfo", "-h", "-o", "%P").split()}
    return {"nodes": sorted(nodes), "node_states": nodes,
            "partitions": parts,
            "cluster": sh("scontrol", "show", "config").split(
                "ClusterName", 1)[1].split("=", 1)[1].split()[0]}


def multinode_usable() -> tuple[bool, str]:
    """Is this the multi-node test cluster (`up --nodes 3`)?"""
    try:
        lay = cluster_layout()
    except (OSError, RuntimeError, subprocess.TimeoutExpired,
            IndexError) as e:
        return False, str(e)
    if len(lay["nodes"]) < STATE_NODES:
        return False, "%d node(s), need %d" % (len(lay["nodes"]),
                                               STATE_NODES)
    if not STATE_PARTITIONS <= lay["partitions"]:
        return False, "partitions %s missing" % sorted(
            STATE_PARTITIONS - lay["partitions"])
    bad = {n: s for n, s in lay["node_states"].items() if s not in USABLE}
    if bad:
        return False, "nodes not usable: %s" % bad
    return True, ""


def cluster_sh(*args: str) -> str:
    """tools/slurm-cluster.sh on the instance SLURM_CONF points at."""
    proc = subprocess.run(["bash", str(CLUSTER_SH), *args],
                          capture_output=True, text=True, timeout=180,
                          env=dict(os.environ))
    if proc.returncode:
        raise RuntimeError("slurm-cluster.sh %s failed: %s"
                           % (" ".join(args), proc.stderr))
    return proc.stderr


def controller_job(job_id) -> dict:
    """`scontrol show job` of one job as a dict ({} once purged)."""
    out = sh("scontrol", "show", "job", "-o", str(job_id), check=False)
    rec = {}
    for tok in out.split():
        key, sep, val = tok.partition("=")
        if sep and key not in rec:
            rec[key] = val
    return rec


def sacct_state(job_id) -> str:
    out = sh("sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "State")
    lines = [l for l in out.splitlines() if l.strip()]
    return lines[-1].split()[0] if lines else ""


def wait_until(pred, timeout: float, what: str, interval: float = 0.5):
    """Poll `pred` until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError("%s: not within %.0f s" % (what, timeout))
        time.sleep(interval)


def expand_nodes(nodelist: str) -> list[str]:
    """node[1-2],node5 -> [node1, node2, node5] (Slurm's own expansion)."""
    return sh("scontrol", "show", "hostnames", nodelist).split()


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
