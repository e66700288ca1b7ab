"""Array task ids and per-task output patterns (no cluster needed)."""

from __future__ import annotations

import pytest

from datalad_hpcdata.jobs.errors import ScheduleError
from datalad_hpcdata.jobs.tasks import (
    array_tasks,
    expand,
    is_pattern,
    task_claims,
    task_inputs,
    task_override,
)
from datalad_hpcdata.slurm.argv import format_array, parse_array


@pytest.mark.parametrize("value, tasks, throttle", [
    ("0-3", [0, 1, 2, 3], None),
    ("1-9:2", [1, 3, 5, 7, 9], None),
    ("3,17,999", [3, 17, 999], None),
    ("1,4-6%2", [1, 4, 5, 6], 2),
    ("0-999%50", list(range(1000)), 50),
    ("7", [7], None),
])
def test_parse_array(value, tasks, throttle):
    assert parse_array(value) == (tasks, throttle)


@pytest.mark.parametrize("value", ["", "a-b", "5-1", "1-9:0", "1%x", "1;2"])
def test_parse_array_refuses(value):
    with pytest.raises(ValueError):
        parse_array(value)


def test_format_array_round_trip():
    assert format_array([3, 17, 18, 19, 999], 5) == "3,17-19,999%5"
    assert format_array([2]) == "2"
    assert parse_array(format_array(range(0, 100, 3), 4)) == (
        list(range(0, 100, 3)), 4)


def test_patterns():
    assert is_pattern("res/sim-%a") and is_pattern("res/%A/x")
    assert is_pattern("res/sim-%4a")
    assert not is_pattern("res/100%%a") and not is_pattern("res/x")
    assert expand("res/sim-%3a.txt", 7, None) == "res/sim-007.txt"
    assert expand("res/%A/%a", 2, "55") == "res/55/2"
    assert expand("res/%A/%a", 2, None) == "res/*/2"
    assert expand("100%%a-%a", 1, None) == "100%a-1"


def test_claims_follow_the_tasks():
    assert task_claims(["r/s-%a"], [1, 3]) == ["r/s-1", "r/s-3"]
    assert task_claims(["r/%A_%a.txt"], [1, 3]) == ["r"]
    with pytest.raises(ScheduleError, match="not an array job"):
        array_tasks(None, ["r/s-%a"])
    with pytest.raises(ScheduleError, match="--array"):
        array_tasks("1-x", ["r/s-%a"])


def _record(states, spec="0-4%2"):
    return {"slurm_job_id": 9, "array_spec": spec, "array_tasks": {
        str(t): {"state": s} for t, s in states.items()}}


def test_task_override():
    rec = _record({0: "COMPLETED", 1: "TIMEOUT", 2: "COMPLETED",
                   3: "FAILED", 4: "COMPLETED"})
    assert task_override(rec, True, None) == "1,3%2"
    assert task_override(rec, False, "0-2") == "0-2%2"
    with pytest.raises(ValueError, match="task 7 not in"):
        task_override(rec, False, "4,7")
    done = _record({0: "COMPLETED"}, "0")
    with pytest.raises(ValueError, match="no failed tasks"):
        task_override(done, True, None)
    with pytest.raises(ValueError, match="not an array job"):
        task_override({"slurm_job_id": 3}, True, None)


# ----------------------------------------- alt-dir: hashed while copied
@pytest.mark.parametrize("size", [0, 1, (32 << 20) + 3])
@pytest.mark.parametrize("kernel", [True, False])
def test_copy_hashed_hashes_the_copy(tmp_path, monkeypatch, size, kernel):
    import errno
    import hashlib
    import os

    from datalad_hpcdata.altdir import files
    if not kernel:
        def refuse(*a):
            raise OSError(errno.EXDEV, "cross-device")
        monkeypatch.setattr(files.os, "copy_file_range", refuse)
    data = os.urandom(size)
    (tmp_path / "src").write_bytes(data)
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        got = files.copy_hashed(src, dst, "md5")
    finally:
        os.close(src)
        os.close(dst)
    assert got == (size, hashlib.md5(data).hexdigest())
    assert (tmp_path / "dst").read_bytes() == data


def test_plan_keys_honours_the_dataset(tmp_path):
    import datalad.api as dl

    from datalad_hpcdata.dataset.annexkeys import plan_keys
    plain = dl.create(str(tmp_path / "plain"), result_renderer="disabled")
    sizes = {"big.bin": 1 << 20, "small.txt": 10, ".gitignore": 3}
    assert plan_keys(plain.path, sizes) == {"big.bin": ("MD5E", "md5"),
                                            "small.txt": ("MD5E", "md5")}
    # dotfiles go to git with git annex add unless annex.dotfiles is set
    dots = {"out/.hidden": 1, ".cache/x.bin": 1, "out/y.bin": 1}
    assert plan_keys(plain.path, dots) == {"out/y.bin": ("MD5E", "md5")}
    plain.config.set("annex.dotfiles", "true", scope="local")
    assert set(plan_keys(plain.path, dots)) == set(dots)
    plain.config.unset("annex.dotfiles", scope="local")
    # a largefiles rule is git-annex's to evaluate: git annex add then
    text = dl.create(str(tmp_path / "text"), cfg_proc="text2git",
                     result_renderer="disabled")
    assert plan_keys(text.path, sizes) == {}
    (tmp_path / "plain" / ".gitattributes").write_text(
        "* annex.backend=SHA256E\n*.raw annex.backend=BLAKE2B256\n")
    assert plan_keys(plain.path, {"big.bin": 1, "x.raw": 1}) == {
        "big.bin": ("SHA256E", "sha256")}
    nogit = dl.create(str(tmp_path / "nogit"), annex=False,
                      result_renderer="disabled")
    assert plan_keys(nogit.path, sizes) == {}


def test_plan_reads_the_array_from_the_script(tmp_path):
    """#SBATCH --array in the script counts; the command line wins."""
    import datalad.api as dl

    from datalad_hpcdata.dataset.handle import DatasetHandle
    from datalad_hpcdata.jobs.schedule import plan
    ds = dl.create(str(tmp_path / "ds"), result_renderer="disabled")
    (tmp_path / "ds" / "arr.sh").write_text(
        "#!/bin/sh\n#SBATCH --job-name=x\n#SBATCH --array=2-8:3%2\ntrue\n")
    ds.save(result_renderer="disabled")
    handle = DatasetHandle(ds)
    spec = plan(handle, "sbatch arr.sh {outputs}", ds.path,
                outputs=["r/s-%a"])
    assert spec.tasks == [2, 5, 8] and spec.array_spec == "2-8:3%2"
    assert spec.claims == ["r/s-2", "r/s-5", "r/s-8"]
    assert spec.outputs == ["r/s-%a"]
    assert spec.cmd_expanded == "sbatch arr.sh r/s-%a"
    spec = plan(handle, "sbatch --arr 0,1 arr.sh", ds.path,
                outputs=["r/s-%a", "r/all.txt"])
    assert spec.tasks == [0, 1]
    assert spec.claims == ["r/all.txt", "r/s-0", "r/s-1"]
    # re-running some tasks: --array is given after the user's options
    spec = plan(handle, "sbatch -J y arr.sh", ds.path, outputs=["r/s-%a"],
                array="5%2")
    assert spec.argv[:4] == ["sbatch", "-J", "y", "--array=5%2"]
    assert spec.tasks == [5] and spec.array_override == "5%2"


def test_per_task_inputs_expand_for_the_tasks():
    assert task_inputs(["code/x", "p/%a.txt", "q/%2a"], [1, 2]) == [
        "code/x", "p/1.txt", "q/01", "p/2.txt", "q/02"]
    assert task_inputs(["code/x"], [1, 2]) == ["code/x"]
    with pytest.raises(ScheduleError, match="%A"):
        task_inputs(["p/%A-%a"], [1])
    with pytest.raises(ScheduleError, match="input 'p/%a' contains"):
        array_tasks(None, ["p/%a"], "input")
