"""Pure units: Slurm output parsing, state classes, records, log patterns."""

import json

import pytest

from datalad_hpcdata.jobs.finish import array_size
from datalad_hpcdata.jobs.logs import expand_log
from datalad_hpcdata.jobs.record import (
    RecordError,
    format_message,
    normalize_record,
    parse_message,
)
from datalad_hpcdata.slurm.argv import sbatch_argv
from datalad_hpcdata.slurm.parse import (
    parse_job_ids,
    parse_key_values,
    parse_rss,
    parse_sacct,
    parse_squeue,
)
from datalad_hpcdata.slurm.states import (
    ACTIVE,
    COMPLETED,
    FAILED,
    STATE_CLASS,
    UNKNOWN,
    classify,
    normalize_state,
)

SACCT = """\
10|10|COMPLETED|0:0|2026-01-01T00:00:00|2026-01-01T00:00:01|2026-01-01T00:00:02|00:00:01|vm|
10.batch|10.batch|COMPLETED|0:0|2026-01-01T00:00:00|2026-01-01T00:00:01|2026-01-01T00:00:02|00:00:01|vm|2048K
10.extern|10.extern|COMPLETED|0:0|2026-01-01T00:00:00|2026-01-01T00:00:01|2026-01-01T00:00:02|00:00:01|vm|1M
11_1|12|COMPLETED|0:0|2026-01-01T00:00:00|2026-01-01T00:00:01|2026-01-01T00:00:02|00:00:01|vm|
11_2|11|FAILED|1:0|2026-01-01T00:00:00|2026-01-01T00:00:01|2026-01-01T00:00:03|00:00:02|vm|
11_[3-4]|11|PENDING|0:0|2026-01-01T00:00:00|Unknown|Unknown|00:00:00|None assigned|
13|13|CANCELLED by 0|0:15|2026-01-01T00:00:00|2026-01-01T00:00:01|2026-01-01T00:00:02|00:00:01|vm|
"""


def test_parse_sacct_plain_array_cancelled():
    res = parse_sacct(SACCT, ["10", "11", "13", "99"])
    assert set(res) == {"10", "11", "13"}
    plain = res["10"]
    assert plain.state == "COMPLETED" and plain.exit_code == "0:0"
    assert plain.max_rss == 2048 * 1024 and plain.nodes == "vm"
    assert plain.state_class == COMPLETED and plain.exit_status == 0
    arr = res["11"]
    assert set(arr.tasks) == {"1", "2", "[3-4]"}
    assert arr.tasks["2"].job_id == "11" and arr.tasks["1"].job_id == "12"
    assert arr.state_class == ACTIVE           # tasks 3-4 still pending
    assert res["13"].state == "CANCELLED"
    assert res["13"].state_class == FAILED
    assert res["13"].exit_status == 128 + 15


def test_array_all_terminal_is_failed_with_worst_exit():
    text = "\n".join(l for l in SACCT.splitlines() if "[3-4]" not in l)
    arr = parse_sacct(text, ["11"])["11"]
    assert arr.state_class == FAILED and arr.exit_status == 1
    assert "FAILED" in arr.state and "COMPLETED" in arr.state


def test_unsplit_array_line_is_replaced_by_tasks():
    text = ("5|5|PENDING|0:0|x|Unknown|Unknown|00:00:00|None|\n"
            "5_1|6|RUNNING|0:0|x|y|Unknown|00:00:01|vm|\n")
    res = parse_sacct(text, ["5"])
    assert list(res["5"].tasks) == ["1"]


def test_parse_squeue():
    text = "7|7|COMPLETING|t|t|t|0:01|vm\n8_2|9|RUNNING|t|t|t|0:01|vm\n"
    res = parse_squeue(text, ["7", "8"])
    assert res["7"].state == "COMPLETING" and res["7"].state_class == ACTIVE
    assert res["8"].tasks["2"].job_id == "9"


@pytest.mark.parametrize("raw,expected", [
    ("CANCELLED by 1000", "CANCELLED"), ("RUNNING+", "RUNNING"),
    ("cd", "COMPLETED"), ("PD", "PENDING"), ("OOM", "OUT_OF_MEMORY"),
])
def test_normalize_state(raw, expected):
    assert normalize_state(raw) == expected


def test_every_state_has_a_class_and_transient_ones_are_active():
    for s in ("COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING",
              "SUSPENDED", "STAGE_OUT", "PENDING", "RUNNING", "SPECIAL_EXIT",
              "REQUEUE_HOLD", "SIGNALING"):
        assert classify(s) == ACTIVE, s
    for s in ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED",
              "PREEMPTED", "BOOT_FAIL", "DEADLINE"):
        assert classify(s) == FAILED, s
    assert classify("COMPLETED") == COMPLETED
    assert classify("") == UNKNOWN
    # a state a newer Slurm might invent is never committed or closed
    assert classify("SOMETHING_NEW") == ACTIVE
    assert set(STATE_CLASS.values()) == {ACTIVE, COMPLETED, FAILED}


@pytest.mark.parametrize("out,expected", [
    ("123\n", [("123", "")]), ("123;cluster2\n", [("123", "cluster2")]),
    ("Submitted batch job 77\n", [("77", "")]),
    ("Submitted batch job 77 on cluster c\n", [("77", "c")]),
    ("warning: x\n123\n", [("123", "")]),
    ("1\n2\n", [("1", ""), ("2", "")]), ("nothing\n", []),
])
def test_parse_job_ids(out, expected):
    assert parse_job_ids(out) == expected


def test_sbatch_argv_adds_parsable_once():
    assert sbatch_argv(["sbatch", "job.sh"]) == ["sbatch", "--parsable",
                                                 "job.sh"]
    assert sbatch_argv(["/usr/bin/sbatch", "--parsable", "x"]) == [
        "/usr/bin/sbatch", "--parsable", "x"]
    assert sbatch_argv(["./submit.sh"]) == ["./submit.sh"]


def test_parse_key_values_with_spaces():
    rec = parse_key_values("JobId=5 JobName=a b Command=/p/my job.sh "
                           "WorkDir=/w StdOut=/w/slurm-5.out Power=")
    assert rec["JobName"] == "a b" and rec["Command"] == "/p/my job.sh"
    assert rec["StdOut"] == "/w/slurm-5.out" and rec["Power"] == ""


def test_parse_rss():
    assert parse_rss("1.5M") == int(1.5 * 1024 ** 2)
    assert parse_rss("") is None and parse_rss("junk") is None


def test_expand_log_patterns():
    assert expand_log("/d/slurm-%A_%a.out", "5", "3", "8", "n", "vm") == \
        "/d/slurm-5_3.out"
    assert expand_log("/d/%x-%j-%4a.log", "5", "3", "8", "n", "vm") == \
        "/d/n-8-0003.log"
    assert expand_log("/d/100%%-%N.out", "5", None, "5", None, "vm,vn") == \
        "/d/100%-vm.out"


@pytest.mark.parametrize("spec,n", [("1-4", 4), ("1-7:2", 4), ("1,3,5%2", 3),
                                    ("0-9,20%4", 11), (None, None),
                                    ("weird", None)])
def test_array_size(spec, n):
    assert array_size(spec) == n


def test_record_roundtrip():
    rec = {"cmd": "sbatch x", "outputs": ["o"], "exit": 0}
    msg = format_message("12", "OUT_OF_MEMORY", ["finish msg", None], rec)
    assert msg.startswith("[DATALAD SLURM RUN] Slurm job 12: Out of memory")
    subject, parsed = parse_message(msg)
    assert parsed == rec and "finish msg" in subject
    assert parse_message("plain commit") is None
    with pytest.raises(RecordError):
        parse_message(msg.replace('"cmd"', '"nocmd"'))


def test_peer_record_normalised():
    peer = {
        "alt_dir": "", "chain": [], "cmd": "sbatch job.sh", "dsid": "x",
        "extra_inputs": [], "inputs": ["./in.txt"],
        "outputs": ["jobA/result.txt", "jobA/slurm-123.out",
                    "jobA/slurm-job-123.env.json"],
        "pwd": "jobA", "slurm_job_id": 123,
        "slurm_outputs": ["slurm-123.out", "slurm-job-123.env.json"],
    }
    norm = normalize_record(peer)
    assert norm["from_peer"] and norm["pwd"] == "jobA"
    assert norm["outputs"] == ["result.txt"]       # relative to pwd now
    assert norm["inputs"] == ["in.txt"]
    ours = dict(peer, extension="datalad-hpcdata",
                outputs=["result.txt"], slurm_state="COMPLETED")
    assert normalize_record(ours)["outputs"] == ["result.txt"]
    assert json.dumps(norm)
