"""`datalad slurm-reschedule`: submit a recorded Slurm job again."""

from __future__ import annotations

import logging

from datalad.distribution.dataset import datasetmethod, require_dataset
from datalad.interface.base import Interface, build_doc, eval_results
from datalad.interface.common_opts import jobs_opt
from datalad.support.constraints import EnsureNone, EnsureStr
from datalad.support.param import Parameter

from .options import alt_dir_opt, dataset_opt, run_params
from .render import render_result

lgr = logging.getLogger("datalad.hpcdata.reschedule")


@build_doc
class SlurmReschedule(Interface):
    """Submit the Slurm job recorded in a commit again

    Reads ``[DATALAD SLURM RUN]`` records written by slurm-finish (and by
    the datalad-slurm extension) and schedules each job again exactly like
    slurm-schedule would: same command, inputs and outputs, run from the
    recorded directory whatever the current one is. The original commit is
    appended to the record's ``chain``.
    """

    _examples_ = [
        dict(text="Resubmit the job recorded in HEAD",
             code_cmd="datalad slurm-reschedule",
             code_py="slurm_reschedule()"),
        dict(text="Resubmit every recorded job since a tag",
             code_cmd="datalad slurm-reschedule --since v1.0",
             code_py="slurm_reschedule(since='v1.0')"),
    ]

    result_renderer = "tailored"
    on_failure = "continue"

    _params_ = dict(
        revision=Parameter(
            args=("revision",), metavar="REVISION", nargs="?",
            doc="""commit with the record to resubmit (default HEAD); with
            --since the end of the range.""",
            constraints=EnsureStr() | EnsureNone()),
        since=Parameter(
            args=("--since",),
            doc="""resubmit every record in SINCE..REVISION; an empty
            string means the whole history.""",
            constraints=EnsureStr() | EnsureNone()),
        dataset=dataset_opt,
        message=Parameter(
            args=("-m", "--message"), metavar="MESSAGE",
            doc="""use this message instead of the recorded one.""",
            constraints=EnsureStr() | EnsureNone()),
        report=Parameter(
            args=("--report",), action="store_true",
            doc="""only report what would be resubmitted."""),
        script=Parameter(
            args=("--script",), metavar="FILE",
            doc="""write the slurm-schedule commands to FILE ('-' for
            stdout) instead of submitting.""",
            constraints=EnsureStr() | EnsureNone()),
        with_failed_jobs=Parameter(
            args=("--with-failed-jobs",), action="store_true",
            doc="""also resubmit records of jobs that did not complete."""),
        assume_ready=run_params["assume_ready"],
        alt_dir=alt_dir_opt,
        no_alt_dir=Parameter(
            args=("--no-alt-dir",), action="store_true",
            doc="""run in place even if the record names an alt-dir."""),
        jobs=jobs_opt,
    )

    @staticmethod
    @datasetmethod(name="slurm_reschedule")
    @eval_results
    def __call__(revision=None, *, since=None, dataset=None, message=None,
                 report=False, script=None, with_failed_jobs=False,
                 assume_ready=None, alt_dir=None, no_alt_dir=False,
                 jobs=None):
        # the workflow is imported here, not when DataLad builds the parser
        from ..dataset.handle import DatasetHandle
        from ..jobs.reschedule import reschedule
        ds = require_dataset(dataset, check_installed=True,
                             purpose="reschedule a Slurm job")
        yield from reschedule(
            DatasetHandle(ds), revision=revision or "HEAD", since=since,
            message=message, report=report, script=script,
            with_failed=with_failed_jobs, assume_ready=assume_ready,
            alt_dir=alt_dir, no_alt_dir=no_alt_dir, jobs=jobs)

    custom_result_renderer = staticmethod(render_result)
