"""The S3 store at real sizes, against SeaweedFS (a real S3 server) on 127.0.0.1.

* a 200 MiB file (well above the default part size) with default settings:
  copy, drop, get, fsck; the remote's peak memory stays far below the file
  size; no multipart upload is left behind;
* 2,000 files of 4 KiB with ``git annex copy -J8``: several remote processes
  at once, each reusing its connections;
* ``s3://`` URL of a multipart object uploaded by another tool: verified
  with the part size the server reports.

Files live on tmpfs (``shm_dir``) and are removed afterwards.
"""

import os
import sys
import uuid

import pytest
from conftest import S3_KEY, S3_SECRET, requires_annex, wrapper_program
from servers.tcp_proxy import FaultProxy

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
sys.path.insert(0, TOOLS)

import remote_peak  # noqa: E402
from bench_remote_env import write_random  # noqa: E402

pytestmark = requires_annex

MIB = 1 << 20


def _bucket():
    return "big-" + uuid.uuid4().hex[:12]


def store_repo(make_repo, endpoint, bucket, base=None, *extra):
    repo = make_repo(base=base)
    repo.env.update(AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)
    repo.initremote("s3store", "store=s3", "bucket=" + bucket, "endpoint=" + endpoint,
                    "region=us-east-1", "addressing=path", *extra)
    return repo


def pending_uploads(client, bucket):
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_200mib_round_trip_default_settings(make_repo, seaweed_s3, shm_dir):
    client = seaweed_s3["client"]
    bucket = _bucket()
    repo = store_repo(make_repo, seaweed_s3["endpoint"], bucket, shm_dir)
    rss_dir = shm_dir / "rss"
    rss_dir.mkdir()
    wrapper_program(shm_dir / "bin", os.path.join(TOOLS, "remote_peak.py"))
    repo.env.update(HPCDATA_TEST_RSS_DIR=str(rss_dir),
                    PATH=str(shm_dir / "bin") + os.pathsep + repo.env["PATH"])
    size = 200 * MIB
    write_random(os.path.join(repo.path, "big.bin"), size)
    repo.annex("add", "big.bin")
    key = repo.key("big.bin")
    try:
        repo.annex("copy", "--to=s3store", "big.bin")
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == size
        assert head["ETag"].strip('"').endswith("-13")  # 16 MiB parts by default
        assert pending_uploads(client, bucket) == []
        repo.annex("drop", "big.bin")
        assert not repo.has_content("big.bin")
        repo.annex("get", "big.bin")
        repo.annex("fsck", "big.bin")
        repo.annex("fsck", "--from=s3store", "big.bin")
        peaks = [remote_peak.read(rss_dir / name)[0] for name in os.listdir(rss_dir)]
        assert peaks, "the wrapper recorded no remote process"
        # parts and ranges are bounded (4 x 16 MiB up, 6 x 8 MiB down) plus
        # the interpreter: far below the 200 MiB file
        print("peak RSS of the remote processes (MiB):", [p // MIB for p in peaks])
        assert max(peaks) < 160 * MIB, peaks
    finally:
        repo.annex("drop", "--from=s3store", "--force", "big.bin", check=False)


def test_2000_small_files_copy_J8(make_repo, seaweed_s3, shm_dir):
    client = seaweed_s3["client"]
    bucket = _bucket()
    host, port = seaweed_s3["endpoint"].rsplit("/", 1)[1].split(":")
    proxy = FaultProxy(host, int(port)).start()  # counts the connections
    try:
        repo = store_repo(make_repo, proxy.url, bucket, shm_dir)
        data = os.path.join(repo.path, "d")
        os.mkdir(data)
        for i in range(2000):
            with open(os.path.join(data, "f%04d" % i), "wb") as handle:
                handle.write(os.urandom(4096))
        repo.annex("add", "-q", "-J2", "d")
        repo.git("commit", "-qm", "small files")
        before = proxy.connections
        repo.annex("copy", "-J8", "--to=s3store", "d")
        stored = sum(page.get("KeyCount", 0) for page in
                     client.get_paginator("list_objects_v2").paginate(Bucket=bucket))
        assert stored == 2000
        requests = [r for r in proxy.requests if r[0].startswith(("HEAD", "PUT"))]
        assert len(requests) >= 2000  # at least one PUT per file went through the proxy
        # connections are reused within each remote process: a handful per
        # process, not one per request
        assert proxy.connections - before < 100, proxy.connections - before
        assert "d/f0007" in repo.annex("find", "--in=s3store", "d/f0007").stdout
        some = ["d/f%04d" % i for i in range(0, 2000, 40)]
        repo.annex("drop", "-J8", *some)
        repo.annex("get", "-J8", *some)
        repo.annex("fsck", "-q", *some)
    finally:
        proxy.stop()


def test_foreign_multipart_object_verified_by_part_size(seaweed_s3, tmp_path):
    """An object uploaded in 5 MiB parts by boto3 (no metadata of ours): the
    download asks the server for the part size and checks the composite ETag."""
    from boto3.s3.transfer import TransferConfig

    from datalad_hpcdata.remote.stores.s3 import S3
    from datalad_hpcdata.remote.stores.s3_download import verifier

    client = seaweed_s3["client"]
    bucket = _bucket()
    client.create_bucket(Bucket=bucket)
    src = tmp_path / "src.bin"
    write_random(src, 12 * MIB + 3)
    client.upload_file(str(src), bucket, "raw/obj.bin",
                       Config=TransferConfig(multipart_threshold=5 * MIB,
                                             multipart_chunksize=5 * MIB))
    s3 = S3(endpoint=seaweed_s3["endpoint"], region="us-east-1", addressing="path",
            credentials=(S3_KEY, S3_SECRET))
    head = s3.head(bucket, "raw/obj.bin")
    assert head["ETag"].strip('"').endswith("-3")
    check = verifier(s3, bucket, "raw/obj.bin", head)
    assert check is not None and check.kind == "composite ETag"
    assert check.hasher.part_size == 5 * MIB
    out = tmp_path / "out.bin"
    seen = []
    assert s3.download(bucket, "raw/obj.bin", str(out), seen.append) == 12 * MIB + 3
    assert out.read_bytes() == src.read_bytes()
    assert seen == sorted(seen) and seen[-1] == 12 * MIB + 3


@pytest.mark.parametrize("size", [3 * MIB, 20 * MIB])
def test_corrupt_bytes_on_the_wire_are_caught(seaweed_s3, tmp_path, size):
    """A byte flipped between server and remote: the single-part MD5 (3 MiB)
    or the composite ETag (20 MiB, 16 MiB parts) does not match; the data is
    discarded."""
    from datalad_hpcdata.remote.errors import VerificationError
    from datalad_hpcdata.remote.stores.s3 import S3, S3Store

    host, port = seaweed_s3["endpoint"].rsplit("/", 1)[1].split(":")
    proxy = FaultProxy(host, int(port)).start()
    try:
        bucket = _bucket()
        s3 = S3(endpoint=proxy.url, region="us-east-1", addressing="path",
                credentials=(S3_KEY, S3_SECRET))
        store = S3Store(s3, bucket)
        store.setup()
        src = tmp_path / "src.bin"
        write_random(src, size)
        store.store("KEY", str(src), None)
        out = tmp_path / "out.bin"
        proxy.flip_at, proxy.flips = 2 * MIB, 1
        with pytest.raises(VerificationError, match="checksum mismatch"):
            store.retrieve("KEY", str(out), None)
        assert out.stat().st_size == 0  # discarded, no corrupt prefix to resume
        store.retrieve("KEY", str(out), None)
        assert out.read_bytes() == src.read_bytes()
    finally:
        proxy.stop()
