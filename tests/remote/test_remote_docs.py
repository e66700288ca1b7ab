"""The worked examples of the special remote's pages (docs/remote/*.md)
run against the loopback servers: the Zenodo, DOI and vdi fakes of
``servers/fake_services.py``, SeaweedFS for S3 and the python-irodsclient
stand-in for iRODS; docs/remote/slurm.md also on the local Slurm cluster.

The pages are run by the docs harness of tests/test_docs.py (every block in
order in one bash session, ``console`` outputs compared). A page's commands
are those a reader types; this test provides what they name: records,
views and objects with the names the page uses, the remote's environment
overrides pointing at the loopback servers (``DATALAD_HPCDATA_ZENODO_URL``,
``..._DOI_RESOLVER``, ``..._VDI_SERVERS``), and, in ``SUBSTITUTE``, the
loopback endpoint and test keys in place of the hosts and secrets a page
shows (each must occur on its page, so none goes stale silently).
``HPCDATA_DOCS_SHOW=1`` (with ``pytest -s``) prints what every step printed,
to paste into a page.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import (
    REMOTE_ENV,
    S3_KEY,
    S3_SECRET,
    requires_annex,
    wrapper_program,
)

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from test_docs import (  # noqa: E402
    DOCS,
    ELSEWHERE,
    SKIPPED,
    check_steps,
    pages,
    parse_page,
    run_steps,
    scenario_env,
)

pytestmark = requires_annex

FAKE_IRODS = Path(__file__).resolve().parent / "servers" / "fake_irods_remote.py"
PAGES = ["remote/zenodo.md", "remote/doi.md", "remote/vdi.md", "remote/s3.md",
         "remote/irods.md", "remote/slurm.md"]

READS = b">read1\nACGTACGTTT\n>read2\nGGGTTTAAAC\n"
COUNTS = b"gene\tcount\nabc1\t12\nxyz2\t7\n"
GENOME = b">chr1\nACGTACGTACGT\n"

# (text on the page, what the test runs instead); $VARIABLES come from env
SUBSTITUTE = {
    "remote/vdi.md": [("https://localmirror:5000", "$HPCDATA_DOCS_VDI")],
    "remote/s3.md": [
        ("export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...",
         "export AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s"
         % (S3_KEY, S3_SECRET)),
        ("https://s3.lab.example.org", "$HPCDATA_DOCS_S3")],
}


def test_every_remote_page_with_examples_is_run_here():
    remote = {p.path.relative_to(DOCS).as_posix() for p in pages()
              if p.scenario == "remote"}
    run_here = {page for page, test in ELSEWHERE.items()
                if test == "tests/remote/test_remote_docs.py"}
    assert run_here == set(PAGES) == remote
    assert "remote/index.md" in SKIPPED
    for page in PAGES:
        assert parse_page(DOCS / page).scenario == "remote", page
    for page, pairs in SUBSTITUTE.items():
        text = (DOCS / page).read_text()
        for old, _ in pairs:
            assert old in text, (page, old)


@pytest.fixture
def loopback(services, seaweed_s3, tmp_path):
    """The environment a remote page runs in, its servers filled with what
    the page names."""
    services.add_record(13830932, {"reads.fasta": READS, "counts.tsv": COUNTS},
                        concept=13830931)
    services.views["genome"] = {"ref.fa": GENOME, "notes.txt": b"notes\n"}
    s3 = seaweed_s3["client"]          # one server for the whole session
    if "sequencer-out" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="sequencer-out")
    s3.put_object(Bucket="sequencer-out", Key="2024/run1.fq", Body=READS)
    irods = tmp_path / "irods"
    run1 = irods / "tempZone" / "home" / "alice" / "run1"
    run1.mkdir(parents=True)
    (run1 / "counts.tsv").write_bytes(COUNTS)
    bindir = tmp_path / "bin"
    wrapper_program(bindir, str(FAKE_IRODS))

    def env_for(page: str, work: Path) -> dict:
        env = scenario_env("slurm", work, None)
        env.update(REMOTE_ENV)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                     "ZENODO_TOKEN", "IRODS_PASSWORD"):
            env.pop(name, None)
        env.update(
            DATALAD_HPCDATA_ZENODO_URL=services.url,
            DATALAD_HPCDATA_DOI_RESOLVER=services.url,
            DATALAD_HPCDATA_VDI_SERVERS="lab=" + services.url,
            HPCDATA_DOCS_VDI=services.url,
            HPCDATA_DOCS_S3=seaweed_s3["endpoint"],
            AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
            # git-annex fetches from 127.0.0.1 only when allowed to
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="annex.security.allowed-ip-addresses",
            GIT_CONFIG_VALUE_0="127.0.0.1")
        if page == "remote/irods.md":
            # the remote with the python-irodsclient stand-in
            env["PATH"] = str(bindir) + os.pathsep + env["PATH"]
            env["HPCDATA_FAKE_IRODS_ROOT"] = str(irods)
        return env

    return env_for


def run_page(page: str, env_for, tmp_path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    run = run_steps(parse_page(DOCS / page), work, env_for(page, work),
                    substitute=SUBSTITUTE.get(page, ()))
    if os.environ.get("HPCDATA_DOCS_SHOW"):
        for n, (_b, cmd, _e) in enumerate(run.steps):
            print("@@ $ " + cmd + "\n" + run.outputs.get(n, ""))
    check_steps(run)
    return work / "study"


@pytest.mark.parametrize("page", [p for p in PAGES if p != "remote/slurm.md"])
def test_remote_page_runs(page, loopback, tmp_path):
    study = run_page(page, loopback, tmp_path)
    assert study.is_dir()


@pytest.mark.slurm
def test_remote_slurm_page_runs(slurm, loopback, tmp_path):
    study = run_page("remote/slurm.md", loopback, tmp_path)
    assert (study / "results" / "lines.txt").read_text().split()[0] == "4"
