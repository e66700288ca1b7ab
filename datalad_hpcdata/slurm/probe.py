"""Whether pyslurm can be used here, decided without importing it.

``import pyslurm`` initialises libslurm and changes the process's dlopen
flags before any version can be compared, and a pyslurm built for another
Slurm may crash the process instead of raising.  So, in this order:

1. the installed pyslurm's version comes from its package metadata
   (``importlib.metadata``); nothing is imported;
2. it must match the running Slurm's major.minor (``sinfo --version``,
   which reads no configuration and asks no daemon); pyslurm X.Y.Z is
   built for Slurm X.Y;
3. only then is pyslurm imported, in a child process (through the
   package's runner), which reports ``pyslurm.__version__`` and the API
   the backend needs (``pyslurm.db.Jobs.load``, ``pyslurm.db.JobFilter``,
   ``pyslurm.Job.cancel``); a crash there costs nothing but the child;
4. the verdict is cached per host, Slurm version and pyslurm installation
   (``$XDG_CACHE_HOME/datalad-hpcdata/pyslurm.json``), so the child runs
   once, not per command.

Every reason is logged at debug level; ``backend=pyslurm`` turns a
negative verdict into an error (see :func:`datalad_hpcdata.slurm.
get_backend`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..runner import run as run_command
from .types import SlurmError

lgr = logging.getLogger("datalad.hpcdata.slurm.probe")

PROBE = r"""
import json, sys
try:
    import pyslurm
except BaseException as e:
    print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
    sys.exit(3)
db = getattr(pyslurm, "db", None)
print(json.dumps({
    "version": getattr(pyslurm, "__version__", None),
    "db.JobFilter": hasattr(db, "JobFilter"),
    "db.Jobs.load": hasattr(getattr(db, "Jobs", None), "load"),
    "Job.cancel": hasattr(getattr(pyslurm, "Job", None), "cancel"),
}))
"""
NEEDED = ("db.Jobs.load", "db.JobFilter", "Job.cancel")

_usable: tuple[bool, str] | None = None


def major_minor(version: str | None) -> tuple[int, int] | None:
    nums = re.findall(r"\d+", version or "")
    return (int(nums[0]), int(nums[1])) if len(nums) >= 2 else None


def installed_version() -> str | None:
    """The installed pyslurm's version from its metadata (no import)."""
    try:
        return importlib.metadata.version("pyslurm")
    except importlib.metadata.PackageNotFoundError:
        return None


def slurm_version(call: Callable) -> str:
    """The running Slurm's version, e.g. '22.05.8' ('' if unknown)."""
    try:
        out = call(["sinfo", "--version"]).stdout.strip()
    except SlurmError as e:
        lgr.debug("sinfo --version failed: %s", e)
        return ""
    return out.split()[-1] if out else ""


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return Path(base) / "datalad-hpcdata" / "pyslurm.json"


def _read_cache() -> dict:
    try:
        return json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, verdict: tuple[bool, str]) -> None:
    path = cache_file()
    data = _read_cache()
    data[key] = {"ok": verdict[0], "why": verdict[1], "at": int(time.time())}
    tmp = path.with_name("%s.%d.tmp" % (path.name, os.getpid()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError as e:
        lgr.debug("cannot cache the pyslurm verdict in %s: %s", path, e)


def _installation(spec) -> str:
    """What identifies this pyslurm installation (a rebuild changes it)."""
    origin = getattr(spec, "origin", None) or ""
    try:
        stamp = int(os.stat(origin).st_mtime) if origin else 0
    except OSError:
        stamp = 0
    return "%s@%d" % (origin, stamp)


def probe() -> tuple[dict | None, str]:
    """Import pyslurm in a child process: (its report, '') or (None, why)."""
    if not sys.executable:
        return None, "no Python interpreter to run the pyslurm probe with"
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        proc = run_command([sys.executable, "-c", PROBE], env=env,
                           timeout=120, error=SlurmError)
    except SlurmError as e:
        return None, "the pyslurm probe did not finish: %s" % e
    if proc.returncode < 0:
        return None, ("importing pyslurm killed the probe process with "
                      "signal %d" % -proc.returncode)
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        report = None
    if proc.returncode or not isinstance(report, dict) or \
            "error" in report:
        detail = (report or {}).get("error") or \
            (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, ("importing pyslurm failed (exit %d): %s"
                      % (proc.returncode, detail))
    return report, ""


def judge(report: dict, slurm: str) -> tuple[bool, str]:
    """The verdict on a probe report."""
    have = report.get("version")
    if major_minor(have) != major_minor(slurm):
        return False, ("pyslurm %s (pyslurm.__version__) does not match "
                       "Slurm %s" % (have, slurm))
    missing = [n for n in NEEDED if not report.get(n)]
    if missing:
        return False, ("pyslurm %s lacks %s (needs the pyslurm.db API of "
                       "the 23.x and later releases)"
                       % (have, ", ".join("pyslurm." + n for n in missing)))
    return True, "pyslurm %s matches Slurm %s" % (have, slurm)


def decide(call: Callable) -> tuple[bool, str]:
    """The verdict for this host (see the module docstring)."""
    version = installed_version()
    try:
        spec = importlib.util.find_spec("pyslurm")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return False, "pyslurm is not installed"
    slurm = slurm_version(call)
    if not slurm:
        return False, "the running Slurm's version is unknown"
    built = major_minor(version)
    if version and built != major_minor(slurm):
        return False, ("pyslurm %s is built for Slurm %d.%02d; this host "
                       "runs Slurm %s" % (version, built[0], built[1], slurm)
                       if built else "pyslurm has no usable version (%r)"
                       % version)
    key = "|".join((socket.gethostname(), slurm, version or "?",
                    sys.executable, _installation(spec)))
    cached = _read_cache().get(key)
    if isinstance(cached, dict) and "ok" in cached:
        return bool(cached["ok"]), "%s (cached)" % cached.get("why", "")
    report, why = probe()
    verdict = (False, why) if report is None else judge(report, slurm)
    _write_cache(key, verdict)
    return verdict


def pyslurm_usable(call: Callable | None = None) -> tuple[bool, str]:
    """(usable, why); decided once per process."""
    global _usable
    if _usable is None:
        if call is None:
            def call(argv):
                return run_command(argv, timeout=30, error=SlurmError)
        _usable = decide(call)
    return _usable


def forget() -> None:
    """Decide again on the next call (tests; a changed installation)."""
    global _usable
    _usable = None
