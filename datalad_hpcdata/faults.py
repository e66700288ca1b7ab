"""Deterministic fault injection for the crash tests.

``HPCDATA_FAULT=STEP`` (e.g. ``finish:ref-update``) makes the process kill
itself the first time it reaches :func:`point` ``STEP``; ``STEP#N`` at the
N-th time.  ``HPCDATA_FAULT_SIGNAL`` picks the signal: ``KILL`` (default:
no clean-up of any kind runs), ``TERM`` or ``INT`` (Ctrl-C).  Unset, a
point costs one environment lookup.

The steps are listed in :data:`STEPS`; ``docs/guarantees.md`` says what a
re-run does after a crash at each of them.

This module imports nothing from the package: every part may use it.
"""

from __future__ import annotations

import os
import signal
import time

ENV = "HPCDATA_FAULT"
SIGNAL_ENV = "HPCDATA_FAULT_SIGNAL"

STEPS = (
    # slurm-schedule / slurm-reschedule
    "schedule:claim", "schedule:get", "schedule:prepare", "schedule:submit",
    "schedule:submitted", "schedule:store-update",
    # slurm-finish
    "finish:state-query", "finish:copy-back", "finish:copied-back",
    "finish:annex-add", "finish:tree-build", "finish:commit",
    "finish:pending", "finish:ref-update", "finish:store-update",
    "finish:cleanup",
)

_hits: dict = {}


def point(step: str) -> None:
    """Kill this process here if ``HPCDATA_FAULT`` names `step`."""
    want = os.environ.get(ENV)
    if not want:
        return
    name, _, nth = want.partition("#")
    if name != step:
        return
    _hits[step] = _hits.get(step, 0) + 1
    if _hits[step] != int(nth or 1):
        return
    sig = getattr(signal, "SIG" + os.environ.get(SIGNAL_ENV, "KILL").upper())
    os.kill(os.getpid(), sig)
    # a caught signal's handler runs in the main thread; give it the chance
    for _ in range(100):
        time.sleep(0.01)
