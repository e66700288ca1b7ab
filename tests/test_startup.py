"""Start-up: ``datalad <our command> <short option>`` builds one parser.

DataLad logs ``Importing module X`` (level 5) for every command whose
parser it builds, so the log says exactly which parsers a real ``datalad``
process built.  Before the fix, ``datalad slurm-finish -l`` built all of
them (DataLad read ``-l`` as its own ``--log-level``); see
datalad_hpcdata/commands/cmdline.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from importlib import import_module

import pytest

import datalad_hpcdata
from datalad_hpcdata.commands.cmdline import (
    build_only_our_parser,
    command_name,
)

SUITE = datalad_hpcdata.command_suite[1]


def short_options():
    """(command, module, option, takes a value) for every short option."""
    out = []
    for module, cls_name, command, _ in SUITE:
        cls = getattr(import_module(module), cls_name)
        out.append((command, module, "-h", False))
        for param in cls._params_.values():
            for arg in param.cmd_args or ():
                if re.fullmatch(r"-[A-Za-z]", arg):
                    action = param.cmd_kwargs.get("action", "")
                    out.append((command, module, arg,
                                not str(action).startswith("store_")))
    return out


def built_parsers(*args) -> list[str]:
    env = dict(os.environ, DATALAD_LOG_LEVEL="5")
    proc = subprocess.run(["datalad", *args], capture_output=True,
                          text=True, env=env, timeout=300)
    return re.findall(r"Importing module (\S+)", proc.stdout + proc.stderr)


def test_every_command_has_short_options():
    found = {(c, o) for c, _, o, _ in short_options()}
    assert ("slurm-finish", "-l") in found
    assert {c for c, _ in found} == {s[2] for s in SUITE}


@pytest.mark.parametrize("command,module,option,value", short_options(),
                         ids=lambda x: x if isinstance(x, str) else "")
def test_short_option_builds_one_parser(command, module, option, value):
    # --version makes the command stop once its parser has parsed
    args = [command, option] + (["x"] if value else []) + ["--version"]
    assert built_parsers(*args) == [module]


def test_other_commands_untouched():
    """The control: DataLad's own command with an option its first pass
    cannot read still gets every parser (ours included)."""
    built = built_parsers("wtf", "-l")
    assert len(built) > 20
    assert "datalad_hpcdata.commands.finish" in built


@pytest.mark.parametrize("argv,expected", [
    (["datalad", "slurm-finish", "-l"], "slurm-finish"),
    (["datalad", "-l", "debug", "slurm-finish", "-l"], "slurm-finish"),
    (["datalad", "-ldebug", "slurm-finish"], "slurm-finish"),
    (["datalad", "--log-level=debug", "-f", "json", "slurm-schedule"],
     "slurm-schedule"),
    (["datalad", "-C", "slurm-finish", "save", "-m", "x"], "save"),
    (["datalad", "-c", "a.b=c", "--cmd", "slurm-reschedule"],
     "slurm-reschedule"),
    (["datalad", "--dbg", "wtf"], "wtf"),
    (["datalad", "-f"], None),
    (["datalad"], None),
])
def test_command_name(argv, expected):
    takes = {"-c", "-C", "-l", "--log-level", "-f", "--output-format"}
    assert command_name(argv, takes) == expected


def test_python_api_untouched():
    import datalad.cli.parser as parser
    before = parser.add_subparser
    assert build_only_our_parser(datalad_hpcdata.command_suite) is False
    assert parser.add_subparser is before


def imported_by(*args, cwd=None) -> set[str]:
    """Every module a real `datalad ...` process imported."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    proc = subprocess.run(["datalad", *args], capture_output=True,
                          text=True, env=env, timeout=300, cwd=cwd)
    return set(re.findall(r"^import time:.*\| +(\S+)$", proc.stderr, re.M))


@pytest.mark.slurm
def test_commands_do_not_import_what_they_do_not_use(slurm, dataset):
    mods = imported_by("slurm-schedule", "--dry-run", "basic", "-o", "x",
                       "sbatch", "code/job.sh", "{outputs}", cwd=dataset.path)
    assert "datalad_hpcdata.jobs.schedule" in mods     # it did run
    assert "datalad.core.local.run" not in mods
    mods = imported_by("slurm-finish", "-l", cwd=dataset.path)
    assert "datalad_hpcdata.jobs.finish" in mods
    assert "datalad_hpcdata.jobs.commit" not in mods
    assert "datalad_hpcdata.jobs.schedule" not in mods
    assert "datalad.core.local.run" not in mods


def test_run_parameters_are_datalads():
    from datalad.core.local.run import Run

    from datalad_hpcdata.commands.options import run_params

    def norm(doc):
        return " ".join((doc or "").split())

    for name, ours in run_params.items():
        theirs = Run._params_[name]
        assert ours.cmd_args == theirs.cmd_args, name
        assert ours.cmd_kwargs == theirs.cmd_kwargs, name
        assert repr(ours.constraints) == repr(theirs.constraints), name
        # DataLad appends a note to the shared jobs option for run itself
        assert norm(theirs._doc).startswith(norm(ours._doc)), name


@pytest.mark.parametrize("cmd", [
    "sbatch job.sh {inputs} {outputs}", ["sbatch", "job.sh", "a b"],
    ["sbatch job.sh"], ["--", "sbatch", "x"], "echo {dspath} {pwd} {sub}",
    "echo {inputs[0]} {outputs[1]}"])
def test_format_command_is_datalads(dataset, cmd):
    from datalad.core.local import run as dl_run

    from datalad_hpcdata.jobs import command
    dataset.config.set("datalad.run.substitutions.sub", "subst",
                       scope="local")
    kw = dict(pwd=dataset.path, dspath=dataset.path,
              inputs=["data/in.txt", "code/*.sh"], outputs=["o 1", "o2"])
    assert command.normalize_command(cmd) == dl_run.normalize_command(cmd)
    assert command.format_command(dataset, cmd, **dict(kw)) == \
        dl_run.format_command(dataset, cmd, **dict(kw))
    assert command.command_pwd(dataset) == \
        dl_run.get_command_pwds(dataset)[0]
    assert command.command_pwd(None) == dl_run.get_command_pwds(None)[0]
