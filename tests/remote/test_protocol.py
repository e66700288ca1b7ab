"""Protocol-level behaviour without git-annex: transcripts and unit checks."""

import hashlib
import io
import os
import subprocess
import sys
import threading

import pytest

from datalad_hpcdata.remote.config import CONFIGS
from datalad_hpcdata.remote.errors import NotFound
from datalad_hpcdata.remote.http import HttpClient, HttpError, retry_wait
from datalad_hpcdata.remote.names import safe_relpath
from datalad_hpcdata.remote.pins import key_md5, key_size
from datalad_hpcdata.remote.protocol import HpcdataMaster, Progress
from datalad_hpcdata.remote.remote import HpcdataRemote
from datalad_hpcdata.remote.transfer import (
    PartsHasher,
    Tally,
    composite_etag,
    parse_size,
)


def transcript(lines, patch=None):
    """Run the remote on ``lines`` (requests and git-annex's replies)."""
    out = io.StringIO()
    master = HpcdataMaster(out)
    remote = HpcdataRemote(master)
    if patch:
        patch(remote)
    master.LinkRemote(remote)
    master.Listen(io.StringIO("".join(line + "\n" for line in lines)))
    return out.getvalue().splitlines()


def prepare_lines(**config):
    """PREPARE followed by git-annex's VALUE replies to each GETCONFIG."""
    return ["PREPARE"] + ["VALUE " + config.get(name.replace("-", "_"), "") for name in CONFIGS]


def test_extensions_and_listconfigs():
    out = transcript(["EXTENSIONS INFO GETGITREMOTENAME ASYNC", "LISTCONFIGS"])
    assert out[0] == "VERSION 1"
    assert out[1] == "EXTENSIONS INFO GETGITREMOTENAME"
    configs = [line.split(" ")[1] for line in out if line.startswith("CONFIG ")]
    assert sorted(configs) == sorted(CONFIGS)
    assert out[-1] == "CONFIGEND"


def test_bad_config_fails_prepare_not_process():
    out = transcript(prepare_lines(store="ftp") + ["CLAIMURL zenodo://1/a"])
    assert any(line.startswith("PREPARE-FAILURE store must be none, s3 or irods") for line in out)
    assert out[-1] == "CLAIMURL-FAILURE"


def test_unexpected_exceptions_become_failure_replies():
    def patch(remote):
        def boom(*args):
            raise KeyError("multi\nline")
        remote.scheme_of = boom
        remote.recorded_urls = boom

    out = transcript(prepare_lines() + [
        "CLAIMURL zenodo://1/a",
        "CHECKURL zenodo://1/a",
        "TRANSFER RETRIEVE KEY-s1--x file with spaces",
        "WHEREIS KEY-s1--x",
        "GETAVAILABILITY",
    ], patch)
    assert "CLAIMURL-FAILURE" in out
    failure = [line for line in out if line.startswith("CHECKURL-FAILURE")][0]
    assert "KeyError" in failure
    assert any(line.startswith("TRANSFER-FAILURE RETRIEVE KEY-s1--x KeyError") for line in out)
    assert "WHEREIS-FAILURE" in out
    assert out[-1] == "AVAILABILITY GLOBAL"  # still alive after all of that
    assert all("\n" not in line for line in out)


def test_store_on_resolver_only_remote_fails_cleanly():
    out = transcript(prepare_lines() + ["TRANSFER STORE KEY-s1--x /tmp/x"])
    assert out[-1].startswith("TRANSFER-FAILURE STORE KEY-s1--x this remote only resolves URLs")


def test_executable_writes_only_protocol_to_stdout():
    script = ("import datalad_hpcdata.remote.main as m\n"
              "orig = m.HpcdataRemote.prepare\n"
              "def noisy(self):\n"
              "    print('noise from a library')\n"
              "    return orig(self)\n"
              "m.HpcdataRemote.prepare = noisy\n"
              "m.main()\n")
    stdin = "\n".join(["EXTENSIONS INFO", "LISTCONFIGS"] + prepare_lines() + ["NOSUCHREQUEST x", ""])
    proc = subprocess.run([sys.executable, "-c", script], input=stdin,
                          capture_output=True, text=True, timeout=60)
    words = {"VERSION", "EXTENSIONS", "CONFIG", "CONFIGEND", "GETCONFIG", "PREPARE-SUCCESS",
             "UNSUPPORTED-REQUEST"}
    lines = proc.stdout.splitlines()
    assert lines and all(line.split(" ")[0] in words for line in lines), proc.stdout
    assert "noise from a library" in proc.stderr
    assert "PREPARE-SUCCESS" in lines
    assert lines[-1] == "UNSUPPORTED-REQUEST"


def test_retry_wait_honours_headers():
    class R:
        def __init__(self, headers):
            self.headers = headers

    assert retry_wait(R({"Retry-After": "7"}), 0, 1.0, 60) == 7
    assert retry_wait(R({"Retry-After": "7000"}), 0, 1.0, 60) == 60  # capped
    assert retry_wait(R({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}), 0, 1.0, 60,
                      now=1445412480) == 10
    assert retry_wait(R({"X-RateLimit-Reset": "1000"}), 0, 1.0, 60, now=990) == 10
    assert retry_wait(R({}), 3, 0.5, 60) == 4  # exponential back-off
    assert retry_wait(None, 0, 1.0, 60) == 1


def test_http_client_retries_with_server_delay(services):
    services.add_record(5, {"a": b"x"})
    services.faults["status"] = [(429, {"Retry-After": "3"}), (502, {})]
    waits = []
    client = HttpClient(retries=3, backoff=0.25, max_wait=30, sleep=waits.append)
    assert client.get_json(services.url + "/api/records/5")["id"] == 5
    assert waits == [3.0, 0.5]
    # cached: a second call does not hit the server
    hits = len(services.hits)
    client.get_json(services.url + "/api/records/5")
    assert len(services.hits) == hits
    services.faults["status_always"] = (500, {})
    with pytest.raises(HttpError, match="gave up after 4 attempts"):
        client.get_json(services.url + "/api/records/6")
    services.reset_faults()
    with pytest.raises(NotFound):
        client.get_json(services.url + "/api/records/6")


def test_key_parsing_and_names():
    assert key_size("SHA256E-s123--abc.txt") == 123
    assert key_size("URL--zenodo://1") is None
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    assert key_md5("MD5E-s0--{}.txt".format(md5)) == md5
    assert key_md5("SHA256E-s0--{}".format(md5)) is None
    assert safe_relpath("a/b.txt") == "a/b.txt"
    for bad in ("../x", "/etc/passwd", "a//b", "a/./b", "a\\b", "x\ny", ""):
        with pytest.raises(Exception, match="unsafe file name"):
            safe_relpath(bad)


def _hammer(target, threads=16, rounds=400):
    """Call ``target(i)`` from many threads at once; every call of every round."""
    start = threading.Barrier(threads)

    def run(n):
        start.wait()
        for i in range(rounds):
            target(n * rounds + i)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_progress_from_many_threads_is_whole_cumulative_and_monotonic():
    """What boto3's worker threads did to the protocol: many threads report
    bytes at once while others log.  Read back through a real pipe, every
    line must parse and PROGRESS must only grow, ending at the total."""
    read_fd, write_fd = os.pipe()
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(os.fdopen(read_fd).read().splitlines()))
    reader.start()
    output = os.fdopen(write_fd, "w")
    master = HpcdataMaster(output)
    progress = Progress(master, step=1)  # a message for every increase

    def work(i):
        progress.add(1000)
        if i % 7 == 0:  # a part sent again: its bytes are taken back, then re-added
            progress.add(-1000)
            progress.add(1000)
        if i % 50 == 0:
            master.debug("worker %s says hello with a long message %s" % (i, "x" * 200))

    _hammer(work)
    progress.close()
    progress.add(5)  # after the reply: ignored
    output.close()
    reader.join()
    counts = []
    for line in lines:
        word, _, rest = line.partition(" ")
        assert word in ("PROGRESS", "DEBUG"), line
        if word == "PROGRESS":
            counts.append(int(rest))
    assert counts == sorted(set(counts))  # strictly increasing
    assert counts[-1] == 16 * 400 * 1000
    assert sum(1 for line in lines if line.startswith("DEBUG worker")) == 16 * 400 // 50


def test_tally_is_thread_safe_and_monotonic():
    seen = []
    tally = Tally(seen.append)
    _hammer(lambda i: (tally.add(10), tally.add(-3) if i % 5 == 0 else None,
                       tally.add(3) if i % 5 == 0 else None))
    assert tally.total == 16 * 400 * 10
    assert seen == sorted(set(seen)) and seen[-1] == tally.total


def test_composite_etag_of_parts():
    data = os.urandom(5 * 1024 * 1024 * 2 + 17)
    part = 5 * 1024 * 1024
    digests = [hashlib.md5(data[i:i + part]).digest() for i in range(0, len(data), part)]
    hasher = PartsHasher(part)
    for i in range(0, len(data), 333333):  # pieces that straddle part boundaries
        hasher.update(data[i:i + 333333])
    assert hasher.etag() == composite_etag(digests)
    assert hasher.etag().endswith("-3")


def test_parse_size():
    assert parse_size("16MiB", "x") == 16 * 1024 ** 2
    assert parse_size("8m", "x") == 8 * 1024 ** 2
    assert parse_size("1G", "x") == 1024 ** 3
    assert parse_size("5242880", "x") == 5242880
    for bad in ("", "MiB", "1.5G", "-3"):
        with pytest.raises(Exception, match="must be a size"):
            parse_size(bad, "x")
