"""Interrupted S3 transfers against SeaweedFS, with real network faults.

A loopback TCP proxy (``servers/tcp_proxy.py``) sits between the remote and
SeaweedFS: it slows uploads down enough to stop the remote half way, breaks
a download in the middle of a body, and records the requests it forwards.

* ``git annex copy`` and its remote killed outright mid-upload (SIGKILL to
  the process group) leave an unfinished multipart upload; the next
  ``copy`` resumes it, sending only the missing parts, and nothing is left
  in ListMultipartUploads;
* Ctrl-C (SIGINT to the process group) or SIGTERM mid-upload: the remote
  aborts the upload itself before it exits;
* a download that breaks mid-body continues with a ``Range`` (single GET)
  or fetches the broken range again (parallel ranges) within the same
  ``get``.
"""

import collections
import os
import signal
import subprocess
import time
import uuid

import pytest
from conftest import S3_KEY, S3_SECRET, requires_annex
from servers.tcp_proxy import FaultProxy

pytestmark = requires_annex

MIB = 1 << 20
POLL = 0.05  # seconds between two looks at the bucket
POLLS = 1200  # at most 60 s of polling


@pytest.fixture
def proxy(seaweed_s3):
    host, port = seaweed_s3["endpoint"].rsplit("/", 1)[1].split(":")
    proxy = FaultProxy(host, int(port)).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def store_repo(make_repo, proxy, base, bucket):
    repo = make_repo(base=base)
    repo.env.update(AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)
    repo.initremote("s3store", "store=s3", "bucket=" + bucket, "endpoint=" + proxy.url,
                    "region=us-east-1", "addressing=path", "partsize=5MiB", "concurrency=2")
    return repo


def add_file(repo, name, size):
    with open(os.path.join(repo.path, name), "wb") as handle:
        handle.write(os.urandom(size))
    repo.annex("add", name)
    return repo.key(name)


def children(pid):
    """Every descendant process id of ``pid`` (from /proc)."""
    parents = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents[ppid].append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def remote_of(proc):
    """The pid of the git-annex-remote-hpcdata that ``proc`` started."""
    for _ in range(POLLS):
        for pid in children(proc.pid):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as handle:
                    if b"git-annex-remote-hpcdata" in handle.read():
                        return pid
            except OSError:
                continue
        time.sleep(POLL)
    raise AssertionError("the remote process did not start")


def gone(pid):
    for _ in range(POLLS):
        if not os.path.exists("/proc/%s" % pid):
            return True
        try:
            with open("/proc/%s/stat" % pid) as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(POLL)
    return False


def uploads(client, bucket):
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def wait_for_parts(client, bucket, key, count):
    """Poll (bounded) until the unfinished upload of ``key`` has ``count`` parts."""
    for _ in range(POLLS):
        for upload in uploads(client, bucket):
            if upload["Key"] == key:
                parts = client.list_parts(Bucket=bucket, Key=key,
                                          UploadId=upload["UploadId"]).get("Parts", [])
                if len(parts) >= count:
                    return len(parts)
        time.sleep(POLL)
    raise AssertionError("no upload of %s with %s parts appeared" % (key, count))


def settled_parts(client, bucket, key, upload_id, proxy):
    """The number of parts once nothing is in flight any more: the proxy may
    still forward what the killed remote had already sent."""
    for _ in range(POLLS):
        if proxy.open_connections() == 0:
            break
        time.sleep(POLL)
    counts = []
    for _ in range(POLLS):
        counts.append(len(client.list_parts(Bucket=bucket, Key=key,
                                            UploadId=upload_id).get("Parts", [])))
        if len(counts) >= 3 and counts[-1] == counts[-2] == counts[-3]:
            return counts[-1]
        time.sleep(5 * POLL)
    raise AssertionError("the parts never settled: %s" % counts)


def start_copy(repo):
    """``git annex copy`` in a process group of its own (git, git-annex and
    the remote), so that a signal reaches all of them as from a terminal."""
    return subprocess.Popen(["git", "annex", "copy", "--to=s3store", "f.bin"], cwd=repo.path,
                            env=repo.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def interrupt_copy(repo, client, bucket, key, parts, signum):
    """Start ``git annex copy``, wait until `parts` parts of `key` are
    stored, send `signum` to its process group and wait for it to end;
    return the process and the remote's pid (killed if it did not end)."""
    proc = start_copy(repo)
    try:
        remote = remote_of(proc)
        wait_for_parts(client, bucket, key, parts)
        os.killpg(proc.pid, signum)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return proc, remote


def part_puts(proxy):
    return [r for r in proxy.requests if r[0].startswith("PUT") and "partNumber=" in r[0]]


def test_killed_upload_is_resumed_by_the_next_copy(make_repo, seaweed_s3, proxy, shm_dir):
    client = seaweed_s3["client"]
    bucket = "int-" + uuid.uuid4().hex[:12]
    repo = store_repo(make_repo, proxy, shm_dir, bucket)
    key = add_file(repo, "f.bin", 40 * MIB)  # 8 parts of 5 MiB
    proxy.rate = 2 * MIB  # bytes per second per connection
    proc, remote = interrupt_copy(repo, client, bucket, key, 2, signal.SIGKILL)
    assert proc.returncode != 0
    assert gone(remote)
    left = [u for u in uploads(client, bucket) if u["Key"] == key]
    assert len(left) == 1  # a killed process cannot clean up ...
    there = settled_parts(client, bucket, key, left[0]["UploadId"], proxy)
    assert 2 <= there < 8
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    proxy.rate = None
    del proxy.requests[:]
    repo.annex("copy", "--to=s3store", "f.bin")  # ... the next store resumes
    assert len(part_puts(proxy)) == 8 - there  # only the missing parts were sent
    assert uploads(client, bucket) == []
    assert client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"').endswith("-8")
    repo.annex("drop", "f.bin")
    repo.annex("get", "f.bin")
    repo.annex("fsck", "--from=s3store", "f.bin")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_upload_aborts_its_parts(make_repo, seaweed_s3, proxy, shm_dir, signum):
    client = seaweed_s3["client"]
    bucket = "int-" + uuid.uuid4().hex[:12]
    repo = store_repo(make_repo, proxy, shm_dir, bucket)
    key = add_file(repo, "f.bin", 40 * MIB)
    proxy.rate = 2 * MIB
    proc, remote = interrupt_copy(repo, client, bucket, key, 1, signum)
    assert proc.returncode != 0
    assert gone(remote)  # after cleaning up
    assert uploads(client, bucket) == []  # aborted by the remote itself
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert "s3store" not in repo.annex("whereis", "f.bin").stdout


@pytest.mark.parametrize("size", [6 * MIB, 20 * MIB])
def test_broken_download_continues_within_the_same_get(make_repo, proxy, shm_dir, size):
    bucket = "int-" + uuid.uuid4().hex[:12]
    repo = store_repo(make_repo, proxy, shm_dir, bucket)
    add_file(repo, "f.bin", size)
    repo.annex("copy", "--to=s3store", "f.bin")
    repo.annex("drop", "f.bin")
    del proxy.requests[:]
    # one response breaks after 2 MiB: the first GET's (6 MiB), or one of
    # the parallel ranges after it (20 MiB)
    proxy.cut_after, proxy.cuts, proxy.cut_skip = 2 * MIB, 1, 0 if size <= 8 * MIB else 1
    repo.annex("get", "f.bin")
    repo.annex("fsck", "f.bin")
    ranges = [rng for line, rng in proxy.requests if line.startswith("GET")]
    assert ranges[0] == "0-8388607"  # the first GET asks for the first range
    if size <= 8 * MIB:  # continued from where it broke
        resumed = [int(r.split("-")[0]) for r in ranges[1:]]
        assert len(resumed) == 1 and 0 < resumed[0] <= 2 * MIB, ranges
    else:  # ranges of 8 MiB after the first; the broken one is fetched again
        counts = collections.Counter(ranges)
        assert sorted(counts.values()) == [1, 1, 2], ranges
