"""The one subprocess runner: fixed locale and time format, full errors."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import datalad.api as dl
import pytest
from slurmtest import KW, one, wait_jobs

from datalad_hpcdata.dataset.git import GitError, git
from datalad_hpcdata.runner import CommandError, run
from datalad_hpcdata.slurm import SlurmError

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")


def env_of(proc) -> dict:
    return dict(line.split("=", 1) for line in proc.stdout.splitlines()
                if "=" in line)


def test_fixed_settings_win_over_the_users(monkeypatch):
    monkeypatch.setenv("SLURM_TIME_FORMAT", "relative")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("HPCDATA_USER_VAR", "kept")
    env = env_of(run(["env"]))
    assert env["SLURM_TIME_FORMAT"] == "standard"
    assert env["LC_ALL"] == "C"
    assert env["HPCDATA_USER_VAR"] == "kept"
    # extra variables go on top of the user's, below the fixed ones
    env = env_of(run(["env"], env={"HPCDATA_USER_VAR": "x", "LC_ALL": "y"}))
    assert env["HPCDATA_USER_VAR"] == "x" and env["LC_ALL"] == "C"
    # a submission keeps the user's own settings (the job inherits them)
    env = env_of(run(["env"], fixed=False))
    assert env["SLURM_TIME_FORMAT"] == "relative"
    assert env["LC_ALL"] == "de_DE.UTF-8"


def test_errors_carry_argv_exit_code_cwd_and_stderr(tmp_path):
    with pytest.raises(CommandError) as e:
        run(["sh", "-c", "echo oops >&2; exit 3", "arg with space"],
            cwd=tmp_path, check=True)
    err = e.value
    assert err.argv == ["sh", "-c", "echo oops >&2; exit 3",
                        "arg with space"]
    assert err.returncode == 3 and err.cwd == str(tmp_path)
    assert err.stderr == "oops"
    for part in ("'arg with space'", "exit code 3", str(tmp_path), "oops"):
        assert part in str(err)
    # without check a failure is the caller's to read
    assert run(["sh", "-c", "exit 4"]).returncode == 4


def test_missing_program_and_timeout_raise_the_callers_error():
    with pytest.raises(SlurmError) as e:
        run(["hpcdata-no-such-program"], error=SlurmError)
    assert e.value.returncode == 127 and "command not found" in str(e.value)
    with pytest.raises(GitError, match="did not answer within 1 s"):
        run(["sleep", "5"], timeout=1, error=GitError)


def test_argv_is_logged_at_debug_level(caplog):
    with caplog.at_level(logging.DEBUG, logger="datalad.hpcdata.runner"):
        run(["echo", "a b"])
    assert "echo 'a b'" in caplog.text


def test_git_pathspecs_are_literal(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a*").write_text("star")
    (tmp_path / "ab").write_text("ab")
    git(tmp_path, "add", "a*")
    staged = git(tmp_path, "diff", "--cached", "--name-only").stdout.split()
    assert staged == ["a*"]


@pytest.mark.slurm
def test_user_time_format_does_not_change_what_finish_reads(
        slurm, dataset, monkeypatch):
    """With SLURM_TIME_FORMAT=relative sacct would print 'Today 12:00';
    the record still gets ISO times, and the job sees the user's value."""
    ds = dataset
    monkeypatch.setenv("SLURM_TIME_FORMAT", "relative")
    res = dl.slurm_schedule(
        "sbatch --wrap 'echo $SLURM_TIME_FORMAT > tf.txt'", dataset=ds,
        outputs=["tf.txt"], **KW)
    jid = one(res, action="slurm-schedule", status="ok")["slurm_job_id"]
    wait_jobs([jid])
    r = one(dl.slurm_finish(dataset=ds, **KW), slurm_job_id=jid)
    assert r["status"] == "ok", r
    assert (Path(ds.path) / "tf.txt").read_text() == "relative\n"
    msg = git(ds.path, "log", "-1", "--format=%B").stdout
    for key in ("submit_time", "start_time", "end_time"):
        value = re.search(r'"%s": "([^"]*)"' % key, msg).group(1)
        assert ISO.match(value), (key, value)
