"""iRODS store and irods:// URLs against a fake python-irodsclient session.

No iRODS server is installable here: these tests exercise the remote's use of
the session API (paths, temporary upload + rename, checksums, resume, error
mapping) through ``servers/fake_irods.py``, not a real server.
"""

import base64
import hashlib
import os

import pytest
from conftest import assert_testremote_passed, requires_annex, wrapper_program

pytest.importorskip("irods")

from servers.fake_irods import FakeSession  # noqa: E402

from datalad_hpcdata.remote.errors import (  # noqa: E402
    HpcdataError,
    NotFound,
    VerificationError,
)
from datalad_hpcdata.remote.stores import irods as irods_mod  # noqa: E402

FAKE_REMOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers",
                           "fake_irods_remote.py")


@pytest.fixture
def irods_root(tmp_path, monkeypatch):
    root = tmp_path / "irods"
    (root / "tempZone" / "home" / "alice").mkdir(parents=True)
    monkeypatch.setenv("HPCDATA_FAKE_IRODS_ROOT", str(root))
    for name in ("HPCDATA_FAKE_IRODS_PASSWORD", "HPCDATA_FAKE_IRODS_CORRUPT",
                 "HPCDATA_FAKE_IRODS_CHECKSUM"):
        monkeypatch.delenv(name, raising=False)
    return root


def _client(root, password=None):
    client = irods_mod.Irods(env_file="/nonexistent", password=password)
    client._session = FakeSession(str(root), password=password)
    return client


def test_parse_irods_url():
    assert irods_mod.parse_irods("irods://tempZone/home/a%20b/x.txt") == "/tempZone/home/a b/x.txt"
    assert irods_mod.parse_irods("s3://x/y") is None
    for bad in ("irods://tempZone", "irods://host:1247/zone/x", "irods://zone/a/../b"):
        with pytest.raises(HpcdataError):
            irods_mod.parse_irods(bad)


def test_checksum_forms(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    sha = "sha2:" + base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
    assert irods_mod.checksum_matches(sha, str(f)) is True
    assert irods_mod.checksum_matches(hashlib.md5(b"abc").hexdigest(), str(f)) is True
    assert irods_mod.checksum_matches("sha2:AAAA", str(f)) is False
    assert irods_mod.checksum_matches("", str(f)) is None


def test_store_roundtrip_resume_and_atomic_names(irods_root, tmp_path):
    client = _client(irods_root)
    store = irods_mod.IrodsStore(client, "/tempZone/home/alice/annex")
    store.setup()
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    seen = []
    store.store("KEY1", str(src), seen.append)
    assert seen[-1] == src.stat().st_size
    assert sorted(os.listdir(irods_root / "tempZone/home/alice/annex")) == ["KEY1"]
    assert store.present("KEY1") and not store.present("KEY2")
    dest = tmp_path / "dest"
    dest.write_bytes(src.read_bytes()[:1000])  # partial download to resume
    store.retrieve("KEY1", str(dest), None)
    assert dest.read_bytes() == src.read_bytes()
    store.remove("KEY1")
    store.remove("KEY1")  # removing an absent key succeeds
    assert not store.present("KEY1")
    with pytest.raises(NotFound):
        store.retrieve("KEY1", str(tmp_path / "x"), None)


def test_corrupt_read_is_discarded(irods_root, tmp_path, monkeypatch):
    client = _client(irods_root)
    obj = irods_root / "tempZone/home/alice/data.bin"
    obj.write_bytes(b"payload" * 100)
    monkeypatch.setenv("HPCDATA_FAKE_IRODS_CORRUPT", "1")
    client._session = FakeSession(str(irods_root))
    out = tmp_path / "out"
    with pytest.raises(VerificationError):
        client.download("/tempZone/home/alice/data.bin", str(out))
    assert out.read_bytes() == b""


def test_bad_password_is_a_clear_error(irods_root, monkeypatch):
    monkeypatch.setenv("HPCDATA_FAKE_IRODS_PASSWORD", "right")
    client = _client(irods_root, password="wrong")
    with pytest.raises(HpcdataError, match="authentication failed"):
        client.exists("/tempZone/home/alice/x")


# ------------------------------------------------------------ through git-annex
@pytest.fixture
def irods_repo(make_repo, irods_root, tmp_path):
    """A repository whose git-annex runs the remote with the fake session
    (a test-only ``git-annex-remote-hpcdata`` first on its PATH)."""
    bindir = tmp_path / "fake-irods-bin"
    wrapper_program(bindir, FAKE_REMOTE)
    repo = make_repo()
    repo.env.update(HPCDATA_FAKE_IRODS_ROOT=str(irods_root),
                    PATH=str(bindir) + os.pathsep + repo.env["PATH"])
    return repo


@requires_annex
def test_irods_store_testremote(irods_repo, irods_root):
    irods_repo.initremote("irs", "store=irods", "irods-collection=/tempZone/home/alice/annex")
    proc = irods_repo.annex("testremote", "irs", "--fast", "--size=100KiB")
    assert_testremote_passed(proc)
    # no temporary objects left behind
    leftovers = [n for n in os.listdir(irods_root / "tempZone/home/alice/annex")
                 if n.startswith(".hpcdata-tmp")]
    assert leftovers == []


@requires_annex
def test_irods_url_addurl_drop_get_fsck(irods_repo, irods_root):
    (irods_root / "tempZone/home/alice/run1").mkdir()
    (irods_root / "tempZone/home/alice/run1/counts.tsv").write_bytes(b"gene\tn\nA\t1\n")
    irods_repo.initremote("irs", "irods-env-file=/dev/null")
    irods_repo.annex("addurl", "--file=counts.tsv", "irods://tempZone/home/alice/run1/counts.tsv")
    irods_repo.annex("drop", "counts.tsv")
    irods_repo.annex("get", "counts.tsv")
    irods_repo.annex("fsck", "--from=irs", "counts.tsv")
    proc = irods_repo.annex("testremote", "irs", "--fast", "--test-readonly=counts.tsv")
    assert_testremote_passed(proc)


@requires_annex
def test_irods_bad_credentials_leave_annex_unchanged(irods_repo, irods_root):
    irods_repo.initremote("irs", "store=irods", "irods-collection=/tempZone/home/alice/annex")
    with open(os.path.join(irods_repo.path, "f.txt"), "w") as fh:
        fh.write("data\n")
    irods_repo.annex("add", "f.txt")
    irods_repo.env.update(HPCDATA_FAKE_IRODS_PASSWORD="secret", IRODS_PASSWORD="wrong")
    proc = irods_repo.annex("copy", "--to=irs", "f.txt", check=False)
    assert proc.returncode != 0
    assert "authentication failed" in proc.stdout + proc.stderr
    assert "irs" not in irods_repo.annex("whereis", "f.txt").stdout
    irods_repo.env["IRODS_PASSWORD"] = "secret"
    irods_repo.annex("copy", "--to=irs", "f.txt")
    history = irods_repo.git("log", "-p", "git-annex").stdout
    assert "secret" not in history and "wrong" not in history
