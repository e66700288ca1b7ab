"""The batch script of an ``sbatch`` command line, and its header.

:func:`script_index` finds where the script is in ``sbatch [options]
script [args]`` with sbatch's own option rules (getopt: ``-t 5``, ``-t5``,
``--time 5``, ``--time=5``, clustered short flags ``-Hv``, unique
prefixes of long options, ``--`` ends the options).  The option table is
Slurm 22.05's: every option takes a value except the flags below (checked
against ``sbatch --test-only``).  :func:`header` returns the lines sbatch
reads directives from: everything up to the first line that is neither
blank nor a comment.
"""

from __future__ import annotations

# long options that take no separate value (optional values need "=")
LONG_FLAGS = frozenset((
    "contiguous", "exclusive", "get-user-env", "help", "hold", "ignore-pbs",
    "nice", "no-kill", "no-requeue", "overcommit", "oversubscribe",
    "parsable", "propagate", "quiet", "reboot", "requeue", "spread-job",
    "test-only", "usage", "use-min-nodes", "verbose", "version", "wait",
    "wrap",
))
LONG_VALUES = frozenset((
    "account", "acctg-freq", "array", "batch", "bb", "bbf", "begin",
    "chdir", "cluster-constraint", "clusters", "comment", "constraint",
    "container", "core-spec", "cores-per-socket", "cpu-freq",
    "cpus-per-gpu", "cpus-per-task", "deadline", "delay-boot", "dependency",
    "distribution", "error", "exclude", "export", "export-file",
    "extra-node-info", "gid", "gpu-bind", "gpu-freq", "gpus",
    "gpus-per-node", "gpus-per-socket", "gpus-per-task", "gres",
    "gres-flags", "hint", "input", "job-name", "kill-on-invalid-dep",
    "licenses", "mail-type", "mail-user", "mcs-label", "mem", "mem-bind",
    "mem-per-cpu", "mem-per-gpu", "mincpus", "network", "nodefile",
    "nodelist", "nodes", "ntasks", "ntasks-per-core", "ntasks-per-gpu",
    "ntasks-per-node", "ntasks-per-socket", "open-mode", "output",
    "partition", "power", "prefer", "priority", "profile", "qos",
    "reservation", "signal", "sockets-per-node", "switches",
    "thread-spec", "threads-per-core", "time", "time-min", "tmp", "uid",
    "wait-all-nodes", "wckey",
))
SHORT_FLAGS = frozenset("HkOQsvWhV")
SHORT_VALUES = frozenset("aAbcdDeiJLMmnNopqStwxFCGB")


class BatchError(ValueError):
    """The command line or script cannot be used as a batch job."""


def _long_name(token: str) -> str:
    name = token[2:].split("=", 1)[0]
    known = LONG_FLAGS | LONG_VALUES
    if name in known:
        return name
    hits = sorted(n for n in known if n.startswith(name))
    if len(hits) != 1:
        raise BatchError(
            "cannot tell where the batch script is: sbatch option %r is %s"
            % (token, "ambiguous (%s)" % ", ".join(hits) if hits
               else "unknown"))
    return hits[0]


def script_index(argv: list[str]) -> int | None:
    """Index of the batch script in an sbatch argv, None if there is none.

    ``argv[0]`` is sbatch itself.  A heterogeneous job (``:``) and
    ``--wrap`` have no single script and raise :class:`BatchError`."""
    i = 1
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return i + 1 if i + 1 < len(argv) else None
        if token == ":":
            raise BatchError("a heterogeneous job (':') has more than one "
                             "batch script")
        if token.startswith("--"):
            name = _long_name(token)
            if name == "wrap":
                raise BatchError("--wrap submits a command string, not a "
                                 "batch script")
            i += 2 if name in LONG_VALUES and "=" not in token else 1
            continue
        if token.startswith("-") and len(token) > 1:
            i += _short_length(token)
            continue
        return i
    return None


def _short_length(token: str) -> int:
    """How many argv items a short option cluster uses (1 or 2)."""
    for pos, char in enumerate(token[1:], start=1):
        if char in SHORT_VALUES:
            return 1 if pos + 1 < len(token) else 2
        if char not in SHORT_FLAGS:
            raise BatchError("cannot tell where the batch script is: "
                             "unknown sbatch option -%s in %r"
                             % (char, token))
    return 1


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
