"""The pyslurm backend against a stand-in of pyslurm 24.11.0 / 25.11.2.

No registry reachable here has a pyslurm matching Debian's Slurm 22.05
(PyPI: 25.11.x only), so these tests use the stand-in in tests/standin,
which follows pyslurm's API at tags v25.11.2 and v24.11.0 (see its
docstring).  Each of the five defects of issue 15 is a test here:

1. selection by ``pyslurm.__version__`` / metadata (no ``version()``);
2. array task 0 (``array_task_id`` None) and the pending remainder
   (``array_tasks_waiting``);
3. MaxRSS from ``stats.resident_memory``;
4. local times, as sacct prints them;
5. no import of pyslurm before the versions match, and then only in a
   child process, whose verdict is cached.

The same code against real jobs (CLI backend on the real cluster, this
backend on the stand-in fed with sacct's records of those jobs) is
tests/test_backend_contract.py.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import pytest
from pyslurm_feed import records_from_sacct, unsourced
from pyslurm_standin import Standin

from datalad_hpcdata.slurm import SlurmError, cli, get_backend, probe
from datalad_hpcdata.slurm.parse import parse_sacct
from datalad_hpcdata.slurm.pyslurm import PyslurmBackend
from datalad_hpcdata.slurm.states import ACTIVE, COMPLETED, FAILED


@pytest.fixture
def standin(monkeypatch, tmp_path):
    s = Standin(monkeypatch, tmp_path)
    yield s
    s.close()


@pytest.fixture
def debug_log():
    """Debug messages of the slurm package (DataLad's loggers do not
    propagate to pytest's caplog)."""
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("datalad.hpcdata.slurm")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield lambda: [r.getMessage() for r in records]
    logger.removeHandler(handler)
    logger.setLevel(old)


def feed(standin, text: str):
    """Load the stand-in's accounting with these sacct lines."""
    pyslurm = standin.module()
    pyslurm.db.RECORDS[:] = records_from_sacct(text)
    return pyslurm


def same_as_sacct(text: str, ids: list[str]) -> dict:
    """Query the stand-in, check against the CLI parser, return result."""
    got = PyslurmBackend().query(ids)
    want = parse_sacct(text, ids)
    assert set(got) == set(want)
    for jid in got:
        assert got[jid].source == "pyslurm"
        assert unsourced(got[jid]) == unsourced(want[jid])
    return got


T = "2026-03-01T10:00:%02d"
ARRAY = "\n".join([
    "100_0|101|FAILED|1:0|%s|%s|%s|00:00:02|vm|" % (T % 0, T % 1, T % 3),
    "100_0.batch|101.batch|FAILED|1:0|%s|%s|%s|00:00:02|vm|3276800"
    % (T % 1, T % 1, T % 3),
    "100_1|102|COMPLETED|0:0|%s|%s|%s|00:00:03|vm|" % (T % 0, T % 1, T % 4),
    "100_1.batch|102.batch|COMPLETED|0:0|%s|%s|%s|00:00:03|vm|3317760"
    % (T % 1, T % 1, T % 4),
    "100_[2-3]|100|PENDING|0:0|%s|Unknown|Unknown|00:00:00|None assigned|"
    % (T % 0),
]) + "\n"
PLAIN = "102|102|COMPLETED|0:0|%s|%s|%s|00:00:03|vm|\n" % (T % 0, T % 1,
                                                             T % 4)


# -- 1 and 5: selection ------------------------------------------------------

def test_selected_by_metadata_version_without_version_function(
        standin, debug_log):
    for version in ("25.11.2", "24.11.0"):
        standin.install(version)
        assert get_backend("auto").name == "pyslurm"
        assert get_backend("pyslurm").name == "pyslurm"
        assert get_backend("cli").name == "cli"
        pyslurm = standin.module()
        assert pyslurm.__version__ == version
        assert not hasattr(pyslurm, "version")   # removed upstream
    assert any("using the pyslurm backend: pyslurm 24.11.0 matches Slurm "
               "24.11.1" in m for m in debug_log())


def test_version_mismatch_never_imports_pyslurm(standin, debug_log):
    # a pyslurm that would kill whoever imports it
    standin.install("25.11.2", mode="abort", slurm="22.05.8")
    assert get_backend("auto").name == "cli"
    assert standin.imports() == []            # not even the probe child
    assert "pyslurm" not in sys.modules
    assert any("pyslurm not used (pyslurm 25.11.2 is built for Slurm 25.11;"
               " this host runs Slurm 22.05.8)" in m for m in debug_log())
    with pytest.raises(SlurmError, match="backend is 'pyslurm', but pyslurm "
                       "cannot be used here: pyslurm 25.11.2 is built for "
                       "Slurm 25.11"):
        get_backend("pyslurm")
    with pytest.raises(ValueError):
        get_backend("sometimes")


def test_probe_crash_stays_in_the_child_and_is_cached(standin):
    standin.install("25.11.2", mode="abort")
    assert get_backend("auto").name == "cli"     # we are still alive
    ok, why = probe.pyslurm_usable()
    assert not ok and "killed the probe process with signal 6" in why
    children = standin.imports()
    assert len(children) == 1 and children[0] != str(os.getpid())
    assert "pyslurm" not in sys.modules
    # the next command (a new process) reads the verdict from the cache
    probe.forget()
    assert get_backend("auto").name == "cli"
    assert probe.pyslurm_usable()[1].endswith("(cached)")
    assert len(standin.imports()) == 1
    # the cache is per Slurm version: an upgraded Slurm is probed again
    standin.install("25.11.2", mode="abort", slurm="25.11.4")
    assert get_backend("auto").name == "cli"
    assert len(standin.imports()) == 2


@pytest.mark.parametrize("mode,why", [
    ("raise", "importing pyslurm failed (exit 3): RuntimeError: Slurm "
              "version mismatch"),
    ("old-filter", "lacks pyslurm.db.JobFilter"),
])
def test_unusable_pyslurm_says_why(standin, mode, why):
    standin.install("25.11.2", mode=mode)
    ok, reason = probe.pyslurm_usable()
    assert not ok and why in reason
    with pytest.raises(SlurmError, match="cannot be used here"):
        get_backend("pyslurm")


def test_no_pyslurm_costs_no_slurm_call(monkeypatch):
    monkeypatch.setattr(probe, "_usable", None)
    monkeypatch.setattr(probe, "slurm_version", lambda call: pytest.fail(
        "sinfo asked although pyslurm is not installed"))
    backend = get_backend("auto")
    assert backend.name == "cli" and not backend.calls
    assert probe.pyslurm_usable() == (False, "pyslurm is not installed")
    probe.forget()


def test_slurm_version_from_the_real_sinfo(slurm):
    backend = cli.CLIBackend()
    version = probe.slurm_version(backend.call)
    assert probe.major_minor(version) == (22, 5)
    assert backend.calls == {"sinfo": 1}


# -- 2: arrays, task 0 and the pending remainder -----------------------------

def test_array_task0_failed_and_pending_remainder(standin):
    standin.install("25.11.2")
    pyslurm = feed(standin, ARRAY)
    task0 = pyslurm.db.Jobs.load(pyslurm.db.JobFilter(ids=[100])).get(
        ("hpcdata", 101))
    assert task0.array_id == 100 and task0.array_task_id is None
    rest = pyslurm.db.Jobs.load().get(("hpcdata", 100))
    assert rest.array_task_id is None and rest.array_tasks_waiting == "0xC"
    info = same_as_sacct(ARRAY, ["100"])["100"]
    assert set(info.tasks) == {"0", "1", "[2-3]"}
    assert info.tasks["0"].state == "FAILED" and info.tasks["0"].job_id == \
        "101"
    assert info.state_class == ACTIVE            # not COMPLETED
    # the remainder ran; the array failed (task 0), with combined details
    done = ARRAY.replace(
        "100_[2-3]|100|PENDING|0:0|%s|Unknown|Unknown|00:00:00|None "
        "assigned|" % (T % 0),
        "100_2|103|COMPLETED|0:0|%s|%s|%s|00:00:01|vm|\n"
        "100_3|100|COMPLETED|0:0|%s|%s|%s|00:00:01|vn|"
        % (T % 0, T % 5, T % 6, T % 0, T % 5, T % 9))
    feed(standin, done)
    info = same_as_sacct(done, ["100"])["100"]
    assert info.state_class == FAILED and info.exit_status == 1
    assert (info.start_time, info.end_time) == (T % 1, T % 9)
    assert info.nodes == "vm,vn" and info.max_rss == 3317760


def test_throttled_and_stepped_remainders_are_named_as_sacct(standin):
    standin.install("24.11.0")
    text = ("7_[1-21:4%%2]|7|PENDING|0:0|%s|Unknown|Unknown|00:00:00|"
            "None assigned|\n" % (T % 0))
    feed(standin, text)
    assert list(same_as_sacct(text, ["7"])["7"].tasks) == ["[1-21:4%2]"]


# -- 3: MaxRSS ---------------------------------------------------------------

def test_max_rss_from_resident_memory(standin):
    standin.install("25.11.2")
    pyslurm = feed(standin, ARRAY)
    job = pyslurm.db.Jobs.load().get(("hpcdata", 102))
    assert not hasattr(job.stats, "max_resident_memory")
    assert job.stats.resident_memory == 3317760
    info = same_as_sacct(ARRAY, ["100"])["100"]
    assert info.tasks["1"].max_rss == 3317760
    assert info.tasks["0"].max_rss == 3276800


# -- 4: local times ----------------------------------------------------------

@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/New_York"])
def test_times_are_local_like_sacct(standin, monkeypatch, zone):
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        standin.install("25.11.2")
        pyslurm = standin.module()
        epoch = 1767225600               # 2026-01-01T00:00:00 UTC
        pyslurm.db.RECORDS[:] = [dict(
            records_from_sacct(PLAIN)[0], submit=epoch, start=epoch + 1,
            end=epoch + 61)]
        info = PyslurmBackend().query(["102"])["102"]
        local = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))
        assert local != "2026-01-01T00:00:00"
        assert info.submit_time == local
        assert info.end_time == time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.localtime(epoch + 61))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# -- the smaller defects -----------------------------------------------------

@pytest.mark.parametrize("version", ["25.11.2", "24.11.0"])
def test_heterogeneous_job_keeps_every_component(standin, version):
    standin.install(version)
    text = ("200+0|200|COMPLETED|0:0|%s|%s|%s|00:00:02|vm|\n"
            "200+0.batch|200.batch|COMPLETED|0:0|%s|%s|%s|00:00:02|vm|"
            "1048576\n"
            "200+1|201|FAILED|3:0|%s|%s|%s|00:00:03|vn|\n"
            "202|202|COMPLETED|0:0|%s|%s|%s|00:00:01|vm|\n"
            % ((T % 0, T % 1, T % 3) * 2 + (T % 0, T % 1, T % 4)
               + (T % 0, T % 1, T % 2)))
    feed(standin, text)
    res = same_as_sacct(text, ["200", "202"])
    assert set(res["200"].tasks) == {"+0", "+1"}
    assert res["200"].state_class == FAILED and res["200"].exit_status == 3
    assert res["200"].nodes == "vm,vn" and not res["202"].tasks


def test_exit_codes_and_signals_as_sacct(standin):
    standin.install("25.11.2")
    text = "".join("%d|%d|FAILED|%s|%s|%s|%s|00:00:01|vm|\n"
                   % (i, i, code, T % 0, T % 0, T % 1)
                   for i, code in ((300, "2:0"), (301, "0:15"),
                                   (302, "0:9"), (303, "127:0")))
    pyslurm = feed(standin, text)
    pyslurm.db.RECORDS[0]["exitcode"] = 130 << 8   # the job ran `exit 130`
    res = same_as_sacct(text, ["300", "301", "302", "303"])
    assert [res[j].exit_status for j in ("300", "301", "302", "303")] == \
        [2, 128 + 15, 128 + 9, 127]


def test_query_window_and_one_load(standin, monkeypatch):
    standin.install("25.11.2")
    pyslurm = feed(standin, ARRAY)
    since = time.mktime(time.strptime(T % 0, "%Y-%m-%dT%H:%M:%S"))
    old = dict(records_from_sacct(PLAIN)[0], jobid=90, end=int(since) -
               2 * cli.SINCE_MARGIN, submit=int(since) - 3 * cli.SINCE_MARGIN)
    pyslurm.db.RECORDS.append(old)
    asked = []
    monkeypatch.setattr(PyslurmBackend, "_query_controller",
                        lambda self, ids: asked.append(ids) or {})
    backend = PyslurmBackend()
    res = backend.query(["100", "90"], since=since)
    flt = pyslurm.db.LOADS[-1]
    assert sorted(flt.ids) == [90, 100]
    assert flt.start_time == int(since) - cli.SINCE_MARGIN
    assert abs(flt.end_time - time.time()) < 3600
    # outside the window: not from accounting, asked of the controller
    assert "90" not in res and asked == [["90"]]
    assert res["100"].source == "pyslurm"
    assert backend.calls["pyslurm.db.Jobs.load"] == 1


def test_busy_slurmdbd_is_retried(standin, monkeypatch):
    standin.install("25.11.2")
    pyslurm = feed(standin, ARRAY)
    pauses = []
    monkeypatch.setattr(cli, "pause", pauses.append)
    real = pyslurm.db.Jobs.load
    answers = [pyslurm.RPCError(msg="Socket timed out on send/recv "
                                    "operation")]

    def load(flt=None, db_connection=None):
        if answers:
            raise answers.pop()
        return real(flt)
    monkeypatch.setattr(pyslurm.db.Jobs, "load", staticmethod(load))
    backend = PyslurmBackend()
    assert backend.query(["100"])["100"].source == "pyslurm"
    assert backend.calls["pyslurm.db.Jobs.load"] == 2
    assert pauses == [cli.RETRY_DELAYS[0]]


def test_cancel_continues_past_failures(standin):
    standin.install("25.11.2")
    pyslurm = standin.module()
    pyslurm.core.CANCEL_FAILS[5] = "Invalid job id specified"
    failed = PyslurmBackend().cancel(["5", "6", "7"])
    assert failed == {"5": "Invalid job id specified"}
    assert pyslurm.core.CANCELLED == [6, 7]


def test_fresh_job_is_asked_of_the_controller(standin, slurm, tmp_path):
    """A job accounting has not recorded yet comes from one squeue call."""
    standin.install("25.11.2")
    standin.module().db.RECORDS[:] = []
    proc = cli.run(["sbatch", "--parsable", "--hold", "-o", "/dev/null",
                    "--wrap", "true"], cwd=str(tmp_path))
    jid = proc.stdout.strip()
    try:
        backend = PyslurmBackend()
        info = backend.query([jid])[jid]
        assert info.state == "PENDING" and info.source == "squeue"
        assert backend.calls == {"pyslurm.db.Jobs.load": 1, "squeue": 1}
    finally:
        cli.run(["scancel", jid])


def test_all_states_sorted(standin):
    standin.install("25.11.2")
    text = "".join("%d|%d|%s|0:0|%s|%s|%s|00:00:01|vm|\n"
                   % (400 + i, 400 + i, s, T % 0, T % 0, T % 1)
                   for i, s in enumerate(("COMPLETED", "OUT_OF_MEMORY",
                                          "REQUEUED", "CANCELLED by 0")))
    feed(standin, text)
    res = same_as_sacct(text, ["400", "401", "402", "403"])
    assert [res[str(400 + i)].state_class for i in range(4)] == \
        [COMPLETED, FAILED, ACTIVE, FAILED]
