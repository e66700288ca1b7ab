"""Fixtures for the special remote tests: loopback servers and annex repos."""

import os
import shutil
import subprocess
import sys

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

    def make(name=None):
        counter[0] += 1
        path = tmp_path / (name or "repo{}".format(counter[0]))
        path.mkdir()
        repo = Repo(path, dict(remote_env))
        repo.git("init", "-q")
        repo.git("config", "annex.security.allowed-ip-addresses", "127.0.0.1")
        repo.annex("init", "-q", "test")
        return repo

    return make


@pytest.fixture
def services():
    server = FakeServices().start()
    try:
        yield server
    finally:
        server.stop()
