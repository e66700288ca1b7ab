"""Contract: both backends give the same JobInfo for the same real jobs.

Real jobs run on the test cluster (plain, an array with task 0 failed and
tasks 2-3 still pending, heterogeneous jobs, a cancelled job, exit codes
>= 128 and signals).  A heterogeneous job cannot start on the single-node
test cluster (Slurm's backfill needs each component on its own node), so
the heterogeneous scenario is one held (pending) and one cancelled
before it started.  For each scenario the command-line backend queries
the real cluster (one windowed sacct call); then the pyslurm backend
queries the pyslurm stand-in (tests/standin, which follows pyslurm's API
at tags v25.11.2 and v24.11.0; both are run) fed with exactly the sacct
output the CLI backend parsed.  The JobInfo must be identical apart from
`source`, and must say what the scenario is (so both cannot be wrong the
same way unnoticed).

The stand-in exists because no pyslurm matching Slurm 22.05 can be
installed here (docs/pyslurm.md).
"""

from __future__ import annotations

import subprocess
import time

import pytest
from pyslurm_feed import records_from_sacct, unsourced
from pyslurm_standin import Standin

from datalad_hpcdata.slurm import cli
from datalad_hpcdata.slurm.pyslurm import PyslurmBackend
from datalad_hpcdata.slurm.states import ACTIVE, COMPLETED, FAILED

HET = """#!/bin/sh
#SBATCH -n1
#SBATCH hetjob
#SBATCH -n1
sleep 2
"""


def sh(*argv: str, cwd=None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, (argv, proc.stderr)
    return proc.stdout.strip()


def sbatch(cwd, *args: str) -> str:
    return sh("sbatch", "--parsable", "-o", "/dev/null", *args, cwd=cwd)


def states(ids) -> dict[str, str]:
    out = sh("sacct", "-n", "-P", "-j", ",".join(ids), "-o", "JobID,State")
    return dict(line.split("|", 1) for line in out.splitlines()
                if "." not in line.split("|", 1)[0])


def wait_for(ids, ready, what, timeout=600.0):
    """Poll accounting (bounded) until ready(states) holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = states(ids)
        if ready(st):
            return st
        time.sleep(0.5)
    raise TimeoutError("%s: not reached in %.0f s: %s" % (what, timeout, st))


def done(st, *names):
    return all(n in st and st[n].split()[0] not in
               ("PENDING", "RUNNING", "COMPLETING", "REQUEUED")
               for n in names)


@pytest.fixture(scope="module")
def jobs(slurm, tmp_path_factory):
    """Submit every scenario once; wait until each is where it should be."""
    d = tmp_path_factory.mktemp("contract")
    (d / "het.sh").write_text(HET)
    since = time.time()
    ids = {
        "plain": [sbatch(d, "--wrap", "sleep 2")],
        "array": [sbatch(d, "--hold", "--array=0-3", "--wrap",
                         'sleep 2; test "$SLURM_ARRAY_TASK_ID" != 0')],
        "het": [sbatch(d, "--hold", "het.sh"), sbatch(d, "--hold", "het.sh")],
        "cancelled": [sbatch(d, "--wrap", "sleep 300")],
        "exits": [sbatch(d, "--wrap", "exit 130"),
                  sbatch(d, "--wrap", "kill -TERM $$")],
    }
    everything = [j for group in ids.values() for j in group]
    try:
        arr = ids["array"][0]
        sh("scontrol", "release", "%s_0" % arr, "%s_1" % arr)
        held, gone = ids["het"]
        sh("scancel", gone)
        run = ids["cancelled"][0]
        wait_for([run], lambda st: st.get(run) == "RUNNING", "running")
        sh("scancel", run)
        wait_for(everything, lambda st: done(
            st, ids["plain"][0], "%s_0" % arr, "%s_1" % arr,
            "%s+0" % gone, "%s+1" % gone, run, *ids["exits"])
            and st.get("%s_[2-3]" % arr) == "PENDING"
            and st.get("%s+1" % held) == "PENDING",
            "scenarios")
        yield since, ids
    finally:
        subprocess.run(["scancel"] + everything, capture_output=True)


def check_plain(res, ids):
    info = res[ids[0]]
    assert info.state == "COMPLETED" and info.state_class == COMPLETED
    assert info.exit_code == "0:0" and info.nodes and info.elapsed


def check_array(res, ids):
    info = res[ids[0]]
    assert set(info.tasks) == {"0", "1", "[2-3]"}
    assert info.tasks["0"].state == "FAILED"
    assert info.tasks["0"].exit_code == "1:0"
    assert info.tasks["1"].state == "COMPLETED"
    assert info.tasks["[2-3]"].state == "PENDING"
    assert info.state_class == ACTIVE


def check_het(res, ids):
    for jid in ids:
        assert set(res[jid].tasks) == {"+0", "+1"}
        assert res[jid].tasks["+0"].job_id == jid
        assert int(res[jid].tasks["+1"].job_id) == int(jid) + 1
    held, gone = (res[j] for j in ids)
    assert held.state == "PENDING" and held.state_class == ACTIVE
    assert gone.state == "CANCELLED" and gone.state_class == FAILED
    assert gone.end_time and gone.tasks["+1"].elapsed == "00:00:00"


def check_cancelled(res, ids):
    info = res[ids[0]]
    assert info.state == "CANCELLED" and info.state_class == FAILED


def check_exits(res, ids):
    assert res[ids[0]].exit_code == "2:0"           # exit 130, as sacct
    assert res[ids[1]].exit_code == "0:15"          # killed by SIGTERM
    assert res[ids[1]].exit_status == 128 + 15


CHECKS = {"plain": check_plain, "array": check_array, "het": check_het,
          "cancelled": check_cancelled, "exits": check_exits}


@pytest.mark.parametrize("version", ["25.11.2", "24.11.0"])
@pytest.mark.parametrize("scenario", sorted(CHECKS))
def test_backends_agree(jobs, scenario, version, monkeypatch, tmp_path):
    since, all_ids = jobs
    ids = all_ids[scenario]
    seen = []
    real_run = cli.run

    def recording_run(argv, **kw):
        proc = real_run(argv, **kw)
        seen.append((argv, proc.stdout))
        return proc
    monkeypatch.setattr(cli, "run", recording_run)
    backend = cli.CLIBackend()
    res_cli = backend.query(ids, since=since)
    assert backend.calls == {"sacct": 1}          # all in accounting
    (argv, sacct_out), = seen
    assert "-S" in argv and "-E" in argv
    CHECKS[scenario](res_cli, ids)

    standin = Standin(monkeypatch, tmp_path)
    try:
        standin.install(version)
        standin.module().db.RECORDS[:] = records_from_sacct(sacct_out)
        backend = PyslurmBackend()
        res_py = backend.query(ids, since=since)
        assert backend.calls == {"pyslurm.db.Jobs.load": 1}
    finally:
        standin.close()
    assert set(res_py) == set(res_cli) == set(ids)
    for jid in ids:
        assert res_py[jid].source == "pyslurm"
        assert unsourced(res_py[jid]) == unsourced(res_cli[jid])
