"""Unit tests for datalad_hpcdata.altdir (pure file-system logic)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from datalad_hpcdata.altdir import (
    FetchReport,
    StageReport,
    StagingError,
    check_alt_dir,
    cleanup,
    copyback,
    fetch_outputs,
    prepare_output_dirs,
    stage_inputs,
    staged_overlaps,
    staged_path,
)
from datalad_hpcdata.altdir import files as altdir_files

ANNEX_CONTENT = b"annexed content\n" * 100


def _annex_file(ds: Path, rel: str, content: bytes, present=True) -> Path:
    """Simulate an annexed file: a relative symlink into .git/annex/objects."""
    key = "SHA256E-s%d--%s" % (len(content),
                               hashlib.sha256(content).hexdigest())
    obj = ds / ".git" / "annex" / "objects" / "Xx" / "Yy" / key / key
    if present:
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(content)
        obj.chmod(0o444)
    link = ds / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(obj, link.parent))
    return obj


@pytest.fixture
def ds(tmp_path):
    root = tmp_path / "ds"
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "code").mkdir()
    (root / "code" / "job.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "code" / "job.sh").chmod(0o755)
    (root / "data" / "sub" / "deeper").mkdir(parents=True)
    (root / "data" / "plain.txt").write_text("plain input\n")
    (root / "data" / "sub" / "deeper" / "nested.txt").write_text("nested\n")
    (root / "data" / "empty").mkdir()
    _annex_file(root, "data/sub/big.dat", ANNEX_CONTENT)
    return root


@pytest.fixture
def alt(tmp_path, ds):
    return check_alt_dir(str(tmp_path / "scratch" / "alt"), str(ds))


def _snapshot(root: Path) -> dict:
    """Every path below root with its kind and content (links unresolved)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():
                out[str(p)] = ("dir",)
            else:
                out[str(p)] = ("file", p.read_bytes())
    return out


# ------------------------------------------------------------ alt dir ---

def test_check_alt_dir_creates_and_returns_realpath(tmp_path, ds):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    got = check_alt_dir(str(tmp_path / "link" / "a" / "b"), str(ds))
    assert got == os.path.realpath(real / "a" / "b")
    assert os.path.isdir(got)
    assert os.listdir(got) == []  # the write probe left nothing behind
    # idempotent
    assert check_alt_dir(got, str(ds)) == got


@pytest.mark.parametrize("where", ["root", "inside", "inside-new", "parent",
                                   "ancestor", "fs-root"])
def test_check_alt_dir_refusals(tmp_path, ds, where):
    target = {
        "root": str(ds),
        "inside": str(ds / "data"),
        "inside-new": str(ds / "scratch" / "new"),
        "parent": str(ds.parent),
        "ancestor": str(ds.parent.parent),
        "fs-root": "/",
    }[where]
    before = _snapshot(tmp_path)
    with pytest.raises(StagingError):
        check_alt_dir(target, str(ds))
    assert _snapshot(tmp_path) == before


def test_check_alt_dir_inside_dataset_through_symlink(tmp_path, ds):
    (tmp_path / "sneaky").symlink_to(ds / "data")
    with pytest.raises(StagingError, match="inside the dataset"):
        check_alt_dir(str(tmp_path / "sneaky" / "x"), str(ds))
    assert not (ds / "data" / "x").exists()


def test_check_alt_dir_parent_message(ds):
    with pytest.raises(StagingError, match="parent directory"):
        check_alt_dir(str(ds.parent), str(ds))
    with pytest.raises(StagingError, match="file system root"):
        check_alt_dir("/", str(ds))
    with pytest.raises(StagingError):
        check_alt_dir("", str(ds))


def test_check_alt_dir_not_creatable(tmp_path, ds):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(StagingError, match="cannot be created"):
        check_alt_dir(str(blocker / "alt"), str(ds))
    with pytest.raises(StagingError, match="not a directory"):
        check_alt_dir(str(blocker), str(ds))
    assert blocker.read_text() == "x"


def test_check_alt_dir_partial_creation_undone(tmp_path, ds, monkeypatch):
    real_mkdir = os.mkdir
    made = []

    def flaky_mkdir(path, *a, **k):
        if len(made) == 2:
            raise PermissionError(13, "Permission denied", path)
        real_mkdir(path, *a, **k)
        made.append(path)

    monkeypatch.setattr(os, "mkdir", flaky_mkdir)
    before = _snapshot(tmp_path)
    with pytest.raises(StagingError, match="cannot be created"):
        check_alt_dir(str(tmp_path / "n1" / "n2" / "n3"), str(ds))
    assert len(made) == 2
    assert _snapshot(tmp_path) == before  # n1/n2 removed again


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_check_alt_dir_not_writable(tmp_path, ds):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(StagingError):
            check_alt_dir(str(ro), str(ds))
        with pytest.raises(StagingError, match="cannot be created"):
            check_alt_dir(str(ro / "sub"), str(ds))
    finally:
        ro.chmod(0o755)


# -------------------------------------------------------------- paths ---

@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../../x",
                                 "a/..", ".", "./", ".git/config",
                                 "sub/.git/x", "a\0b"])
def test_staged_path_refuses_escapes(tmp_path, bad):
    with pytest.raises(StagingError):
        staged_path(str(tmp_path), bad)


def test_staged_path_ok_and_symlink_escape(tmp_path):
    root = tmp_path / "alt"
    root.mkdir()
    assert staged_path(str(root), "a/b/c.txt") == str(root / "a/b/c.txt")
    assert staged_path(str(root), "./a//b") == str(root / "a" / "b")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "evil").symlink_to(outside)
    with pytest.raises(StagingError, match="outside"):
        staged_path(str(root), "evil/x.txt")
    # the last component is not followed: the link itself is the path
    assert staged_path(str(root), "evil") == str(root / "evil")


def test_staged_overlaps():
    assert staged_overlaps(["a/b", "c"], ["a/b/c.txt", "d"]) == [
        ("a/b", "a/b/c.txt")]
    assert staged_overlaps(["res/run*/x.txt"], ["res/o.txt"]) == [
        ("res/run*/x.txt", "res/o.txt")]
    assert staged_overlaps(["ab"], ["a", "a/b", "abc"]) == []
    with pytest.raises(StagingError):
        staged_overlaps(["../x"], ["a"])


# ------------------------------------------------------------- inputs ---

def test_stage_nested_plain_and_annexed(ds, alt):
    rep = stage_inputs(str(ds), alt, ["data", "code/job.sh"])
    assert isinstance(rep, StageReport)
    assert rep.ok, rep.failed
    expected = ["code/job.sh", "data/plain.txt", "data/sub/big.dat",
                "data/sub/deeper/nested.txt"]
    assert rep.copied == expected
    assert rep.skipped == []
    assert rep.files == 4
    sizes = [len(b"#!/bin/sh\necho hi\n"), len(b"plain input\n"),
             len(ANNEX_CONTENT), len(b"nested\n")]
    assert rep.bytes == rep.copied_bytes == sum(sizes)
    a = Path(alt)
    big = a / "data" / "sub" / "big.dat"
    assert not big.is_symlink() and big.read_bytes() == ANNEX_CONTENT
    assert (a / "data/sub/deeper/nested.txt").read_text() == "nested\n"
    assert (a / "data" / "empty").is_dir()
    assert os.access(a / "code" / "job.sh", os.X_OK)
    assert not (a / ".git").exists()
    # mtime mirrors the source (basis for cheap re-staging)
    assert os.stat(a / "data/plain.txt").st_mtime_ns == \
        os.stat(ds / "data/plain.txt").st_mtime_ns
    # no temp files left behind
    assert not [p for p in a.rglob("*") if p.name.startswith(".hpcdata")]


def test_stage_single_annexed_file_and_duplicates(ds, alt):
    rep = stage_inputs(str(ds), alt, ["data/sub/big.dat", "data/sub/big.dat",
                                      "./data/sub/big.dat"])
    assert rep.copied == ["data/sub/big.dat"] and rep.files == 1
    assert (Path(alt) / "data/sub/big.dat").read_bytes() == ANNEX_CONTENT
    assert sorted(os.listdir(alt)) == ["data"]


def test_restage_skips_unchanged_and_recopies_changed(ds, alt):
    stage_inputs(str(ds), alt, ["data"])
    staged = Path(alt) / "data" / "plain.txt"
    ino = os.stat(staged).st_ino
    rep = stage_inputs(str(ds), alt, ["data"])
    assert rep.copied == [] and rep.copied_bytes == 0
    assert len(rep.skipped) == 3 and rep.files == 3
    assert os.stat(staged).st_ino == ino  # really not rewritten

    # changed content (different size) is copied again
    (ds / "data" / "plain.txt").write_text("plain input, changed\n")
    # same size, different content, different mtime
    nested = ds / "data/sub/deeper/nested.txt"
    nested.write_text("NESTED\n")
    os.utime(nested, ns=(0, os.stat(nested).st_mtime_ns + 5 * 10**9))
    rep = stage_inputs(str(ds), alt, ["data"])
    assert rep.copied == ["data/plain.txt", "data/sub/deeper/nested.txt"]
    assert rep.skipped == ["data/sub/big.dat"]
    assert staged.read_text() == "plain input, changed\n"
    assert (Path(alt) / "data/sub/deeper/nested.txt").read_text() == "NESTED\n"


def test_restage_same_content_different_mtime_is_skipped(ds, alt):
    stage_inputs(str(ds), alt, ["data/plain.txt"])
    src = ds / "data" / "plain.txt"
    os.utime(src, ns=(0, os.stat(src).st_mtime_ns + 7 * 10**9))
    rep = stage_inputs(str(ds), alt, ["data/plain.txt"])
    assert rep.skipped == ["data/plain.txt"] and rep.copied == []
    # mtime synchronised so the next run needs no hashing
    assert os.stat(Path(alt) / "data/plain.txt").st_mtime_ns == \
        os.stat(src).st_mtime_ns


def test_restage_replaces_modified_staged_copy(ds, alt):
    stage_inputs(str(ds), alt, ["data/plain.txt"])
    staged = Path(alt) / "data/plain.txt"
    staged.write_text("the job scribbled here\n")
    rep = stage_inputs(str(ds), alt, ["data/plain.txt"])
    assert rep.copied == ["data/plain.txt"]
    assert staged.read_text() == "plain input\n"


def test_stage_parallel_with_progress(ds, alt):
    many = ds / "many"
    many.mkdir()
    total_bytes = 0
    for i in range(40):
        content = os.urandom(1000 + i * 37)
        (many / ("f%02d.bin" % i)).write_bytes(content)
        total_bytes += len(content)
    calls = []
    threads = set()

    def progress(done, total, done_b, total_b):
        calls.append((done, total, done_b, total_b))
        threads.add(threading.get_ident())

    rep = stage_inputs(str(ds), alt, ["many"], jobs=8, progress=progress)
    assert rep.ok and rep.files == 40 and rep.bytes == total_bytes
    assert calls[0] == (0, 40, 0, total_bytes)
    assert calls[-1] == (40, 40, total_bytes, total_bytes)
    assert len(calls) == 41
    assert [c[0] for c in calls] == list(range(41))
    assert all(c[2] <= c[3] for c in calls)
    assert [c[2] for c in calls] == sorted(c[2] for c in calls)
    assert threads == {threading.get_ident()}  # called in the caller's thread
    for i in range(40):
        name = "f%02d.bin" % i
        assert (Path(alt) / "many" / name).read_bytes() == \
            (many / name).read_bytes()


def test_stage_uses_requested_number_of_workers(ds, alt, monkeypatch):
    seen = {}
    real = altdir_files.ThreadPoolExecutor

    def spy(max_workers):
        seen["n"] = max_workers
        return real(max_workers=max_workers)

    monkeypatch.setattr(altdir_files, "ThreadPoolExecutor", spy)
    stage_inputs(str(ds), alt, ["data"], jobs=3)
    assert seen["n"] == 3
    stage_inputs(str(ds), alt, ["data"], jobs=0)
    assert seen["n"] == 1


def test_stage_never_uses_a_shell(ds, alt, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("no subprocesses while staging")
    monkeypatch.setattr(subprocess, "Popen", boom)
    monkeypatch.setattr(os, "system", boom)
    assert stage_inputs(str(ds), alt, ["data"]).ok


def test_stage_problems_reported(ds, alt, tmp_path):
    _annex_file(ds, "data/absent.dat", b"not here", present=False)
    (ds / "data" / "dangling").symlink_to("nowhere")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (ds / "data" / "out-link").symlink_to(outside)
    (ds / "data" / "inner-link").symlink_to("plain.txt")
    (ds / "data" / "dirlink").symlink_to("sub/deeper")
    (ds / "data" / "gitlink").symlink_to("../.git/HEAD")
    (ds / "data" / "loop").symlink_to(".")
    rep = stage_inputs(str(ds), alt, ["data", "nope.txt"])
    failed = dict(rep.failed)
    assert "not present" in failed["data/absent.dat"]
    assert "dangling" in failed["data/dangling"]
    assert "outside the dataset" in failed["data/out-link"]
    assert "outside the dataset" in failed["data/gitlink"]
    assert "loop" in failed["data/loop"]
    assert "does not exist" in failed["nope.txt"]
    assert not rep.ok
    a = Path(alt)
    # in-dataset symlinks are dereferenced
    assert (a / "data/inner-link").read_text() == "plain input\n"
    assert not (a / "data/inner-link").is_symlink()
    assert (a / "data/dirlink/nested.txt").read_text() == "nested\n"
    assert not (a / "data/out-link").exists()
    assert (a / "data/plain.txt").exists()  # the rest was staged


def test_stage_refuses_bad_paths_without_changes(ds, alt):
    for bad in (["data", "../x"], ["/etc/passwd"], [".git/config"], ["."]):
        with pytest.raises(StagingError):
            stage_inputs(str(ds), alt, bad)
    assert os.listdir(alt) == []


def test_stage_replaces_symlink_in_staging(ds, alt, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch")
    (Path(alt) / "data").mkdir()
    (Path(alt) / "data" / "plain.txt").symlink_to(victim)
    rep = stage_inputs(str(ds), alt, ["data/plain.txt"])
    assert rep.copied == ["data/plain.txt"]
    assert victim.read_text() == "do not touch"
    staged = Path(alt) / "data" / "plain.txt"
    assert not staged.is_symlink() and staged.read_text() == "plain input\n"


def test_stage_refuses_symlinked_dir_escape_in_staging(ds, alt, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (Path(alt) / "data").symlink_to(outside)
    with pytest.raises(StagingError, match="outside"):
        stage_inputs(str(ds), alt, ["data/plain.txt"])
    assert os.listdir(outside) == []


# ------------------------------------------------------------ outputs ---

def test_prepare_outputs_creates_parents_and_removes_stale(ds, alt):
    a = Path(alt)
    (a / "res" / "old").mkdir(parents=True)
    (a / "res" / "old" / "stale.txt").write_text("stale")
    (a / "res" / "out.txt").write_text("stale output")
    (a / "res" / "keep.txt").write_text("not an output")
    (a / "logs").mkdir()
    (a / "logs" / "dangling").symlink_to("/nonexistent")
    removed = prepare_output_dirs(alt, ["res/old", "res/out.txt",
                                        "new/deep/x.txt", "logs/dangling"])
    assert removed == ["logs/dangling", "res/old", "res/out.txt"]
    assert not (a / "res" / "old").exists()
    assert not (a / "res" / "out.txt").exists()
    assert (a / "res" / "keep.txt").read_text() == "not an output"
    assert (a / "new" / "deep").is_dir()
    assert not (a / "new" / "deep" / "x.txt").exists()
    assert not os.path.lexists(a / "logs" / "dangling")


def test_prepare_outputs_glob_and_dataset_dirs(ds, alt):
    a = Path(alt)
    (ds / "results").mkdir()
    (a / "res" / "run1").mkdir(parents=True)
    (a / "res" / "run1" / "x.txt").write_text("old")
    (a / "res" / "run1" / "y.txt").write_text("other")
    removed = prepare_output_dirs(alt, ["res/run*/x.txt", "results"],
                                  ds_root=str(ds))
    assert removed == ["res/run1/x.txt"]
    assert (a / "res" / "run1" / "y.txt").exists()
    assert (a / "results").is_dir()


def test_prepare_outputs_refusals_change_nothing(ds, alt, tmp_path):
    a = Path(alt)
    (a / "res").write_text("a file where a dir is needed")
    (a / "stale.txt").write_text("stale")
    before = _snapshot(tmp_path)
    for bad in (["stale.txt", "../escape"], ["/abs"], ["stale.txt", "res/x"],
                ["*"]):
        with pytest.raises(StagingError):
            prepare_output_dirs(alt, bad)
        assert _snapshot(tmp_path) == before
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_text("precious")
    (a / "lnk").symlink_to(outside)
    with pytest.raises(StagingError):
        prepare_output_dirs(alt, ["lnk/x"])
    assert (outside / "x").read_text() == "precious"


def _job_writes(alt, files: dict):
    for rel, content in files.items():
        p = Path(alt) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)


def test_fetch_outputs_nested_and_logs(ds, alt):
    prepare_output_dirs(alt, ["res", "out/a.txt", "log.slurm-7.out"])
    _job_writes(alt, {"res/x/one.txt": b"one\n", "res/two.bin": b"\0" * 5000,
                      "out/a.txt": b"a\n", "log.slurm-7.out": b"log\n"})
    (Path(alt) / "res" / "emptydir").mkdir()
    end = time.time()
    calls = []
    rep = fetch_outputs(str(ds), alt, ["res", "out/a.txt"],
                        rel_logs=["log.slurm-7.out"], job_end_time=end,
                        progress=lambda *a: calls.append(a))
    assert isinstance(rep, FetchReport)
    assert rep.ok, rep
    assert rep.copied == ["log.slurm-7.out", "out/a.txt", "res/two.bin",
                          "res/x/one.txt"]
    assert rep.files == 4 and rep.bytes == 4 + 5000 + 2 + 4
    assert (ds / "res/x/one.txt").read_bytes() == b"one\n"
    assert (ds / "res/two.bin").read_bytes() == b"\0" * 5000
    assert (ds / "log.slurm-7.out").read_text() == "log\n"
    assert (ds / "res" / "emptydir").is_dir()
    assert calls[-1] == (4, 4, rep.bytes, rep.bytes)
    # copy, not move: the staging area is left for cleanup()
    assert (Path(alt) / "res/two.bin").exists()
    assert not [p for p in ds.rglob(".hpcdata-tmp-*")]


def test_fetch_from_root_log_stays_in_dataset(ds, alt, tmp_path):
    """Peer defect D6: a log at ALT/log-N.out was copied to '/'."""
    _job_writes(alt, {"log-3.out": b"log\n"})
    rep = fetch_outputs(str(ds), alt, [], rel_logs=["log-3.out"])
    assert rep.copied == ["log-3.out"]
    assert (ds / "log-3.out").read_text() == "log\n"
    assert not (tmp_path / "log-3.out").exists()


def test_fetch_missing_outputs_reported(ds, alt):
    _job_writes(alt, {"res/a.txt": b"a"})
    rep = fetch_outputs(str(ds), alt, ["res/a.txt", "res/b.txt",
                                       "other/run*/x.txt"],
                        rel_logs=["log.slurm-1.out"])
    assert rep.copied == ["res/a.txt"]
    assert rep.missing == ["res/b.txt", "other/run*/x.txt",
                           "log.slurm-1.out"]
    assert not rep.ok


def test_fetch_glob_outputs(ds, alt):
    _job_writes(alt, {"res/run1/x.txt": b"1", "res/run2/x.txt": b"2",
                      "res/run2/y.txt": b"no"})
    rep = fetch_outputs(str(ds), alt, ["res/run*/x.txt"])
    assert rep.copied == ["res/run1/x.txt", "res/run2/x.txt"]
    assert not (ds / "res/run2/y.txt").exists()


def test_fetch_tamper_detection(ds, alt):
    _job_writes(alt, {"res/ok.txt": b"ok", "res/late.txt": b"late",
                      "res/edge.txt": b"edge", "res/d/deep.txt": b"deep"})
    end = 1_700_000_000.0
    a = Path(alt)
    os.utime(a / "res/ok.txt", (end - 100, end - 100))
    os.utime(a / "res/edge.txt", (end + 1.5, end + 1.5))  # within tolerance
    os.utime(a / "res/late.txt", (end + 60, end + 60))
    os.utime(a / "res/d/deep.txt", (end + 3600, end + 3600))
    rep = fetch_outputs(str(ds), alt, ["res"], job_end_time=end)
    assert rep.tampered == ["res/d/deep.txt", "res/late.txt"]
    assert rep.copied == ["res/edge.txt", "res/ok.txt"]
    assert not (ds / "res/late.txt").exists()
    assert not (ds / "res/d/deep.txt").exists()
    assert not rep.ok
    # without an end time there is no tamper check
    rep = fetch_outputs(str(ds), alt, ["res"])
    assert rep.tampered == [] and len(rep.copied) == 4


def test_fetch_tampered_existing_dataset_file_untouched(ds, alt):
    (ds / "res").mkdir()
    (ds / "res" / "r.txt").write_text("committed version")
    _job_writes(alt, {"res/r.txt": b"tampered"})
    rep = fetch_outputs(str(ds), alt, ["res/r.txt"],
                        job_end_time=time.time() - 3600)
    assert rep.tampered == ["res/r.txt"]
    assert (ds / "res/r.txt").read_text() == "committed version"


def test_fetch_replaces_annex_symlink_not_its_object(ds, alt):
    obj = _annex_file(ds, "res/model.bin", b"old annexed result")
    _job_writes(alt, {"res/model.bin": b"new result"})
    rep = fetch_outputs(str(ds), alt, ["res/model.bin"])
    assert rep.copied == ["res/model.bin"]
    target = ds / "res" / "model.bin"
    assert not target.is_symlink()
    assert target.read_bytes() == b"new result"
    assert obj.read_bytes() == b"old annexed result"  # object untouched


def test_fetch_replaces_symlink_pointing_outside(ds, alt, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (ds / "res").mkdir()
    (ds / "res" / "o.txt").symlink_to(victim)
    _job_writes(alt, {"res/o.txt": b"result"})
    assert fetch_outputs(str(ds), alt, ["res/o.txt"]).ok
    assert victim.read_text() == "precious"
    assert (ds / "res/o.txt").read_text() == "result"


def test_fetch_never_writes_outside_dataset(ds, alt, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (ds / "res").symlink_to(outside)  # a symlinked dir leading out
    _job_writes(alt, {"res/x.txt": b"x", "ok.txt": b"ok"})
    with pytest.raises(StagingError):
        fetch_outputs(str(ds), alt, ["res/x.txt", "ok.txt"])
    assert os.listdir(outside) == []
    assert not (ds / "ok.txt").exists()  # refused before changing anything
    # a glob hit leading out is reported, the rest copied
    _job_writes(alt, {"res/y.txt": b"y"})
    rep = fetch_outputs(str(ds), alt, ["res/*.txt", "ok.txt"])
    assert sorted(r for r, _ in rep.failed) == ["res/x.txt", "res/y.txt"]
    assert rep.copied == ["ok.txt"]
    assert os.listdir(outside) == []


def test_fetch_refuses_escapes(ds, alt):
    for bad in (["../x"], ["/etc/passwd"], [".git/config"], ["a/../../b"]):
        with pytest.raises(StagingError):
            fetch_outputs(str(ds), alt, bad)
    with pytest.raises(StagingError):
        fetch_outputs(str(ds), alt, [], rel_logs=["../log"])


def test_fetch_symlinks_in_staging_not_copied(ds, alt, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("secret")
    _job_writes(alt, {"res/real.txt": b"r"})
    (Path(alt) / "res" / "link").symlink_to(secret)
    (Path(alt) / "top").symlink_to(secret)
    rep = fetch_outputs(str(ds), alt, ["res", "top"])
    assert rep.copied == ["res/real.txt"]
    assert sorted(r for r, _ in rep.failed) == ["res/link", "top"]
    assert not os.path.lexists(ds / "res" / "link")
    assert not os.path.lexists(ds / "top")


def test_fetch_directory_in_the_way(ds, alt):
    (ds / "res" / "x.txt").mkdir(parents=True)
    (ds / "res" / "x.txt" / "inner").write_text("keep")
    _job_writes(alt, {"res/x.txt": b"file"})
    rep = fetch_outputs(str(ds), alt, ["res/x.txt"])
    assert [r for r, _ in rep.failed] == ["res/x.txt"]
    assert (ds / "res/x.txt/inner").read_text() == "keep"


def test_fetch_verification_failure_reported(ds, alt, monkeypatch):
    (ds / "res").mkdir()
    (ds / "res" / "v.txt").write_text("previous")
    _job_writes(alt, {"res/v.txt": b"good data", "res/w.txt": b"fine"})
    real_hash = copyback.hash_file

    def corrupting_hash(path):
        n, digest = real_hash(path)
        if os.path.basename(path).startswith(altdir_files.TMP_PREFIX) and \
                open(path, "rb").read() == b"good data":
            return n, "0" * 64  # pretend the copy got corrupted
        return n, digest

    monkeypatch.setattr(copyback, "hash_file", corrupting_hash)
    rep = fetch_outputs(str(ds), alt, ["res"])
    assert [r for r, _ in rep.failed] == ["res/v.txt"]
    assert "verification failed" in rep.failed[0][1]
    assert rep.copied == ["res/w.txt"]
    # the dataset file is untouched and no temp file is left
    assert (ds / "res/v.txt").read_text() == "previous"
    assert sorted(os.listdir(ds / "res")) == ["v.txt", "w.txt"]


def test_fetch_verifies_destination_content(ds, alt, monkeypatch):
    """The destination is hashed independently of the copy loop."""
    _job_writes(alt, {"r.bin": os.urandom(3 * altdir_files.CHUNK + 17)})
    hashed = []
    real_hash = copyback.hash_file

    def spy(path):
        hashed.append(path)
        return real_hash(path)

    monkeypatch.setattr(copyback, "hash_file", spy)
    rep = fetch_outputs(str(ds), alt, ["r.bin"])
    assert rep.ok
    assert len(hashed) == 1 and os.path.dirname(hashed[0]) == str(ds)
    assert (ds / "r.bin").read_bytes() == (Path(alt) / "r.bin").read_bytes()


def test_fetch_parallel_progress(ds, alt):
    files = {"out/f%02d" % i: os.urandom(500 + i) for i in range(25)}
    _job_writes(alt, files)
    calls = []
    rep = fetch_outputs(str(ds), alt, ["out"], jobs=6,
                        progress=lambda *a: calls.append(a))
    assert rep.files == 25 and rep.bytes == sum(map(len, files.values()))
    assert [c[0] for c in calls] == list(range(26))
    assert calls[-1][2] == calls[-1][3] == rep.bytes
    for rel, content in files.items():
        assert (ds / rel).read_bytes() == content


def test_fetch_preserves_executable_bit(ds, alt):
    _job_writes(alt, {"bin/tool.sh": b"#!/bin/sh\n"})
    (Path(alt) / "bin/tool.sh").chmod(0o755)
    fetch_outputs(str(ds), alt, ["bin/tool.sh"])
    assert os.access(ds / "bin/tool.sh", os.X_OK)


# ------------------------------------------------------------ cleanup ---

def test_cleanup_only_this_jobs_paths(ds, alt):
    a = Path(alt)
    stage_inputs(str(ds), alt, ["data/sub/deeper"])          # job A input
    _job_writes(alt, {"res/a/out.txt": b"A", "log-A.out": b"A",
                      "res/b/out.txt": b"B", "log-B.out": b"B",
                      "unrelated/file": b"u"})
    removed = cleanup(alt, ["data/sub/deeper", "res/a", "log-A.out"])
    assert removed == ["data", "data/sub", "data/sub/deeper",
                       "data/sub/deeper/nested.txt", "log-A.out", "res/a",
                       "res/a/out.txt"]
    assert not (a / "data").exists()        # pruned: became empty
    assert not (a / "res" / "a").exists()
    assert (a / "res" / "b" / "out.txt").read_bytes() == b"B"  # sibling job
    assert (a / "log-B.out").exists()
    assert (a / "unrelated" / "file").exists()
    assert os.path.isdir(alt)               # never the root itself
    # cleaning again is a no-op
    assert cleanup(alt, ["res/a", "log-A.out"]) == []


def test_cleanup_keeps_paths_of_other_open_jobs(ds, alt):
    a = Path(alt)
    # both jobs read data/; job B has an output dir prepared but still empty
    stage_inputs(str(ds), alt, ["data"])
    prepare_output_dirs(alt, ["res/A.txt", "res/B/out.txt"])
    _job_writes(alt, {"res/A.txt": b"A"})
    removed = cleanup(alt, ["data", "res/A.txt"],
                      keep=["data/sub", "res/B/out.txt"])
    assert "res/A.txt" in removed and "data/plain.txt" in removed
    assert (a / "data/sub/big.dat").read_bytes() == ANNEX_CONTENT
    assert (a / "data/sub/deeper/nested.txt").exists()
    assert not (a / "data/plain.txt").exists()
    assert not (a / "data/empty").exists()
    assert (a / "res" / "B").is_dir()   # the other job's prepared dir stays
    assert "res" not in removed and "data" not in removed


def test_cleanup_globs_and_refusals(ds, alt, tmp_path):
    _job_writes(alt, {"res/run1/x.txt": b"1", "res/run1/y.txt": b"y"})
    assert cleanup(alt, ["res/run*/x.txt"]) == ["res/run1/x.txt"]
    assert (Path(alt) / "res/run1/y.txt").exists()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_text("precious")
    (Path(alt) / "lnk").symlink_to(outside)
    for bad in (["../x"], ["/"], ["."], ["lnk/x"]):
        with pytest.raises(StagingError):
            cleanup(alt, bad)
    # removing the link removes the link only
    assert cleanup(alt, ["lnk"]) == ["lnk"]
    assert (outside / "x").read_text() == "precious"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_cleanup_read_only_dirs(alt):
    _job_writes(alt, {"res/ro/f.txt": b"x"})
    (Path(alt) / "res" / "ro").chmod(0o555)
    assert "res/ro/f.txt" in cleanup(alt, ["res"])
    assert not (Path(alt) / "res").exists()


# --------------------------------------------------- full round trip ---

def test_round_trip(ds, alt):
    rep = stage_inputs(str(ds), alt, ["data", "code"])
    assert rep.ok
    prepare_output_dirs(alt, ["res/summary.txt", "log.slurm-9.out"])
    # the "job"
    a = Path(alt)
    total = sum(len((a / r).read_bytes()) for r in rep.copied)
    (a / "res/summary.txt").write_text("%d\n" % total)
    (a / "log.slurm-9.out").write_text("done\n")
    end = time.time()
    fr = fetch_outputs(str(ds), alt, ["res/summary.txt"],
                       rel_logs=["log.slurm-9.out"], job_end_time=end)
    assert fr.ok and fr.files == 2
    assert (ds / "res/summary.txt").read_text() == "%d\n" % rep.bytes
    cleanup(alt, ["data", "code", "res/summary.txt", "log.slurm-9.out"])
    assert os.listdir(alt) == []


@pytest.mark.skipif(shutil.which("git-annex") is None,
                    reason="git-annex not available")
def test_real_git_annex(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@x")

    def run(*cmd):
        subprocess.run(cmd, cwd=str(root), check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    run("git", "init", "-q")
    run("git", "annex", "init", "-q", "test")
    (root / "in").mkdir()
    content = os.urandom(4096)
    (root / "in" / "blob.bin").write_bytes(content)
    run("git", "annex", "add", "-q", "in/blob.bin")
    run("git", "commit", "-q", "-m", "add")
    assert (root / "in" / "blob.bin").is_symlink()
    obj = os.path.realpath(root / "in" / "blob.bin")

    alt = check_alt_dir(str(tmp_path / "alt"), str(root))
    rep = stage_inputs(str(root), alt, ["in"])
    assert rep.copied == ["in/blob.bin"]
    staged = Path(alt) / "in" / "blob.bin"
    assert not staged.is_symlink() and staged.read_bytes() == content

    # the job overwrites it as an output; copy-back replaces the link
    staged.chmod(0o644)
    staged.write_bytes(b"new")
    fr = fetch_outputs(str(root), alt, ["in/blob.bin"])
    assert fr.ok
    assert not (root / "in" / "blob.bin").is_symlink()
    assert (root / "in" / "blob.bin").read_bytes() == b"new"
    with open(obj, "rb") as f:
        assert f.read() == content
