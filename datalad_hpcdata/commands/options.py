"""Parameters shared by the command classes."""

from __future__ import annotations

from datalad.distribution.dataset import EnsureDataset
from datalad.support.constraints import EnsureNone, EnsureStr
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
