"""Result records about one job, as every command yields them."""

from __future__ import annotations

import logging

from datalad.interface.results import get_status_dict

from ..dataset.handle import DatasetHandle
from ..dataset.jobstore import Job

lgr = logging.getLogger("datalad.hpcdata.finish")

FINISH = "slurm-finish"


def job_result(handle: DatasetHandle, job: Job, **kw) -> dict:
    """A slurm-finish result record for `job`; `kw` adds or overrides."""
    d = dict(action=FINISH, ds=handle.ds, path=handle.ds.path,
             type="dataset", logger=lgr, slurm_job_id=job.job_id,
             cluster=job.cluster)
    d.update(kw)
    return get_status_dict(**d)
