"""Pure units: Slurm output parsing, state classes, records, log patterns."""

import json
import subprocess
import time

import pytest

from datalad_hpcdata.jobs.finish import array_size
from datalad_hpcdata.jobs.logs import expand_log
from datalad_hpcdata.jobs.record import (
    RecordError,
    format_message,
    normalize_record,
    parse_message,
)
from datalad_hpcdata.slurm import SubmissionError
from datalad_hpcdata.slurm.argv import sbatch_argv
from datalad_hpcdata.slurm.cli import refused, sacct_argv
from datalad_hpcdata.slurm.parse import (
    exit_code_from_status,
    format_elapsed,
    format_task_mask,
    format_time,
    parse_job_ids,
    parse_key_values,
    parse_rss,
    parse_sacct,
    parse_sbatch_refusal,
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


# squeue -h -a -r -t all --jobs=... -O SQUEUE_FORMAT on the test cluster
# (Slurm 22.05.8): an array whose tasks exited 1..3, a held throttled array
# and a running job cancelled (SIGTERM from scancel)
SQUEUE = """\
2222_1|2236|FAILED|256|2026-12-01T22:10:27|2026-12-01T22:10:28|2026-12-01T22:10:29|0:01|vm|
2222_2|2237|FAILED|512|2026-12-01T22:10:27|2026-12-01T22:10:28|2026-12-01T22:10:29|0:01|vm|
2222_3|2222|FAILED|768|2026-12-01T22:10:27|2026-12-01T22:10:28|2026-12-01T22:10:29|0:01|vm|
2223_0|2223|PENDING|0|2026-12-01T22:10:27|N/A|N/A|0:00||
2223_1|2223|PENDING|0|2026-12-01T22:10:27|N/A|N/A|0:00||
669|669|CANCELLED|15|2026-12-01T21:57:31|2026-12-01T21:57:31|2026-12-01T21:57:34|0:03|vm|
"""


def test_parse_squeue():
    res = parse_squeue(SQUEUE, ["2222", "2223", "669", "1"])
    assert set(res) == {"2222", "2223", "669"}
    arr = res["2222"]
    assert set(arr.tasks) == {"1", "2", "3"}
    assert arr.tasks["3"].job_id == "2222" and arr.tasks["1"].job_id == "2236"
    assert [arr.tasks[t].exit_code for t in "123"] == ["1:0", "2:0", "3:0"]
    assert arr.state_class == FAILED and arr.exit_status == 3
    held = res["2223"]
    assert held.state_class == ACTIVE and held.tasks["0"].start_time is None
    assert held.tasks["0"].nodes is None
    assert res["669"].exit_code == "0:15" and res["669"].exit_status == 143
    assert res["669"].source == "squeue"


@pytest.mark.parametrize("status,expected", [
    (0, "0:0"), (256, "1:0"), (768, "3:0"), (15, "0:15"), (9, "0:9"),
    # `exit 130`: scontrol says 130:0, sacct 2:0 (it takes 128 off); we
    # follow sacct, so every source reads the same
    (33280, "2:0"), ("", None), ("junk", None), (0xfffffffe, None),
])
def test_exit_code_from_status_as_sacct(status, expected):
    assert exit_code_from_status(status) == expected


@pytest.mark.parametrize("mask,throttle,expected", [
    ("0xC", None, "2-3"), ("0x1", None, "0"), ("0x2A", 2, "1,3,5%2"),
    ("0xF0F", None, "0-3,8-11"),
    # a long regular series: sacct's step form
    ("0x%X" % sum(1 << t for t in range(1, 22, 4)), None, "1-21:4"),
    ("0x%X" % sum(1 << t for t in range(1, 12, 2)), None, "1,3,5,7,9,11"),
    ("3-4", None, "3-4"),                    # already a range: unchanged
])
def test_format_task_mask(mask, throttle, expected):
    assert format_task_mask(mask, throttle) == expected


def test_format_elapsed_and_time():
    assert format_elapsed(None) == "00:00:00"
    assert format_elapsed(93784) == "1-02:03:04"
    assert format_time(0) is None
    assert format_time(86400 * 365) == time.strftime(
        "%Y-%m-%dT%H:%M:%S", time.localtime(86400 * 365))


def test_sacct_argv_window():
    since = time.mktime((2026, 3, 1, 12, 0, 0, 0, 0, -1))
    argv = sacct_argv(["5", "6"], since)
    assert argv[argv.index("-j") + 1] == "5,6"
    assert "--noconvert" in argv
    assert argv[argv.index("-S") + 1] == "2026-02-28T12:00:00"
    assert argv[argv.index("-E") + 1] == "now"
    assert "-S" not in sacct_argv(["5"], None)


# what sbatch (Slurm 22.05.8) printed for each refusal: recorded with
# tools/sbatch-refusals.sh against a private controller enforcing limits
REFUSED = {
    "QOSMaxSubmitJobPerUserLimit": (
        "sbatch: error: QOSMaxSubmitJobPerUserLimit\n"
        "sbatch: error: Batch job submission failed: Job violates "
        "accounting/QOS policy (job submit limit, user's size and/or time "
        "limits)"),
    "AssocMaxSubmitJobLimit": (
        "sbatch: error: AssocMaxSubmitJobLimit\n"
        "sbatch: error: Batch job submission failed: Job violates "
        "accounting/QOS policy (job submit limit, user's size and/or time "
        "limits)"),
    "invalid account": (
        "sbatch: error: Batch job submission failed: Invalid account or "
        "account/partition combination specified"),
    "invalid QOS": (
        "sbatch: error: Batch job submission failed: Invalid qos "
        "specification"),
    "MaxJobCount": (
        "sbatch: error: Slurm temporarily unable to accept job, sleeping "
        "and retrying\n"
        "sbatch: error: Batch job submission failed: Resource temporarily "
        "unavailable"),
}


@pytest.mark.parametrize("limit", sorted(REFUSED))
def test_sbatch_refusals_name_the_limit(limit):
    found = parse_sbatch_refusal(REFUSED[limit])
    assert found and found[0] == limit
    proc = subprocess.CompletedProcess(["sbatch"], 1, "", REFUSED[limit])
    err = refused(["sbatch", "--parsable", "job.sh"], proc)
    assert isinstance(err, SubmissionError) and err.limit == limit
    assert limit in str(err) and "no job was submitted" in str(err)
    assert REFUSED[limit].splitlines()[-1] in str(err)   # Slurm's words


def test_other_sbatch_errors_are_passed_on():
    text = "sbatch: error: invalid partition specified: nosuch"
    assert parse_sbatch_refusal(text) is None
    err = refused(["sbatch"], subprocess.CompletedProcess(["sbatch"], 1, "",
                                                          text))
    assert err.limit == "" and text in str(err)
    # a limit this table does not know is still named
    assert parse_sbatch_refusal(
        "sbatch: error: QOSMaxNodePerJobLimit\nsbatch: error: Batch job "
        "submission failed: ...")[0] == "QOSMaxNodePerJobLimit"


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
