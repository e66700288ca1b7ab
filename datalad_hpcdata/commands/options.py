"""Parameters shared by the command classes."""

from __future__ import annotations

from argparse import REMAINDER

from datalad.distribution.dataset import EnsureDataset
from datalad.interface.common_opts import jobs_opt, save_message_opt
from datalad.support.constraints import EnsureChoice, EnsureNone, EnsureStr
from datalad.support.param import Parameter

dataset_opt = Parameter(
    args=("-d", "--dataset"),
    doc="""dataset the jobs belong to (default: the dataset containing the
    current directory).""",
    constraints=EnsureDataset() | EnsureNone())

alt_dir_opt = Parameter(
    args=("-a", "--alt-dir"),
    metavar="DIR",
    doc="""stage inputs to DIR (e.g. on the parallel file system) and run
    the job there; outputs are copied back by slurm-finish. Defaults to the
    configuration item 'datalad.hpcdata.alt-dir'.""",
    constraints=EnsureStr() | EnsureNone())

# `datalad run`'s parameters that slurm-schedule shares, as DataLad defines
# them (datalad.core.local.run.Run._params_); copied because importing that
# module costs ~45 ms per call (tests/test_startup.py checks they agree)
run_params = dict(
    cmd=Parameter(
        args=("cmd",),
        nargs=REMAINDER,
        metavar="COMMAND",
        doc="""command for execution. A leading '--' can be used to
        disambiguate this command from the preceding options to
        DataLad."""),
    dataset=Parameter(
        args=("-d", "--dataset"),
        doc="""specify the dataset to record the command results in.
        An attempt is made to identify the dataset based on the current
        working directory. If a dataset is given, the command will be
        executed in the root directory of this dataset.""",
        constraints=EnsureDataset() | EnsureNone()),
    inputs=Parameter(
        args=("-i", "--input"),
        dest="inputs",
        metavar=("PATH"),
        action="append",
        doc="""A dependency for the run. Before running the command, the
        content for this relative path will be retrieved. A value of "."
        means "run :command:`datalad get .`". The value can also be a glob.
        [CMD: This option can be given more than once. CMD]"""),
    expand=Parameter(
        args=("--expand",),
        doc="""Expand globs when storing inputs and/or outputs in the
        commit message.""",
        constraints=EnsureChoice(None, "inputs", "outputs", "both")),
    assume_ready=Parameter(
        args=("--assume-ready",),
        constraints=EnsureChoice(None, "inputs", "outputs", "both"),
        doc="""Assume that inputs do not need to be retrieved and/or outputs
        do not need to unlocked or removed before running the command. This
        option allows you to avoid the expense of these preparation steps if
        you know that they are unnecessary."""),
    message=save_message_opt,
    dry_run=Parameter(
        args=("--dry-run",),
        doc="""Do not run the command; just display details about the
        command execution. A value of "basic" reports a few important
        details about the execution, including the expanded command and
        expanded inputs and outputs. "command" displays the expanded
        command only. Note that input and output globs underneath an
        uninstalled dataset will be left unexpanded because no subdatasets
        will be installed for a dry run.""",
        constraints=EnsureChoice(None, "basic", "command")),
    jobs=jobs_opt,
)
