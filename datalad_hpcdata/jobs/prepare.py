"""Before submission: get the inputs, prepare the outputs, and undo that
exactly when the submission does not happen."""

from __future__ import annotations

import logging
import time

from .. import faults
from ..dataset.handle import DatasetHandle
from ..dataset.lock import repository_lock
from ..dataset.paths import (
    expand,
)
from ..dataset.worktree import missing_content, prepare_outputs, restore
from . import dataflow, submissions
from .errors import ScheduleError
from .spec import JobSpec
from .tasks import output_specs

lgr = logging.getLogger("datalad.hpcdata.schedule")


def _assumed(assume_ready: str | None, what: str) -> bool:
    return assume_ready in (what, "both")


def get_inputs(handle: DatasetHandle, spec: JobSpec, jobs=None) -> None:
    """Get the content of annexed inputs that is not present (not of what
    the job's producers write: that is theirs to make)."""
    if _assumed(spec.assume_ready, "inputs"):
        return
    hits = [h for s in spec.input_specs for h in expand(s, handle.root)]
    if spec.depends_on:
        hits = dataflow.outside_claims(handle.root, hits,
                                       dataflow.spec_claims(spec.depends_on))
    need = missing_content(handle.root, hits)
    if not need:
        return
    failed = [r for r in handle.ds.get(
        need, jobs=jobs, on_failure="ignore", result_renderer="disabled",
        return_type="list") if r.get("status") in ("error", "impossible")]
    if failed:
        raise ScheduleError("could not get input content: %s" % "; ".join(
            "%s: %s" % (f.get("path"), f.get("message")) for f in failed))


class _Prepared:
    """What was changed for a job before submission, to undo it exactly."""

    def __init__(self, handle: DatasetHandle, spec: JobSpec, row: int,
                 token: str):
        self.handle, self.spec, self.row = handle, spec, row
        self.token = token
        self.created = time.time()
        self.actions = []
        self.staged = None

    def prepare(self, jobs=None) -> None:
        get_inputs(self.handle, self.spec, jobs)
        faults.point("schedule:get")
        if self.spec.alt_root:
            from . import staging
            self.staged = staging.stage_job(self.handle, self.spec, jobs)
        elif not _assumed(self.spec.assume_ready, "outputs"):
            self.actions = prepare_outputs(self.handle.root,
                                           output_specs(self.spec))
        submissions.note_prepared(self.handle, self.row, self.actions)
        faults.point("schedule:prepare")

    def undo(self, reason: str) -> list[str]:
        """Restore the worktree, remove staged files, reject the row;
        return paths that could not be restored.  Nothing is done when
        another command already adopted or released the row."""
        store = self.handle.store
        with repository_lock(self.handle.git_dir):
            now = store.get(self.row)
            if now is None or now.status != "submitting":
                return []
            unrestored = restore(self.actions)
            if self.spec.alt_root:
                from . import staging
                staging.unstage(self.handle, self.spec, self.row)
            store.reject(self.row, reason)
        return unrestored


def _expected_errors(spec: JobSpec) -> tuple:
    expected = (ScheduleError, OSError)
    if spec.alt_root:
        from ..altdir import StagingError
        expected += (StagingError,)
    return expected
