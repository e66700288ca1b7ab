"""Submitting a claimed, prepared job -- and what to do when that fails.

`prepared` is :class:`.prepare._Prepared` (row, token, staged files, the
undo).  Success records the job id; a failure is resolved by asking Slurm
for the submission's token (see :mod:`.submissions`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from .. import faults
from ..dataset.handle import DatasetHandle
from ..slurm import SlurmError, SubmissionError
from . import submissions
from .spec import JobSpec
from .submissions import record_submission

lgr = logging.getLogger("datalad.hpcdata.schedule")


def why(e: BaseException) -> str:
    return str(e) or type(e).__name__


def submit(handle: DatasetHandle, spec: JobSpec,
            prepared: Any) -> dict:
    pwd_abs = os.path.join(handle.root, spec.pwd)
    argv = submissions.with_token(spec.argv, prepared.token)
    try:
        faults.point("schedule:submit")
        # a --container job's generated batch script goes on sbatch's stdin
        script = (spec.container or {}).get("batch_script")
        sub = handle.backend.submit(argv, cwd=pwd_abs,
                                    **({"stdin": script} if script else {}))
        faults.point("schedule:submitted")
    except BaseException as e:
        return _failed_submission(handle, spec, prepared, e)
    staged = prepared.staged
    staged_counts = ({"staged_files": staged.files,
                      "staged_bytes": staged.bytes} if staged else {})
    recorded, info, logs, cluster = record_submission(
        handle, prepared.row, spec, sub.job_id, sub.cluster, sub.stdout,
        staged_counts)
    faults.point("schedule:store-update")
    if not recorded:
        return _claim_lost(handle, prepared, sub.job_id)
    return dict(
        status="ok", message=("submitted Slurm job %s%s", sub.job_id,
                              " on cluster %s" % cluster if cluster else ""),
        slurm_job_id=sub.job_id, cluster=cluster, outputs=spec.outputs,
        inputs=spec.inputs, pwd=spec.pwd, slurm_logs=logs,
        array=info.get("ArrayTaskId") or None, alt_dir=spec.alt_dir,
        **staged_counts)


def _failed_submission(handle: DatasetHandle, spec: JobSpec,
                       prepared: Any, e: BaseException) -> dict:
    """sbatch failed, did not answer or was interrupted.

    Slurm is asked for the submission's token: a job that exists after
    all is recorded; otherwise the claim is released and the worktree
    restored -- unless Slurm cannot be asked and sbatch gave no answer,
    then the row is left for the next command to resolve.  Interrupts
    are raised again afterwards."""
    definite = isinstance(e, (SubmissionError, OSError)) or (
        isinstance(e, SlurmError) and e.returncode is not None)
    if not definite:
        time.sleep(1.0)     # let a request sbatch sent reach the controller
    try:
        found = handle.backend.find_submissions([prepared.token],
                                                prepared.created)
        known = True
    except SlurmError as qe:
        found, known = {}, False
        lgr.debug("cannot look up the submission: %s", qe)
    jid = found.get(prepared.token)
    if jid:
        record_submission(handle, prepared.row, spec, jid)
        msg = ("%s; but Slurm job %s was submitted and is recorded"
               % (why(e), jid))
        result = dict(status="error" if isinstance(e, Exception) else "ok",
                      message=msg, slurm_job_id=jid, outputs=spec.outputs)
    elif known or definite:
        unrestored = prepared.undo(why(e))
        msg = why(e) + ("; could not restore: %s" % ", ".join(unrestored)
                         if unrestored else "")
        result = dict(status="error", message=msg)
    else:
        handle.store.interrupted(prepared.row, "submission interrupted: %s"
                                 % why(e))
        msg = ("%s; Slurm could not be asked whether the job was submitted: "
               "the claim is kept and the next slurm-finish or "
               "slurm-schedule resolves it" % why(e))
        result = dict(status="error", message=msg)
    if not isinstance(e, Exception):
        lgr.warning("%s", msg)
        raise e
    return result


def _claim_lost(handle: DatasetHandle, prepared: Any,
                job_id: str) -> dict:
    """Another command adopted or released our row while sbatch ran."""
    now = handle.store.get(prepared.row)
    if now is not None and now.status == "open" and now.job_id == job_id:
        return dict(status="ok", slurm_job_id=job_id,
                    message=("submitted Slurm job %s (recorded by another "
                             "command meanwhile)", job_id))
    handle.backend.cancel([job_id])
    return dict(status="error", slurm_job_id=job_id,
                message=("the claim was released by another command while "
                         "sbatch ran; job %s was cancelled", job_id))
