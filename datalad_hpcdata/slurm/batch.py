"""The batch script of an ``sbatch`` command line, and its header.

:func:`script_index` finds where the script is in ``sbatch [options]
script [args]`` with sbatch's own option rules (getopt: ``-t 5``, ``-t5``,
``--time 5``, ``--time=5``, clustered short flags ``-Hv``, unique
prefixes of long options, ``--`` ends the options), using the one option
table of :mod:`.argv`.  :func:`header` returns the lines sbatch
reads directives from: everything up to the first line that is neither
blank nor a comment.
"""

from __future__ import annotations

from .argv import OptionError, parse_options


class BatchError(ValueError):
    """The command line or script cannot be used as a batch job."""


def script_index(argv: list[str]) -> int | None:
    """Index of the batch script in an sbatch argv, None if there is none.

    ``argv[0]`` is sbatch itself; options are read with the table of
    :mod:`.argv` (strictly: an unknown or ambiguous option is an error,
    since it could hide where the script is).  A heterogeneous job
    (``:``) and ``--wrap`` have no single script and raise
    :class:`BatchError`."""
    try:
        opts, end = parse_options(argv[1:], strict=True)
    except OptionError as e:
        raise BatchError(str(e)) from None
    if any(name == "--wrap" for name, _ in opts):
        raise BatchError("--wrap submits a command string, not a batch "
                         "script")
    end += 1
    if end < len(argv) and argv[end] == ":":
        raise BatchError("a heterogeneous job (':') has more than one "
                         "batch script")
    return end if end < len(argv) else None


def header(text: str) -> tuple[str, list[str]]:
    """(shebang line, directive lines) of a batch script's text.

    The directive lines are every line after the shebang up to the first
    one that is neither blank nor a comment: the part of the script in
    which sbatch reads ``#SBATCH`` (and ``#PBS``) directives."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#!"):
        raise BatchError("the batch script does not start with '#!' and an "
                         "interpreter, which sbatch requires")
    head = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        head.append(line)
    return lines[0], head


def interpreter(shebang: str) -> list[str]:
    """The argv prefix a ``#!`` line stands for (the kernel's rule: the
    interpreter and at most one argument)."""
    rest = shebang[2:].strip()
    if not rest:
        raise BatchError("the batch script's '#!' line names no "
                         "interpreter")
    parts = rest.split(None, 1)
    return parts
