"""The pyslurm backend at its API boundary.

No pyslurm matching Debian's Slurm 22.05 exists in any registry reachable
here (PyPI has 25.11.x only), so this is tested against a stand-in module
shaped like pyslurm's documented API (``pyslurm.version()``,
``pyslurm.db.Jobs.load(pyslurm.db.JobFilter(ids=...))`` returning jobs with
``id``, ``array_id``, ``array_task_id``, ``state``, ``exit_code``, ...).
"""

import sys
import types

import pytest

import datalad_hpcdata.slurm as backend_mod
from datalad_hpcdata.slurm import pyslurm as pb
from datalad_hpcdata.slurm.states import COMPLETED, FAILED


class FakeDbJob:
    def __init__(self, id, state, exit_code=0, array_id=None,
                 array_task_id=None):
        self.id = id
        self.state = state
        self.exit_code = exit_code
        self.exit_code_signal = 0
        self.array_id = array_id
        self.array_task_id = array_task_id
        self.submit_time = 1700000000
        self.start_time = 1700000001
        self.end_time = 1700000011
        self.elapsed_time = 10
        self.nodelist = "vm"
        self.stats = types.SimpleNamespace(max_resident_memory=4096)


def fake_pyslurm(version, jobs):
    mod = types.ModuleType("pyslurm")
    mod.version = lambda: version
    db = types.ModuleType("pyslurm.db")

    class JobFilter:
        def __init__(self, ids):
            self.ids = ids

    class Jobs:
        @staticmethod
        def load(flt):
            return {j.id: j for j in jobs
                    if j.id in flt.ids or j.array_id in flt.ids}
    db.JobFilter = JobFilter
    db.Jobs = Jobs
    mod.db = db
    return mod


@pytest.fixture
def with_pyslurm(monkeypatch):
    def install(version, jobs=(), slurm="22.05.8"):
        monkeypatch.setitem(sys.modules, "pyslurm",
                            fake_pyslurm(version, list(jobs)))
        monkeypatch.setattr(pb, "_usable", None)
        monkeypatch.setattr(pb, "slurm_version", lambda: slurm)
    yield install
    pb._usable = None


def test_selected_only_when_versions_match(with_pyslurm):
    with_pyslurm("25.11.2")
    ok, why = pb.pyslurm_usable()
    assert not ok and "does not match" in why
    assert backend_mod.get_backend("auto").name == "cli"
    with pytest.raises(backend_mod.SlurmError):
        backend_mod.get_backend("pyslurm")
    with_pyslurm("22.5.3")
    assert pb.pyslurm_usable() == (True, "")
    assert backend_mod.get_backend("auto").name == "pyslurm"
    assert backend_mod.get_backend("cli").name == "cli"


def test_no_pyslurm_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyslurm", None)   # import fails
    monkeypatch.setattr(pb, "_usable", None)
    assert backend_mod.get_backend("auto").name == "cli"
    pb._usable = None


def test_query_groups_arrays_in_one_call(with_pyslurm):
    jobs = [FakeDbJob(5, "COMPLETED"),
            FakeDbJob(7, "COMPLETED", array_id=6, array_task_id=1),
            FakeDbJob(6, "FAILED", exit_code=2, array_id=6, array_task_id=2)]
    with_pyslurm("22.5.3", jobs)
    res = pb.PyslurmBackend().query(["5", "6"])
    assert res["5"].state_class == COMPLETED
    assert res["5"].max_rss == 4096 and res["5"].elapsed == "00:00:10"
    assert set(res["6"].tasks) == {"1", "2"}
    assert res["6"].state_class == FAILED and res["6"].exit_status == 2
    with pytest.raises(ValueError):
        backend_mod.get_backend("sometimes")
