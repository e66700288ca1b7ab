"""S3 store and s3:// URLs against moto_server and SeaweedFS on 127.0.0.1."""

import os
import uuid

from conftest import (
    S3_KEY,
    S3_SECRET,
    assert_testremote_passed,
    requires_annex,
)

pytestmark = requires_annex


def s3_repo(make_repo, server, bucket, *extra, creds=True):
    repo = make_repo()
    if creds:
        repo.env["AWS_ACCESS_KEY_ID"] = S3_KEY
        repo.env["AWS_SECRET_ACCESS_KEY"] = S3_SECRET
    repo.initremote("s3store", "store=s3", "bucket=" + bucket, "prefix=annex/",
                    "endpoint=" + server["endpoint"], "region=us-east-1",
                    "addressing=path", *extra)
    return repo


def _bucket():
    return "hpc-" + uuid.uuid4().hex[:12]


def test_s3_store_testremote(make_repo, s3server):
    repo = s3_repo(make_repo, s3server, _bucket())
    proc = repo.annex("testremote", "s3store", "--fast", "--size=200KiB")
    assert_testremote_passed(proc)


def test_s3_copy_drop_get_fsck_and_layout(make_repo, s3server, tmp_path):
    bucket = _bucket()
    repo = s3_repo(make_repo, s3server, bucket, "publicurl=https://data.example.org/" + bucket)
    with open(os.path.join(repo.path, "big.dat"), "wb") as fh:
        fh.write(os.urandom(300 * 1024))
    repo.annex("add", "big.dat")
    repo.git("commit", "-qm", "add")
    key = repo.key("big.dat")
    repo.annex("copy", "--to=s3store", "big.dat")
    names = [o["Key"] for o in s3server["client"].list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert names == ["annex/" + key]
    assert "https://data.example.org/{}/annex/{}".format(bucket, key) in \
        repo.annex("whereis", "big.dat").stdout
    repo.annex("drop", "big.dat")
    repo.annex("get", "big.dat")
    repo.annex("fsck", "--from=s3store", "big.dat")
    repo.annex("drop", "--from=s3store", "big.dat", "--force")
    assert s3server["client"].list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_multipart_upload(make_repo, s3server):
    bucket = _bucket()
    repo = make_repo()
    repo.env.update(AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)
    repo.initremote("s3store", "store=s3", "bucket=" + bucket, "endpoint=" + s3server["endpoint"],
                    "region=us-east-1", "addressing=path", "partsize=5MiB", "concurrency=3")
    with open(os.path.join(repo.path, "mp.dat"), "wb") as fh:
        fh.write(os.urandom(11 * 1024 * 1024))
    repo.annex("add", "mp.dat")
    repo.annex("copy", "--to=s3store", "mp.dat")
    client = s3server["client"]
    head = client.head_object(Bucket=bucket, Key=repo.key("mp.dat"))
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 1 MiB
    assert head["Metadata"] == {"hpcdata-partsize": str(5 * 1024 * 1024)}
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    repo.annex("drop", "mp.dat")
    repo.annex("get", "mp.dat")
    repo.annex("fsck", "mp.dat")


def test_partsize_and_concurrency_are_checked(make_repo, moto_s3):
    repo = make_repo()
    repo.env.update(AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)
    base = ["store=s3", "bucket=" + _bucket(), "endpoint=" + moto_s3["endpoint"]]
    for bad, message in (("partsize=1MiB", "between 5MiB and 5GiB"),
                         ("partsize=lots", "must be a size"),
                         ("concurrency=0", "number from 1 to 64")):
        proc = repo.initremote("s3store", *base, bad, check=False)
        assert proc.returncode != 0
        assert message in proc.stdout + proc.stderr
    assert "s3store" not in repo.git("remote").stdout
    # the example of docs/remote/s3.md
    repo.initremote("s3store", *base, "partsize=64MiB", "concurrency=8")
    repo.annex("enableremote", "s3store", "partsize=32MiB")
    log = repo.git("cat-file", "-p", "git-annex:remote.log").stdout
    assert "partsize=32MiB" in log and "concurrency=8" in log
    proc = repo.annex("enableremote", "s3store", "concurrency=99", check=False)
    assert proc.returncode != 0 and "number from 1 to 64" in proc.stdout + proc.stderr


def test_s3_url_addurl_drop_get_fsck(make_repo, s3server):
    bucket = _bucket()
    client = s3server["client"]
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="raw/run 1/reads.fq", Body=b"@r1\nACGT\n+\nIIII\n")
    repo = make_repo()
    repo.env.update(AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)
    repo.initremote("objs", "endpoint=" + s3server["endpoint"], "region=us-east-1",
                    "addressing=path")
    url = "s3://{}/raw/run%201/reads.fq".format(bucket)
    repo.annex("addurl", "--file=reads.fq", url)
    repo.annex("drop", "reads.fq")
    repo.annex("get", "reads.fq")
    repo.annex("fsck", "--from=objs", "reads.fq")
    proc = repo.annex("testremote", "objs", "--fast", "--test-readonly=reads.fq")
    assert_testremote_passed(proc)
    proc = repo.annex("addurl", "--file=none.fq", "s3://{}/raw/none.fq".format(bucket), check=False)
    assert proc.returncode != 0 and "not found" in proc.stderr


def test_secrets_never_in_git_annex_branch(make_repo, moto_s3):
    repo = s3_repo(make_repo, moto_s3, _bucket())
    history = repo.git("log", "-p", "git-annex").stdout
    assert "remote.log" in history  # the remote config is there ...
    assert S3_SECRET not in history and S3_KEY not in history  # ... the secrets are not
    # later runs find the credentials in git-annex's local store
    del repo.env["AWS_ACCESS_KEY_ID"], repo.env["AWS_SECRET_ACCESS_KEY"]
    with open(os.path.join(repo.path, "f.txt"), "w") as fh:
        fh.write("content\n")
    repo.annex("add", "f.txt")
    repo.annex("copy", "--to=s3store", "f.txt")


def test_embedcreds_refused(make_repo, moto_s3):
    repo = make_repo()
    repo.env.update(AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)
    proc = repo.initremote("s3store", "store=s3", "bucket=" + _bucket(),
                           "endpoint=" + moto_s3["endpoint"], "embedcreds=yes", check=False)
    assert proc.returncode != 0
    assert "embedcreds" in proc.stderr


def test_bad_credentials_clear_error(make_repo, seaweed_s3):
    bucket = _bucket()
    repo = s3_repo(make_repo, seaweed_s3, bucket)
    with open(os.path.join(repo.path, "f.txt"), "w") as fh:
        fh.write("content\n")
    repo.annex("add", "f.txt")
    repo.env["AWS_ACCESS_KEY_ID"] = S3_KEY
    repo.env["AWS_SECRET_ACCESS_KEY"] = "wrong-secret"
    proc = repo.annex("copy", "--to=s3store", "f.txt", check=False)
    assert proc.returncode != 0
    assert "access denied" in proc.stdout + proc.stderr
    assert seaweed_s3["client"].list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert "s3store" not in repo.annex("whereis", "f.txt").stdout


def test_profile_credentials_go_through_botocore(make_repo, s3server, tmp_path):
    """With profile= the object requests use botocore (its credential chain);
    with static keys the small SigV4 client: both store and fetch alike."""
    credentials = tmp_path / "aws-credentials"
    credentials.write_text("[lab]\naws_access_key_id = {}\naws_secret_access_key = {}\n".format(
        S3_KEY, S3_SECRET))
    bucket = _bucket()
    repo = make_repo()
    repo.env["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)
    repo.initremote("s3store", "store=s3", "bucket=" + bucket, "endpoint=" + s3server["endpoint"],
                    "region=us-east-1", "addressing=path", "profile=lab")
    with open(os.path.join(repo.path, "f.dat"), "wb") as fh:
        fh.write(os.urandom(70 * 1024))
    repo.annex("add", "f.dat")
    repo.annex("copy", "--to=s3store", "f.dat")
    repo.annex("drop", "f.dat")
    repo.annex("get", "f.dat")
    repo.annex("fsck", "--from=s3store", "f.dat")


def test_lean_client_replies_like_botocore(seaweed_s3):
    from datalad_hpcdata.remote.stores.s3 import S3

    client = seaweed_s3["client"]
    bucket = _bucket()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="dir/a b.txt", Body=b"hello", Metadata={"x-y": "1"})
    lean = S3(endpoint=seaweed_s3["endpoint"], region="us-east-1", addressing="path",
              credentials=(S3_KEY, S3_SECRET))
    assert lean.lean is not None
    via_lean = lean.head(bucket, "dir/a b.txt")
    via_boto = lean.call("head", lean.client.head_object, Bucket=bucket, Key="dir/a b.txt")
    for field in ("ContentLength", "ETag", "Metadata"):
        assert via_lean[field] == via_boto[field], field
    body = lean.request("get", "get_object", Bucket=bucket, Key="dir/a b.txt", Range="bytes=1-")["Body"]
    assert body.read() == b"ello"
    body.close()
    lean.delete(bucket, "dir/a b.txt")
    assert not lean.exists(bucket, "dir/a b.txt")


def test_lean_client_addressing(monkeypatch):
    from datalad_hpcdata.remote.stores.s3_http import LeanS3, usable

    creds = ("k", "s")
    auto = LeanS3("https://s3.lab.example.org", None, "auto", creds)
    assert auto.target("mybucket", "a/b c") == ("mybucket.s3.lab.example.org", "/a/b%20c")
    assert auto.target("my.bucket", "k")[1] == "/my.bucket/k"  # dots: no TLS name match
    assert auto.target("My_Bucket", "k")[1] == "/My_Bucket/k"  # not a DNS label
    ip = LeanS3("http://127.0.0.1:9000", None, "auto", creds)
    assert ip.target("mybucket", "k") == ("127.0.0.1:9000", "/mybucket/k")
    assert LeanS3("http://h:1/base/", None, "path", creds).target("b", "k") == ("h:1", "/base/b/k")
    assert usable("http://127.0.0.1:9000", creds)
    assert not usable(None, creds) and not usable("http://127.0.0.1:9000", None)
    monkeypatch.setenv("http_proxy", "http://proxy.example.org:3128")
    monkeypatch.setenv("no_proxy", "")
    assert not usable("http://s3.lab.example.org", creds)  # botocore knows proxies
