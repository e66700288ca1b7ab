"""Command-line start-up: DataLad builds one parser, not all of them.

DataLad's ``main()`` first parses the command line with its top-level
parser alone (``datalad.cli.parser.single_subparser_possible``) to find the
command name, and builds only that command's parser.  If this first pass
fails it builds the parser of *every* command of DataLad and of every
installed extension (importing all their modules), which costs about a
second.  The first pass fails whenever an option after the command name is
also a top-level option that takes a value: ``datalad slurm-finish -l``
reads as DataLad's ``-l/--log-level`` without a level (or with a level
that is not one), and the same happens for ``-c``, ``-C`` or ``-f`` at the
end of a command line.  DataLad's bug report: datalad/datalad#7200.

In that case DataLad loads the extensions' command suites (this package's
``__init__``) before it builds the parsers.  When the command line names
one of our commands, :func:`build_only_our_parser` makes DataLad's
``add_subparser`` skip every other command, which is what DataLad does
itself when the first pass succeeds.  Nothing changes for other commands,
the Python API, ``--help`` or shell completion.
"""

from __future__ import annotations

import os
import sys

_MARK = "_hpcdata_only"


def _takes_value(common_args: dict) -> set[str]:
    """DataLad's top-level options that consume the next argument."""
    out = set()
    for names, kwargs in common_args.values():
        if kwargs.get("nargs") == 0 or str(
                kwargs.get("action", "")).startswith("store_"):
            continue
        out.update(names)
    return out


def command_name(argv: list[str], takes_value: set[str]) -> str | None:
    """The command a ``datalad`` command line names (None: none)."""
    args = list(argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--cmd":
            return args[i + 1] if i + 1 < len(args) else None
        if not arg.startswith("-") or arg == "-":
            return arg
        if arg.startswith("--"):
            skip = arg in takes_value
        else:
            # -l LEVEL takes the next argument, -ldebug does not
            skip = len(arg) == 2 and arg in takes_value
        i += 2 if skip else 1
    return None


def build_only_our_parser(command_suite) -> bool:
    """If DataLad's command line runs one of `command_suite`'s commands,
    let DataLad build that command's parser only.  True if it did."""
    datalad = sys.modules.get("datalad")
    parser = sys.modules.get("datalad.cli.parser")
    common = sys.modules.get("datalad.cli.common_args")
    if (datalad is None or parser is None or common is None
            or getattr(datalad, "__api", None) != "cmdline"
            or "_ARGCOMPLETE" in os.environ):
        return False
    ours = {spec[2] for spec in command_suite[1]}
    target = command_name(sys.argv, _takes_value(common.common_args))
    original = parser.add_subparser
    if target not in ours or getattr(original, _MARK, None):
        return False

    def add_subparser(intfspec, subparsers, cmd_name, *args, **kwargs):
        if cmd_name != target:
            return None     # DataLad skips commands whose parser is None
        return original(intfspec, subparsers, cmd_name, *args, **kwargs)

    setattr(add_subparser, _MARK, target)
    parser.add_subparser = add_subparser
    return True
