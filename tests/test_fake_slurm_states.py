"""What a real cluster cannot produce on demand, through fake Slurm tools.

FAKE SLURM: these tests put shims for sbatch/sacct/squeue/scontrol/scancel
first on PATH.  Everything Slurm can produce on demand is tested for real:
NODE_FAIL, PREEMPTED (requeue and cancel), REQUEUED, SUSPENDED, DEADLINE,
TIMEOUT, other-node and 2-node jobs in test_real_states.py (multi-node
cluster), the rest in test_workflow.py.  Left here, and why:

* OUT_OF_MEMORY: Slurm sets it only from a cgroup OOM event (task/cgroup
  with memory enforcement); the test cluster runs without cgroups (they are
  not available in every CI sandbox), and jobacct_gather's OverMemoryKill
  ends such a job FAILED 0:9 instead (tried on this cluster);
* COMPLETING as the state accounting reports: it lasts only while the
  epilog runs, so it cannot be held at will for a test;
* a job purged from accounting: slurmdbd purges only by age
  (PurgeJobAfter, in months);
* a submission printing two job ids: real sbatch submits exactly one.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import datalad.api as dl
import pytest
from slurmtest import KW, one, text

SHIM = r'''#!/usr/bin/env python3
import json, os, sys
state_dir = os.environ["FAKE_SLURM_DIR"]
tool = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.path.join(state_dir, "calls.log"), "a") as f:
    f.write(json.dumps([tool] + args) + "\n")
states_file = os.path.join(state_dir, "states.json")
states = json.load(open(states_file)) if os.path.exists(states_file) else {}
if tool == "sbatch":
    mode = open(os.path.join(state_dir, "sbatch_mode")).read().strip() \
        if os.path.exists(os.path.join(state_dir, "sbatch_mode")) else "ok"
    counter = os.path.join(state_dir, "counter")
    n = int(open(counter).read()) if os.path.exists(counter) else 1000
    ids = [n + 1, n + 2] if mode == "two" else [n + 1]
    open(counter, "w").write(str(ids[-1]))
    for i in ids:
        states[str(i)] = "PENDING"
        print(i if "--parsable" in args else "Submitted batch job %d" % i)
    json.dump(states, open(states_file, "w"))
elif tool == "sacct":
    ids = args[args.index("-j") + 1].split(",")
    for i in ids:
        st = states.get(i)
        if st and st != "PURGED":
            code = "0:0" if st == "COMPLETED" else "1:0"
            print("|".join([i, i, st, code, "t", "t", "t", "00:00:01", "vm",
                            ""]))
elif tool == "scontrol":
    if args[:2] == ["show", "config"]:
        print("ClusterName = fake")
    elif args[:2] == ["show", "job"]:
        i = args[-1]
        print("JobId=%s JobName=fake WorkDir=%s StdOut=%s/slurm-%s.out"
              % (i, os.getcwd(), os.getcwd(), i))
elif tool in ("squeue", "scancel"):
    pass
'''


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    state = tmp_path / "fakestate"
    state.mkdir()
    for tool in ("sbatch", "sacct", "squeue", "scontrol", "scancel"):
        p = bindir / tool
        p.write_text(SHIM)
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))

    class Fake:
        dir = state

        def set(self, **states):
            path = state / "states.json"
            cur = json.loads(path.read_text())
            cur.update({k.lstrip("j"): v for k, v in states.items()})
            path.write_text(json.dumps(cur))

        def mode(self, m):
            (state / "sbatch_mode").write_text(m)

        def calls(self, tool):
            return [json.loads(l) for l in
                    (state / "calls.log").read_text().splitlines()
                    if json.loads(l)[0] == tool]
    return Fake()


def _schedule(ds, out):
    res = dl.slurm_schedule("sbatch job.sh", dataset=ds,
                            outputs=[out], **KW)
    return one(res, status="ok")["slurm_job_id"]


def test_transient_and_failed_states(dataset, fake_slurm):
    ds = dataset
    names = ["COMPLETING", "OUT_OF_MEMORY"]
    ids = {n: _schedule(ds, "o_%s" % n) for n in names}
    fake_slurm.set(**{"j" + i: n for n, i in ids.items()})
    for n, i in ids.items():
        Path(ds.path, "o_%s" % n).write_text(n)
    before = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ds.path,
                            capture_output=True, text=True).stdout
    # D4: closing failed jobs must never close a job that is completing
    res = dl.slurm_finish(dataset=ds, close_failed_jobs=True, **KW)
    r = one(res, slurm_job_id=ids["COMPLETING"])
    assert r["status"] == "notneeded" and r["state"] == "COMPLETING"
    r = one(res, slurm_job_id=ids["OUT_OF_MEMORY"])
    assert r["status"] == "ok" and r["state"] == "OUT_OF_MEMORY"
    assert "closed" in text(r)
    # one batched sacct call for both jobs
    sacct = fake_slurm.calls("sacct")
    assert len(sacct) == 1 and len(sacct[0][sacct[0].index("-j") + 1]
                                   .split(",")) == 2
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=ds.path,
                          capture_output=True, text=True).stdout == before
    # the completing job completes and is committed
    fake_slurm.set(**{"j" + ids["COMPLETING"]: "COMPLETED"})
    res = dl.slurm_finish(dataset=ds, **KW)
    assert one(res, slurm_job_id=ids["COMPLETING"])["status"] == "ok"


def test_purged_job_reported_alone(dataset, fake_slurm):
    ds = dataset
    a = _schedule(ds, "a.txt")
    b = _schedule(ds, "b.txt")
    fake_slurm.set(**{"j" + a: "PURGED", "j" + b: "COMPLETED"})
    from datalad_hpcdata.dataset.handle import DatasetHandle
    store = DatasetHandle(ds).store
    store.con.execute("UPDATE jobs SET submit_time = 1 WHERE job_id = ?", (a,))
    Path(ds.path, "b.txt").write_text("b")
    res = dl.slurm_finish(dataset=ds, **KW)
    assert one(res, slurm_job_id=b)["status"] == "ok"
    r = one(res, slurm_job_id=a)
    assert r["status"] == "impossible" and "unknown" in text(r)


def test_wrapper_submitting_two_jobs_is_refused_and_cancelled(dataset,
                                                               fake_slurm):
    ds = dataset
    fake_slurm.mode("two")
    res = dl.slurm_schedule("sbatch job.sh", dataset=ds, outputs=["w.txt"],
                            **KW)
    r = one(res, action="slurm-schedule")
    assert r["status"] == "error" and "2 jobs" in text(r)
    assert fake_slurm.calls("scancel")[-1][1:] == ["1001", "1002"]
    from datalad_hpcdata.dataset.handle import DatasetHandle
    assert DatasetHandle(ds).store.jobs() == []
