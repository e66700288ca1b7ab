"""The examples in docs/pyslurm.md, docs/slurm-calls.md and the README's
pyslurm section do what they say.

The shell blocks of these pages are runnable as they stand (the backend
setting in a fresh dataset); what is shown but cannot run here (building
pyslurm, command lines with placeholders, error output) is a ``text``
block, checked below against what the code really does."""

from __future__ import annotations

import re
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest
from pyslurm_standin import Standin

from datalad_hpcdata.dataset.handle import DatasetHandle
from datalad_hpcdata.slurm import SlurmError
from datalad_hpcdata.slurm.cli import refused, sacct_argv
from datalad_hpcdata.slurm.parse import SQUEUE_FORMAT

REPO = Path(__file__).resolve().parents[1]
PYSLURM_MD = (REPO / "docs" / "pyslurm.md").read_text()
CALLS_MD = (REPO / "docs" / "slurm-calls.md").read_text()
README = (REPO / "README.md").read_text()


def blocks(text: str, lang: str | None = None) -> list[str]:
    """The fenced code blocks of a Markdown text (in lists too), of one
    language if `lang` is given."""
    found, current, kind = [], None, None
    for line in text.splitlines(keepends=True):
        fence = line.strip()
        if current is None and fence.startswith("```"):
            current, kind = [], fence[3:]
        elif current is not None and fence == "```":
            if lang is None or kind == lang:
                found.append(textwrap.dedent("".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return found


def flat(text: str) -> str:
    return " ".join(text.split())


def test_backend_setting_example(dataset, monkeypatch, tmp_path):
    config = [line for b in blocks(PYSLURM_MD, "sh")
              for line in b.splitlines() if line.startswith("git config")]
    readme = [line for b in blocks(README, "sh") for line in b.splitlines()]
    assert config and all(line in readme for line in config)  # the same
    cli_line, pyslurm_line = [shlex.split(line.split("#")[0])
                              for line in config]
    standin = Standin(monkeypatch, tmp_path)
    try:
        # a pyslurm for Slurm 25.11 on this Slurm 22.05 host
        standin.install("25.11.2", slurm="22.05.8")
        subprocess.run(cli_line, cwd=dataset.path, check=True)
        dataset.config.reload()
        assert DatasetHandle(dataset).backend.name == "cli"
        assert standin.slurm_calls == []      # cli never looks at pyslurm
        subprocess.run(pyslurm_line, cwd=dataset.path, check=True)
        dataset.config.reload()
        with pytest.raises(SlurmError) as err:
            DatasetHandle(dataset).backend
    finally:
        standin.close()
    shown = [b for b in blocks(PYSLURM_MD, "text")
             if "cannot be used here" in b][0]
    assert flat(shown) in flat(str(err.value))


def test_refusal_example():
    sbatch_said = [b for b in blocks(CALLS_MD, "text")
                   if "QOSMaxSubmitJobPerUserLimit" in b][0]
    proc = subprocess.CompletedProcess(["sbatch"], 1, "", sbatch_said)
    message = flat(str(refused(["sbatch"], proc)))
    reported = flat(re.search(r"datalad-hpcdata reports `(.*?)`", CALLS_MD,
                              re.S).group(1))
    assert message.startswith(reported.split("...")[0].rstrip(": "))


def test_query_example_is_what_runs():
    shown = [b for b in blocks(CALLS_MD, "text") if "sacct" in b][0]
    argv = sacct_argv(["101", "102"], 1.0e9)
    fixed = " ".join(argv[:argv.index("-j")])
    assert shown.startswith(fixed + " -j 101,102,... " +
                            " ".join(argv[argv.index("-o"):][:2]))
    assert "-S <" in shown and "-E now" in shown
    assert "--jobs=" in shown and SQUEUE_FORMAT.startswith(
        re.search(r"-O (\S+),\.\.\.", shown).group(1))


def test_backend_setting_block_runs(tmp_path):
    """The page's shell block, as a reader would run it."""
    script = "\n".join(blocks(PYSLURM_MD, "sh"))
    subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, check=True,
                   capture_output=True)
    got = subprocess.run(["git", "config", "datalad.hpcdata.backend"],
                         cwd=tmp_path / "backend-demo", capture_output=True,
                         text=True).stdout.strip()
    assert got == "pyslurm"
