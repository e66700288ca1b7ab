"""Zenodo resolver end to end against the loopback fake Zenodo."""

import hashlib
import os

import pytest

from conftest import requires_annex

pytestmark = requires_annex

READS = b">r1\nACGT\n" * 50
NESTED = b"nested file\n"


@pytest.fixture
def zenodo(services):
    services.add_record(13830932, {"reads.fasta": READS, "sub/dir/table.csv": NESTED})
    return services


@pytest.fixture
def zrepo(make_repo, zenodo):
    repo = make_repo()
    repo.initremote("hpc", "zenodo-url=" + zenodo.url)
    return repo


def test_addurl_drop_get_fsck(zrepo, zenodo):
    zrepo.annex("addurl", "--file=reads.fasta", "zenodo://13830932/reads.fasta")
    assert zrepo.has_content("reads.fasta")
    with open(os.path.join(zrepo.path, "reads.fasta"), "rb") as fh:
        assert fh.read() == READS
    whereis = zrepo.annex("whereis", "reads.fasta").stdout
    assert "zenodo://13830932/reads.fasta" in whereis
    zrepo.annex("drop", "reads.fasta")
    assert not zrepo.has_content("reads.fasta")
    zrepo.annex("get", "reads.fasta")
    assert zrepo.has_content("reads.fasta")
    zrepo.annex("fsck", "reads.fasta")
    zrepo.annex("fsck", "--from=hpc", "reads.fasta")
