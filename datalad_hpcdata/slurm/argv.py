"""Helpers for the user's submission command line (an ``sbatch`` argv).

sbatch reads its options from three places; the later ones win:
``#SBATCH`` lines of the script, then the command line (sbatch 22.05 has
no environment variable for ``--dependency``).  Of several
``--dependency`` options on one command line the last one counts (checked
on the test cluster).  So a dependency that must be *added* to whatever
the user asked for is merged with the effective one and passed last,
right before the script: :func:`with_dependency`.
"""

from __future__ import annotations

import os
import re
import shlex

# sbatch's option table (Slurm 22.05, checked against ``sbatch
# --test-only`` by tests/test_container.py): every option takes a value
# except the flags.  Long options whose value is optional (--nice,
# --propagate, --exclusive, --get-user-env, --no-kill) only take
# ``--opt=value`` and count as flags.  This is the one table every parser
# of sbatch command lines and #SBATCH lines in the package uses.
SHORT_VALUE = frozenset("AabBcCdDeFGiJLmMnNopqStwx")
SHORT_FLAGS = frozenset("HkOQsvWhV")
LONG_VALUE = frozenset("""
account acctg-freq array batch bb bbf begin chdir cluster-constraint clusters
comment constraint container core-spec cores-per-socket cpu-freq
cpus-per-gpu cpus-per-task deadline delay-boot dependency distribution error
exclude export export-file extra-node-info gid gpu-bind gpu-freq gpus
gpus-per-node gpus-per-socket gpus-per-task gres gres-flags hint input
job-name kill-on-invalid-dep licenses mail-type mail-user mcs-label mem
mem-bind mem-per-cpu mem-per-gpu mincpus network nodefile nodelist nodes
ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node ntasks-per-socket
open-mode output partition power prefer priority profile qos reservation
signal sockets-per-node switches thread-spec threads-per-core time time-min
tmp uid wait-all-nodes wckey wrap
""".split())
LONG_FLAGS = frozenset("""
contiguous exclusive get-user-env help hold ignore-pbs nice no-kill
no-requeue overcommit oversubscribe parsable propagate quiet reboot requeue
spread-job test-only usage use-min-nodes verbose version wait
""".split())
HET_SEPARATORS = ("hetjob", "packjob")
SCRIPT_BYTES = 1 << 20    # sbatch refuses bigger scripts anyway (4 MB)


class OptionError(ValueError):
    """An sbatch command line that cannot be read (unknown option, ...)."""


def is_sbatch(argv) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == "sbatch"


def sbatch_argv(argv: list[str]) -> list[str]:
    """Add --parsable to an sbatch call (before the script) if not there."""
    if not is_sbatch(argv) or "--parsable" in argv:
        return list(argv)
    return [argv[0], "--parsable"] + list(argv[1:])


def long_name(name: str, strict: bool = False) -> str | None:
    """The long option `name` stands for (getopt: a unique prefix of a
    known option counts); None if unknown or ambiguous, OptionError then
    when `strict`."""
    if name in LONG_VALUE or name in LONG_FLAGS:
        return name
    hits = sorted(n for n in LONG_VALUE | LONG_FLAGS if n.startswith(name))
    if len(hits) == 1:
        return hits[0]
    if strict:
        raise OptionError(
            "cannot tell where the batch script is: sbatch option %r is %s"
            % ("--" + name, "ambiguous (%s)" % ", ".join(hits) if hits
               else "unknown"))
    return None


def parse_options(words: list[str], strict: bool = False
                  ) -> tuple[list[tuple[str, str]], int]:
    """sbatch-style options in `words`: ([(name, value)], end index).

    Names are ``-X`` or ``--long`` (a unique prefix is given its full
    name); flags get the value "".  Unknown options are flags, or, with
    `strict`, an :class:`OptionError`.  Parsing stops
    at the first word that is not an option (the script), at ``--`` (the
    script follows) and at ``:`` (the next heterogeneous component)."""
    opts = []
    i = 0
    while i < len(words):
        w = words[i]
        if w == "--":
            return opts, i + 1
        if w == ":" or not w.startswith("-") or w == "-":
            return opts, i
        if w.startswith("--"):
            name, eq, value = w[2:].partition("=")
            name = long_name(name, strict) or name
            if not eq and name in LONG_VALUE and i + 1 < len(words):
                value = words[i + 1]
                i += 1
            opts.append(("--" + name, value))
        else:
            j = 1
            while j < len(w):
                c = w[j]
                if c in SHORT_VALUE:
                    value = w[j + 1:]
                    if not value and i + 1 < len(words):
                        value = words[i + 1]
                        i += 1
                    opts.append(("-" + c, value))
                    break
                if strict and c not in SHORT_FLAGS:
                    raise OptionError(
                        "cannot tell where the batch script is: unknown "
                        "sbatch option -%s in %r" % (c, w))
                opts.append(("-" + c, ""))
                j += 1
        i += 1
    return opts, i


def option_value(opts: list[tuple[str, str]], short: str,
                 long: str) -> str | None:
    """The value of the last occurrence of an option (None if absent)."""
    found = None
    for name, value in opts:
        if name in (short, long):
            found = value
    return found


def script_index(argv: list[str]) -> int | None:
    """Index of the batch script in an sbatch argv (None with --wrap, or
    when the script comes from standard input)."""
    start = 1
    while True:
        opts, end = parse_options(argv[start:])
        if option_value(opts, "", "--wrap") is not None:
            return None
        end += start
        if end < len(argv) and argv[end] == ":":
            start = end + 1     # the next heterogeneous component
            continue
        return end if end < len(argv) else None


def script_options(text: str) -> list[tuple[str, str]]:
    """Options of the first component from a script's #SBATCH lines, in
    sbatch's way: directives are read until the first line that is neither
    blank nor a comment; ``#SBATCH`` must start the line."""
    opts = []
    for n, line in enumerate(text.splitlines()):
        if n == 0 and line.startswith("#!"):
            continue
        if line.startswith("#SBATCH"):
            rest = line[len("#SBATCH"):]
            try:
                words = shlex.split(rest, comments=True)
            except ValueError:
                words = rest.split("#", 1)[0].split()
            if words and words[0] in HET_SEPARATORS:
                break
            opts.extend(parse_options(words)[0])
            continue
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
    return opts


def read_script_options(argv: list[str], cwd: str) -> list[tuple[str, str]]:
    """#SBATCH options of the script an sbatch argv submits ([] if there
    is none or it cannot be read: sbatch itself reports that)."""
    idx = script_index(argv)
    if idx is None:
        return []
    path = os.path.join(cwd, argv[idx])
    try:
        with open(path, "rb") as f:
            text = f.read(SCRIPT_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return []
    return script_options(text)


def user_dependency(argv: list[str], cwd: str) -> tuple[str | None, str]:
    """The dependency the user asked for and where: (value, origin), origin
    'command line', '#SBATCH line' or ''."""
    opts, _ = parse_options(argv[1:])
    value = option_value(opts, "-d", "--dependency")
    if value is not None:
        return value, "command line"
    value = option_value(read_script_options(argv, cwd), "-d",
                         "--dependency")
    if value is not None:
        return value, "#SBATCH line"
    return None, ""


def user_option(argv: list[str], cwd: str, short: str,
                long: str) -> str | None:
    """An option's value in the submission: command line first, then the
    script's #SBATCH lines."""
    opts, _ = parse_options(argv[1:])
    value = option_value(opts, short, long)
    if value is None:
        value = option_value(read_script_options(argv, cwd), short, long)
    return value


def user_clusters(argv: list[str], cwd: str) -> str | None:
    """The -M/--clusters the submission names (command line first)."""
    return user_option(argv, cwd, "-M", "--clusters")


def merge_dependency(user: str | None, job_ids: list[str]) -> str:
    """``user`` AND afterok on every job in `job_ids`.

    ValueError if the user's own dependency is an any-of list (``?``):
    Slurm cannot combine ``?`` and ``,`` in one expression."""
    ours = "afterok:" + ":".join(job_ids)
    user = (user or "").strip()
    if not user:
        return ours
    if "?" in user:
        raise ValueError(
            "the job's own dependency %r is an any-of list ('?'); Slurm "
            "cannot combine it with the data-flow dependency %s (all of, "
            "','); write it with ',' or drop it" % (user, ours))
    return "%s,%s" % (user, ours)


def with_option(argv: list[str], option: str) -> list[str]:
    """`argv` with `option` (``--name=value``) after all of the user's
    options of the first component (so it is the one sbatch uses)."""
    _, end = parse_options(argv[1:])
    end += 1
    if end - 1 > 0 and argv[end - 1] == "--":
        end -= 1
    return argv[:end] + [option] + argv[end:]


def with_dependency(argv: list[str], dependency: str) -> list[str]:
    return with_option(argv, "--dependency=%s" % dependency)


def user_array(argv: list[str], cwd: str) -> str | None:
    """The -a/--array the submission asks for (command line first)."""
    return user_option(argv, cwd, "-a", "--array")


def parse_array(value: str) -> tuple[list[int], int | None]:
    """The task ids and the throttle of an --array value, as sbatch reads
    it: ``0-999%50``, ``1-9:2``, ``3,17,999``, ``1,4-6``.

    ValueError for anything else (sbatch would refuse it too)."""
    text = (value or "").strip()
    spec, pct, throttle = text.partition("%")
    limit = None
    if pct:
        if not throttle.isdigit():
            raise ValueError("bad --array throttle in %r" % value)
        limit = int(throttle)
    tasks: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not m:
            raise ValueError("cannot read the --array value %r (Slurm's "
                             "forms: 0-9, 1-9:2, 1,3,5, 0-99%%10)" % value)
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        step = int(m.group(3)) if m.group(3) else 1
        if hi < lo or step < 1:
            raise ValueError("empty range %r in --array %r" % (part, value))
        tasks.update(range(lo, hi + 1, step))
    return sorted(tasks), limit


def format_array(tasks, throttle: int | None = None) -> str:
    """--array value for task ids: runs of consecutive ids as ranges
    (``[3, 17, 18, 19]`` -> ``3,17-19``), with ``%throttle``."""
    ids = sorted(set(int(t) for t in tasks))
    parts = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else "%d-%d" % (ids[i], ids[j]))
        i = j + 1
    text = ",".join(parts)
    return text + ("%%%d" % throttle if throttle else "")
