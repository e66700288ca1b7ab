"""`datalad slurm-finish`: commit the outputs of finished Slurm jobs."""

from __future__ import annotations

import logging

from datalad.distribution.dataset import datasetmethod, require_dataset
from datalad.interface.base import Interface, build_doc, eval_results
from datalad.interface.common_opts import jobs_opt, save_message_opt
from datalad.interface.results import get_status_dict
from datalad.support.constraints import EnsureFloat, EnsureNone
from datalad.support.param import Parameter

from .options import dataset_opt
from .render import render_result

lgr = logging.getLogger("datalad.hpcdata.finish")


@build_doc
class SlurmFinish(Interface):
    """Commit the outputs of finished Slurm jobs, one commit per job

    The states of all open jobs are fetched from Slurm in one query.
    COMPLETED jobs are committed (declared outputs and Slurm logs only) with
    a machine-readable run record; jobs still pending or running are left
    alone; failed jobs (FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED,
    PREEMPTED, BOOT_FAIL, DEADLINE) are reported with state and exit code
    and stay open until closed or committed explicitly. A job unknown to
    Slurm is reported for itself and never blocks the others.

    Jobs that read other jobs' outputs are committed after them (in data
    flow order within one call), and their records name the producers'
    commits. A job whose producer failed or was closed can never run: it is
    reported with the producer that blocks it; --close-failed-jobs cancels
    it in Slurm and closes it.

    Interrupting slurm-finish is safe: run it again and every completed job
    ends with exactly one commit.
    """

    _examples_ = [
        dict(text="Commit every finished job", code_cmd="datalad slurm-finish",
             code_py="slurm_finish()"),
        dict(text="List open jobs as JSON",
             code_cmd="datalad -f json slurm-finish --list-open-jobs",
             code_py="slurm_finish(list_open_jobs=True)"),
        dict(text="Stay until every open job has ended, committing each "
                  "as it ends (at most one hour)",
             code_cmd="datalad slurm-finish --wait --timeout 3600",
             code_py="slurm_finish(wait=True, timeout=3600)"),
    ]

    result_renderer = "tailored"
    on_failure = "continue"

    _params_ = dict(
        job_id=Parameter(
            args=("job_id",), nargs="*", metavar="JOBID",
            doc="""only these jobs (default: all open jobs)."""),
        slurm_job_id=Parameter(
            args=("--slurm-job-id",), metavar="JOBID", action="append",
            doc="""only this job (datalad-slurm's spelling of JOBID)."""),
        dataset=dataset_opt,
        message=save_message_opt,
        list_open_jobs=Parameter(
            args=("-l", "--list-open-jobs"), action="store_true",
            doc="""report every open job with its current Slurm state and
            commit nothing."""),
        close_failed_jobs=Parameter(
            args=("--close-failed-jobs",), action="store_true",
            doc="""close failed jobs (and jobs Slurm no longer knows): their
            claims are released, outputs left untouched and uncommitted, and
            the job stays in the job store's history. Jobs blocked by a
            failed or closed producer are cancelled in Slurm and closed
            too. Also resolves submissions interrupted on another host
            (adopted if Slurm has a job with their token, else
            released)."""),
        commit_failed_jobs=Parameter(
            args=("--commit-failed-jobs",), action="store_true",
            doc="""commit the outputs of failed jobs too, with the final
            state in the commit subject (for arrays with per-task outputs:
            the failed tasks' too, marked in the record)."""),
        keep_alt_dir=Parameter(
            args=("--keep-alt-dir",), action="store_true",
            doc="""keep the staged files of alt-dir jobs after their outputs
            were copied back and committed (default: remove them; config
            'datalad.hpcdata.keep-alt-dir')."""),
        jobs=jobs_opt,
        wait=Parameter(
            args=("--wait",), action="store_true",
            doc="""stay until the chosen jobs (default: all open jobs) have
            ended, committing each as soon as it ends, with a progress bar;
            one Slurm query per poll, the first after a few seconds, then
            less often while nothing changes (configuration
            'datalad.hpcdata.poll-interval', FIRST or FIRST:MAX seconds,
            default 5:180). Ctrl-C stops between commits. The last result
            sums up; it fails (non-zero exit) if a job did not complete."""),
        timeout=Parameter(
            args=("--timeout",), metavar="SECONDS",
            constraints=EnsureFloat() | EnsureNone(),
            doc="""with --wait: stop waiting after this many seconds; jobs
            that have not ended are reported and stay open."""),
    )

    @staticmethod
    @datasetmethod(name="slurm_finish")
    @eval_results
    def __call__(job_id=None, *, slurm_job_id=None, dataset=None,
                 message=None, list_open_jobs=False, close_failed_jobs=False,
                 commit_failed_jobs=False, keep_alt_dir=False, jobs=None,
                 wait=False, timeout=None):
        # the workflow is imported here, not when DataLad builds the parser
        from ..dataset.handle import DatasetHandle
        from ..jobs.finish import finish
        ds = require_dataset(dataset, check_installed=True,
                             purpose="finish Slurm jobs")
        ids = [str(j) for j in (job_id or [])]
        if isinstance(slurm_job_id, (str, int)):
            slurm_job_id = [slurm_job_id]
        ids += [str(j) for j in (slurm_job_id or [])]
        keep = keep_alt_dir or ds.config.getbool(
            "datalad.hpcdata", "keep-alt-dir", default=False)
        if wait or timeout is not None:
            if list_open_jobs or not wait:
                yield get_status_dict(
                    action="slurm-finish", ds=ds, path=ds.path,
                    type="dataset", status="impossible", logger=lgr,
                    message="--timeout needs --wait" if not wait else
                    "--wait and --list-open-jobs cannot be combined")
                return
            from ..jobs.wait import wait as wait_for
            yield from wait_for(DatasetHandle(ds), job_ids=ids or None,
                                timeout=timeout, message=message,
                                close_failed=close_failed_jobs,
                                commit_failed=commit_failed_jobs,
                                keep_alt_dir=keep, jobs=jobs)
            return
        yield from finish(DatasetHandle(ds), job_ids=ids or None,
                          message=message,
                          close_failed=close_failed_jobs,
                          commit_failed=commit_failed_jobs,
                          list_only=list_open_jobs, keep_alt_dir=keep,
                          jobs=jobs)

    custom_result_renderer = staticmethod(render_result)
