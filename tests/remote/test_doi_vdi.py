"""DOI and vdi resolvers end to end against the loopback fake services."""

import os

import pytest
from conftest import assert_testremote_passed, requires_annex

pytestmark = requires_annex

OLD = b"version one\n"
NEW = b"version two, longer\n"


@pytest.fixture
def repo(make_repo, services):
    services.add_record(200, {"data.bin": OLD}, concept=199)
    services.dois["10.1234/Example.Set/v1"] = services.url + "/records/200"
    services.views["genome"] = {"ref.fa": b">chr1\nACGTACGT\n", "notes.txt": b"n\n"}
    r = make_repo()
    r.initremote("hpc", "zenodo-url=" + services.url, "doi-resolver=" + services.url,
                 "vdi-servers=lab=" + services.url)
    return r


def _read(repo, name):
    with open(os.path.join(repo.path, name), "rb") as fh:
        return fh.read()


def test_concept_doi_pins_version_seen_at_addurl(repo, services):
    repo.annex("addurl", "--file=data.bin", "doi:10.5281/zenodo.199/data.bin")
    assert _read(repo, "data.bin") == OLD
    # a new version is published under the same concept DOI
    services.add_record(201, {"data.bin": NEW}, concept=199)
    repo.annex("drop", "data.bin")
    repo.annex("get", "data.bin")
    assert _read(repo, "data.bin") == OLD  # the pinned version, not the latest
    assert "zenodo://200/data.bin (pinned version of doi:10.5281/zenodo.199/data.bin)" in \
        repo.annex("whereis", "data.bin").stdout
    repo.annex("fsck", "--from=hpc", "data.bin")
    # a fresh addurl of the concept DOI sees the new version
    repo.annex("addurl", "--file=new.bin", "doi://10.5281/zenodo.199/data.bin")
    assert _read(repo, "new.bin") == NEW


def test_changed_upstream_file_is_detected(repo, services):
    repo.annex("addurl", "--file=data.bin", "doi:10.5281/zenodo.200/data.bin")
    repo.annex("drop", "data.bin")
    services.records["200"]["files"]["data.bin"] = b"version ONE\n"  # same size, new bytes
    proc = repo.annex("get", "data.bin", check=False)
    assert proc.returncode != 0
    assert "upstream content changed" in proc.stderr
    assert not repo.has_content("data.bin")


def test_generic_doi_via_handle_api(repo, services):
    repo.annex("addurl", "--file=d.bin", "doi:10.1234/Example.Set/v1/data.bin")
    assert _read(repo, "d.bin") == OLD
    assert any("/api/handles/10.1234/Example.Set/v1" in p for _, p in services.hits)
    repo.annex("drop", "d.bin")
    repo.annex("get", "d.bin")
    proc = repo.annex("addurl", "--file=e.bin", "doi:10.9999/unknown/data.bin", check=False)
    assert proc.returncode != 0
    assert "not registered" in proc.stderr


def test_doi_landing_on_unsupported_host(repo, services):
    services.dois["10.4444/elsewhere"] = "https://example.org/dataset/1"
    proc = repo.annex("addurl", "--file=e.bin", "doi:10.4444/elsewhere/file", check=False)
    assert proc.returncode != 0
    assert "resolves to https://example.org/dataset/1" in proc.stderr


def test_doi_testremote_readonly(repo):
    repo.annex("addurl", "--file=data.bin", "doi:10.5281/zenodo.199/data.bin")
    proc = repo.annex("testremote", "hpc", "--fast", "--test-readonly=data.bin")
    assert_testremote_passed(proc)


def test_vdi_addurl_drop_get_fsck_and_testremote(repo, services):
    repo.annex("addurl", "--file=ref.fa", "vdi://lab/genome/ref.fa")
    assert _read(repo, "ref.fa") == b">chr1\nACGTACGT\n"
    repo.annex("drop", "ref.fa")
    repo.annex("get", "ref.fa")
    repo.annex("fsck", "--from=hpc", "ref.fa")
    proc = repo.annex("testremote", "hpc", "--fast", "--test-readonly=ref.fa")
    assert_testremote_passed(proc)


def test_vdi_view_lists_all_files_and_errors(repo, services):
    repo.annex("addurl", "vdi://lab/genome")
    assert len(repo.git("ls-files").stdout.split()) == 2
    proc = repo.annex("addurl", "--file=x", "vdi://lab/genome/missing.fa", check=False)
    assert proc.returncode != 0 and "has no file 'missing.fa'" in proc.stderr
    proc = repo.annex("addurl", "--file=y", "vdi://other/genome/ref.fa", check=False)
    assert proc.returncode != 0 and "unknown vdi namespace 'other'" in proc.stderr


def test_vdi_truncated_download_is_not_accepted(repo, services):
    repo.annex("addurl", "--file=ref.fa", "vdi://lab/genome/ref.fa")
    repo.annex("drop", "ref.fa")
    services.faults["cut_at"] = 7  # every response stops at byte 7
    proc = repo.annex("get", "ref.fa", check=False)
    assert proc.returncode != 0 and "truncated" in proc.stderr
    assert not repo.has_content("ref.fa")
