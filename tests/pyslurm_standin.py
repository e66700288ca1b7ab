"""Install the pyslurm stand-in (tests/standin/pyslurm) for one test.

The stand-in follows pyslurm's API at tags v25.11.2 and v24.11.0 (see
tests/standin/pyslurm/__init__.py); `install` makes it importable the way
a pip-installed pyslurm is: the package on sys.path (and on PYTHONPATH for
the probe's child process) plus a ``pyslurm-VERSION.dist-info`` whose
metadata gives the version.
"""

from __future__ import annotations

import sys
from pathlib import Path

from datalad_hpcdata.slurm import probe

STANDIN = Path(__file__).resolve().parent / "standin"


def _forget_modules() -> None:
    """Drop the stand-in from sys.modules (no real pyslurm is installed)."""
    for name in [m for m in sys.modules if m.split(".")[0] == "pyslurm"]:
        del sys.modules[name]


class Standin:
    def __init__(self, monkeypatch, tmp_path: Path):
        self.mp = monkeypatch
        self.tmp = tmp_path
        self.log = tmp_path / "pyslurm-imports.log"
        self.slurm_calls = []
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setenv("PYSLURM_STANDIN_LOG", str(self.log))
        monkeypatch.setattr(probe, "_usable", None)

    def install(self, version: str, mode: str = "",
                slurm: str | None = None) -> None:
        """pyslurm `version` installed; `slurm` the version sinfo reports
        (default: the one `version` is built for)."""
        site = self.tmp / ("site-%s-%s" % (version, mode or "ok"))
        dist = site / ("pyslurm-%s.dist-info" % version)
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: pyslurm\nVersion: %s\n" % version)
        self.mp.syspath_prepend(str(STANDIN))
        self.mp.syspath_prepend(str(site))
        self.mp.setenv("PYSLURM_STANDIN", mode)
        _forget_modules()
        probe.forget()
        major, minor = version.split(".")[:2]
        reported = slurm or "%s.%02d.1" % (major, int(minor))

        def slurm_version(call):
            self.slurm_calls.append(reported)
            return reported
        self.mp.setattr(probe, "slurm_version", slurm_version)

    def imports(self) -> list[str]:
        """PIDs of the processes that imported the stand-in, in order."""
        if not self.log.exists():
            return []
        return [line.split()[1] for line in self.log.read_text().split("\n")
                if line.startswith("import ")]

    def module(self):
        import pyslurm
        return pyslurm

    def close(self) -> None:
        _forget_modules()
        probe.forget()
