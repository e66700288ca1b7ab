"""The one way this package runs a program (git, git-annex, Slurm tools).

* argv lists only, never a shell;
* a fixed locale and Slurm time format (``LC_ALL=C``,
  ``SLURM_TIME_FORMAT=standard``), so a user's settings cannot change what
  the parsers read (times, numbers, messages); the rest of the user's
  environment is kept;
* except for a submission (``fixed=False``): sbatch passes its environment
  on to the job, which must see the user's own locale and settings;
* argv logged at debug level;
* failures raise a :class:`CommandError` (or the caller's subclass) that
  carries the full argv, exit code, working directory and stderr.

This module imports nothing from the package: every other module may use
it.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence

lgr = logging.getLogger("datalad.hpcdata.runner")

FIXED_ENV = {"LC_ALL": "C", "SLURM_TIME_FORMAT": "standard"}


class CommandError(RuntimeError):
    """A program could not run or failed; carries what is needed to see
    why."""

    def __init__(self, message: str, argv: Sequence[str] | None = None,
                 returncode: int | None = None, cwd: str | None = None,
                 stderr: str = ""):
        self.argv = list(argv or [])
        self.returncode = returncode
        self.cwd = cwd
        self.stderr = stderr
        super().__init__(message)

    @classmethod
    def from_process(cls, proc: subprocess.CompletedProcess,
                     cwd: str | None) -> CommandError:
        err = proc.stderr
        if isinstance(err, bytes):
            err = err.decode(errors="replace")
        err = (err or "").strip()
        return cls("%s failed with exit code %d (in %s): %s" % (
            shlex.join(proc.args), proc.returncode, cwd or os.getcwd(),
            err or "no error output"), proc.args, proc.returncode, cwd, err)


def environment(extra: Mapping[str, str] | None = None,
                fixed: bool = True) -> dict:
    """The user's environment, `extra` on top, the fixed settings last."""
    env = dict(os.environ)
    env.update(extra or {})
    if fixed:
        env.update(FIXED_ENV)
    return env


def run(argv: Sequence[str], *, cwd: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None, input: str | bytes | None = None,
        timeout: float | None = None, text: bool = True, check: bool = False,
        error: type[CommandError] = CommandError, fixed: bool = True
        ) -> subprocess.CompletedProcess:
    """Run `argv` to completion and capture its output.

    `env` holds variables to set on top of the user's environment; with
    `fixed` (the default) the fixed locale and time format are set too.
    With `check`, a non-zero exit raises `error`.  A missing program or a
    timeout always raises `error`."""
    argv = [str(a) for a in argv]
    cwd = None if cwd is None else str(cwd)
    lgr.debug("run %s (in %s)", shlex.join(argv), cwd or ".")
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=environment(env, fixed), input=input,
            capture_output=True, text=text, timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise error("%s: command not found (is it installed and on PATH?)"
                    % argv[0], argv, 127, cwd) from e
    except subprocess.TimeoutExpired as e:
        raise error("%s did not answer within %d s" % (argv[0], timeout),
                    argv, None, cwd) from e
    if check and proc.returncode:
        raise error.from_process(proc, cwd)
    return proc


def popen(argv: Sequence[str], *, cwd: str | os.PathLike | None = None,
          env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """A long-running batch process with pipes on stdin and stdout (binary),
    started with the same environment rules as :func:`run`."""
    argv = [str(a) for a in argv]
    lgr.debug("start %s (in %s)", shlex.join(argv), cwd or ".")
    return subprocess.Popen(argv, cwd=None if cwd is None else str(cwd),
                            env=environment(env), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
