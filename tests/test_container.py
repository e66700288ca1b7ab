"""slurm-schedule --container against the real cluster and Charliecloud.

The image is a tiny Charliecloud directory image built here from Debian's
busybox-static (no registry access).  A directory image must hold real
files (annex symlinks point outside the image), so its annexed files are
unlocked; a clone therefore starts with pointer files, and schedule time
must fetch them.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datalad.api as dl
import pytest
from slurmtest import KW, one, text, wait_jobs

from datalad_hpcdata.dataset.handle import DatasetHandle
from datalad_hpcdata.jobs.record import normalize_record, parse_message
from datalad_hpcdata.slurm.argv import LONG_FLAGS
from datalad_hpcdata.slurm.argv import LONG_VALUE as LONG_VALUES
from datalad_hpcdata.slurm.batch import BatchError, header, script_index

BUSYBOX = shutil.which("busybox")
# the tested Charliecloud call format (docs/guides/containers.md)
CH_FMT = ("ch-run -b {img_dspath}:/mnt/0 "
          "-c /mnt/0/$(realpath --relative-to={img_dspath} .) "
          "{img} -- {cmd}")
JOB = """#!/bin/sh
#SBATCH --job-name=in-container
#SBATCH --output=logs/%x-%j.out
set -e
mkdir -p "$(dirname "$2")"
{ cat "$1"; cat /image-marker; echo "container=$DATALAD_CONTAINER_NAME"
  echo "job=$SLURM_JOB_ID"; } > "$2"
"""

needs_runtime = pytest.mark.skipif(
    not (shutil.which("ch-run") and BUSYBOX) and
    os.environ.get("HPCDATA_REQUIRE_SLURM") != "1",
    reason="needs ch-run (charliecloud-runtime) and busybox-static")


def git(path, *args):
    return subprocess.run(["git", *args], cwd=str(path), capture_output=True,
                          text=True, check=True).stdout


def build_image(root: Path) -> None:
    """A Charliecloud directory image: busybox, its applets, mount points."""
    for d in ("bin", "dev", "proc", "sys", "tmp", "home", "etc", "mnt/0",
              "root", "run", "var", "usr"):
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d / ".keep").write_text("")
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    for applet in ("sh", "cat", "echo", "mkdir", "dirname", "ls"):
        (root / "bin" / applet).symlink_to("busybox")
    for f in ("passwd", "group", "hosts", "resolv.conf"):
        (root / "etc" / f).write_text("")
    (root / "image-marker").write_text("inside the busybox image\n")


@pytest.fixture
def origin(tmp_path, monkeypatch):
    """A dataset with container 'bb' (an unlocked directory image) and
    code/cjob.sh; ch-run needs $USER, which a login shell would set."""
    monkeypatch.setenv("USER", getpass.getuser())
    ds = dl.create(str(tmp_path / "origin"), cfg_proc="text2git",
                   result_renderer="disabled")
    root = Path(ds.path)
    build_image(root / "env" / "bb")
    (root / "code").mkdir()
    (root / "code" / "cjob.sh").write_text(JOB)
    # for --alt-dir: no log directory of its own (it would have to exist
    # in the alt-dir)
    (root / "code" / "plain.sh").write_text(
        "\n".join(l for l in JOB.splitlines() if "--output" not in l))
    (root / "data").mkdir()
    (root / "data" / "in.txt").write_text("input data\n")
    (root / "logs").mkdir()
    (root / "logs" / ".keep").write_text("")
    ds.save(message="image and job", result_renderer="disabled")
    # datalad save would lock them again: commit the unlock with git
    git(root, "annex", "unlock", "env/bb")
    git(root, "commit", "-q", "-m", "unlock the image")
    ds.containers_add("bb", image="env/bb", call_fmt=CH_FMT,
                      result_renderer="disabled")
    return ds


def clone(origin, path):
    ds = dl.clone(origin.path, str(path), result_renderer="disabled")
    return ds


def schedule(ds, cmd, **kw):
    return dl.slurm_schedule(cmd, dataset=ds, **dict(KW, **kw))


def record(ds, rev="HEAD"):
    parsed = parse_message(git(ds.path, "log", "-1", "--format=%B", rev))
    assert parsed
    return parsed[1]


def finish_one(ds, jid):
    wait_jobs([jid])
    res = dl.slurm_finish(dataset=ds, **KW)
    return one(res, slurm_job_id=jid)


def open_jobs(ds):
    return DatasetHandle(ds).store.jobs(("submitting", "open"))


# ---------------------------------------------------------------- sbatch argv
@pytest.mark.parametrize("argv, at", [
    (["sbatch", "job.sh", "a"], 1),
    (["sbatch", "-t", "5", "job.sh"], 3),
    (["sbatch", "-t5", "job.sh"], 2),
    (["sbatch", "--time", "5", "job.sh"], 3),
    (["sbatch", "--time=5", "job.sh"], 2),
    (["sbatch", "-Hv", "job.sh"], 2),
    (["sbatch", "-Hn", "2", "job.sh"], 3),
    (["sbatch", "--part", "debug", "job.sh"], 3),
    (["sbatch", "--parsable", "--hold", "job.sh", "-t"], 3),
    (["sbatch", "--", "-odd.sh"], 2),
    (["sbatch", "-t", "5"], None),
])
def test_script_index(argv, at):
    assert script_index(argv) == at


@pytest.mark.parametrize("argv, why", [
    (["sbatch", "--wrap=hostname"], "--wrap"),
    (["sbatch", "a.sh", ":", "b.sh"], None),
    (["sbatch", "-n", "1", ":", "b.sh"], "heterogeneous"),
    (["sbatch", "--exc", "x", "job.sh"], "ambiguous"),
    (["sbatch", "--frobnicate", "job.sh"], "unknown"),
    (["sbatch", "-Z", "job.sh"], "unknown"),
])
def test_script_index_refuses(argv, why):
    if why is None:     # the first script comes before the ':'
        assert script_index(argv) == 1
        return
    with pytest.raises(BatchError, match=why):
        script_index(argv)


def test_header_is_what_sbatch_reads():
    shebang, head = header("#!/bin/bash -l\n#SBATCH -t 5\n\n# note\n"
                           "#SBATCH --mem=1G\necho hi\n#SBATCH -N 9\n")
    assert shebang == "#!/bin/bash -l"
    assert head == ["#SBATCH -t 5", "", "# note", "#SBATCH --mem=1G"]
    with pytest.raises(BatchError, match="#!"):
        header("echo no shebang\n")


@pytest.mark.slurm
def test_option_table_matches_sbatch(slurm, tmp_path):
    """Every option of the table is what this sbatch says: a flag leaves
    the next argument alone, an option with a value takes it."""
    script = tmp_path / "t.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    wrong = []
    for name in sorted(LONG_FLAGS | LONG_VALUES):
        # --wrap's value is the command (the script name here): it runs
        if name in ("help", "usage", "version", "wait", "verbose", "quiet",
                    "wrap"):
            continue
        proc = subprocess.run(["sbatch", "--test-only", "--" + name,
                               str(script)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)
        out = proc.stdout + proc.stderr
        took_value = "Batch script is empty" in out or str(script) in out \
            or "Invalid" in out or "invalid" in out \
            or "not a valid" in out
        flag = "to start at" in out
        assert flag or took_value, (name, out)
        if flag != (name in LONG_FLAGS):
            wrong.append((name, out.strip()))
    assert not wrong, wrong


# ------------------------------------------------------------- in a container
@pytest.mark.slurm
@needs_runtime
def test_container_job_fetch_record_reschedule(slurm, origin, tmp_path):
    ds = clone(origin, tmp_path / "clone")
    root = Path(ds.path)
    busybox = root / "env" / "bb" / "bin" / "busybox"
    assert busybox.stat().st_size < 1024        # an absent unlocked file
    res = schedule(ds, "sbatch code/cjob.sh {inputs} {outputs}",
                   inputs=["data/in.txt"], outputs=["out/res.txt"],
                   container="bb")
    jid = one(res, action="slurm-schedule", status="ok")["slurm_job_id"]
    # the image was fetched at schedule time
    assert busybox.stat().st_size > 100000
    r = finish_one(ds, jid)
    assert r["status"] == "ok", r
    out = (root / "out" / "res.txt").read_text()
    assert out == ("input data\ninside the busybox image\ncontainer=bb\n"
                   "job=%s\n" % jid)
    rec = record(ds)
    # the script's #SBATCH lines applied: its job name and log pattern
    assert rec["slurm_outputs"] == ["logs/in-container-%s.out" % jid]
    assert git(root, "ls-files", "logs/in-container-%s.out" % jid)
    assert rec["cmd"] == "sbatch code/cjob.sh {inputs} {outputs}"
    assert rec["extra_inputs"] == ["env/bb"]
    assert rec["container"] == {
        "name": "bb", "image": "env/bb", "image_dspath": ".",
        "cmdexec": CH_FMT, "extra_inputs": []}
    assert normalize_record(rec)["container"]["name"] == "bb"
    first = git(root, "rev-parse", "HEAD").strip()
    # reschedule reuses the recorded container
    res = dl.slurm_reschedule(dataset=ds, **KW)
    jid2 = one(res, action="slurm-reschedule", status="ok")["slurm_job_id"]
    r2 = finish_one(ds, jid2)
    assert r2["status"] == "ok", r2
    rec2 = record(ds)
    assert rec2["slurm_job_id"] == int(jid2)
    assert rec2["container"] == rec["container"]
    assert rec2["chain"] == [first]
    assert (root / "out" / "res.txt").read_text().endswith(
        "container=bb\njob=%s\n" % jid2)


@pytest.mark.slurm
@needs_runtime
def test_container_with_alt_dir(slurm, origin, tmp_path):
    alt = tmp_path / "alt"
    res = schedule(origin, "sbatch code/plain.sh {inputs} {outputs}",
                   inputs=["data/in.txt"], outputs=["out/res.txt"],
                   container="bb", alt_dir=str(alt))
    jid = one(res, action="slurm-schedule", status="ok")["slurm_job_id"]
    # the image and the script were staged as content
    assert (alt / "env" / "bb" / "bin" / "busybox").stat().st_size > 100000
    assert (alt / "code" / "plain.sh").read_text().startswith("#!/bin/sh")
    r = finish_one(origin, jid)
    assert r["status"] == "ok", r
    out = (Path(origin.path) / "out" / "res.txt").read_text()
    assert "inside the busybox image\ncontainer=bb\n" in out
    assert record(origin)["alt_dir"] == str(alt)


@pytest.mark.slurm
@needs_runtime
def test_records_name_the_image_like_containers_run(slurm, origin):
    """containers-run puts the image first in extra_inputs; so do we."""
    res = origin.containers_run("cat /image-marker > {outputs}",
                                container_name="bb", outputs=["cr.txt"],
                                result_renderer="disabled")
    assert any(r["status"] == "ok" for r in res)
    theirs = json.loads(git(origin.path, "log", "-1", "--format=%B").split(
        "=== Do not change lines below ===\n")[1].split("\n^^^")[0])
    assert (Path(origin.path) / "cr.txt").read_text() == \
        "inside the busybox image\n"
    res = schedule(origin, "sbatch code/cjob.sh {inputs} {outputs}",
                   inputs=["data/in.txt"], outputs=["out/res.txt"],
                   container="bb")
    jid = one(res, action="slurm-schedule", status="ok")["slurm_job_id"]
    assert finish_one(origin, jid)["status"] == "ok"
    assert record(origin)["extra_inputs"][:1] == theirs["extra_inputs"][:1]


# ----------------------------------------------------------------- bad input
def _nothing_happened(ds, res, *words):
    r = one(res, action="slurm-schedule")
    assert r["status"] in ("impossible", "error"), r
    assert "slurm_job_id" not in r
    for w in words:
        assert w in text(r), text(r)
    assert open_jobs(ds) == []
    assert not (Path(ds.path) / "out").exists()
    return r


@pytest.mark.slurm
def test_unknown_container(slurm, origin):
    head = git(origin.path, "rev-parse", "HEAD")
    res = schedule(origin, "sbatch code/cjob.sh", outputs=["out/x"],
                   container="nope")
    _nothing_happened(origin, res, "unknown container 'nope'", "bb")
    assert git(origin.path, "rev-parse", "HEAD") == head


@pytest.mark.slurm
def test_no_container_registered(slurm, dataset):
    res = schedule(dataset, "sbatch code/job.sh", outputs=["out/x"],
                   container="bb")
    _nothing_happened(dataset, res, "no container is registered")


@pytest.mark.slurm
def test_datalad_container_missing(slurm, origin, monkeypatch):
    # an import of a module set to None fails as if it were not installed
    monkeypatch.setitem(sys.modules, "datalad_container", None)
    monkeypatch.setitem(sys.modules, "datalad_container.containers_list",
                        None)
    res = schedule(origin, "sbatch code/cjob.sh", outputs=["out/x"],
                   container="bb")
    _nothing_happened(origin, res, "datalad-container", "not installed")


@pytest.mark.slurm
@pytest.mark.parametrize("cmd, why", [
    ("code/cjob.sh", "sbatch call"),
    ("sbatch --wrap=hostname", "--wrap"),
    ("sbatch -t 5", "names no batch script"),
    ("sbatch data/in.txt", "'#!'"),
])
def test_unusable_command(slurm, origin, cmd, why):
    res = schedule(origin, cmd, outputs=["out/x"], container="bb")
    _nothing_happened(origin, res, why)


@pytest.mark.slurm
def test_image_content_not_fetchable(slurm, origin, tmp_path):
    ds = clone(origin, tmp_path / "clone")
    # the only copy of the image's content goes away
    git(origin.path, "annex", "drop", "--force", "env/bb")
    res = schedule(ds, "sbatch code/cjob.sh {inputs} {outputs}",
                   inputs=["data/in.txt"], outputs=["out/res.txt"],
                   container="bb")
    r = _nothing_happened(ds, res, "could not get input content",
                          "env/bb/bin/busybox")
    assert r["status"] == "error"
    # the claim was released: the same output can be scheduled now
    assert DatasetHandle(ds).store.con.execute(
        "SELECT COUNT(*) FROM claims").fetchone()[0] == 0
