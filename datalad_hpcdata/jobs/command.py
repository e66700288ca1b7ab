"""The submission command as ``datalad run`` reads it, without its import.

``datalad.core.local.run`` pulls in save, get, install, unlock, clone, ...
(~45 ms, the largest single cost of a ``slurm-schedule`` call).  These three
functions are DataLad's own (``normalize_command``, ``format_command``,
``get_command_pwds``), built on the same ``datalad.utils`` helpers;
tests/test_startup.py checks that they give what DataLad's give.
"""

from __future__ import annotations

from datalad.distribution.dataset import Dataset
from datalad.support.globbedpaths import GlobbedPaths
from datalad.utils import (
    SequenceFormatter,
    ensure_unicode,
    getpwd,
    join_cmdline,
    quote_cmdlinearg,
)


def normalize_command(command) -> str:
    """A command given as a list or a string, as one string."""
    if isinstance(command, list):
        command = list(map(ensure_unicode, command))
        if len(command) == 1 and command[0] != "--":
            return command[0]
        if command and command[0] == "--":
            command = command[1:]
        return join_cmdline(command)
    return ensure_unicode(command)


def format_command(dset, command, **kwds) -> str:
    """Expand placeholders; ``datalad.run.substitutions.*`` too."""
    command = normalize_command(command)
    for key, value in dset.config.items("datalad.run.substitutions"):
        sub = key.replace("datalad.run.substitutions.", "")
        if sub not in kwds:
            kwds[sub] = value
    for name in ("inputs", "outputs"):
        paths = kwds.pop(name, None)
        if not isinstance(paths, GlobbedPaths):
            paths = GlobbedPaths(paths, pwd=kwds.get("pwd"))
        kwds[name] = list(map(quote_cmdlinearg, paths.expand(dot=False)))
    return SequenceFormatter().format(command, **kwds)


def command_pwd(dataset) -> str:
    """Where a command is run from: a Dataset instance's root, otherwise
    the current directory."""
    return dataset.path if isinstance(dataset, Dataset) else getpwd()
