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

    Jobs are submitted one after the other; a job that reads what an
    earlier job of the same call writes is submitted with that job's
    afterok, so it reads the new output, not the old one. With
    ``--affected-by PATH`` (or ``--affected-by-commit REV``) exactly the
    jobs derived from PATH are resubmitted, producers first.
    """

    _examples_ = [
        dict(text="Resubmit the job recorded in HEAD",
             code_cmd="datalad slurm-reschedule",
             code_py="slurm_reschedule()"),
        dict(text="Resubmit every recorded job since a tag",
             code_cmd="datalad slurm-reschedule --since v1.0",
             code_py="slurm_reschedule(since='v1.0')"),
        dict(text="Run the failed tasks of the array recorded in HEAD again",
             code_cmd="datalad slurm-reschedule --failed-tasks HEAD",
             code_py="slurm_reschedule(failed_tasks='HEAD')"),
        dict(text="Show what a fix of code/sim.py makes run again",
             code_cmd="datalad slurm-reschedule --report "
                      "--affected-by code/sim.py",
             code_py="slurm_reschedule(report=True, "
                     "affected_by=['code/sim.py'])"),
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
            doc="""resubmit every record in SINCE..REVISION, in recorded
            order; a job that read what an earlier one of them writes waits
            for it (Slurm afterok). An empty string means the whole
            history.""",
            constraints=EnsureStr() | EnsureNone()),
        affected_by=Parameter(
            args=("--affected-by",), metavar="PATH", nargs="+",
            doc="""resubmit exactly the recorded jobs whose inputs, extra
            inputs or sbatch script derive from PATH (a file or directory),
            directly or through other recorded jobs' outputs, in data-flow
            order, each waiting for its producers. Looks at the whole
            history up to REVISION unless --since is given.""",
            constraints=EnsureStr() | EnsureNone()),
        affected_by_commit=Parameter(
            args=("--affected-by-commit",), metavar="REV",
            doc="""like --affected-by with every file commit REV changed.""",
            constraints=EnsureStr() | EnsureNone()),
        dataset=dataset_opt,
        message=Parameter(
            args=("-m", "--message"), metavar="MESSAGE",
            doc="""use this message instead of the recorded one.""",
            constraints=EnsureStr() | EnsureNone()),
        report=Parameter(
            args=("--report",), action="store_true",
            doc="""only report the plan: each job with its command, inputs,
            outputs and what it will wait for; nothing is submitted."""),
        script=Parameter(
            args=("--script",), metavar="FILE",
            doc="""write the slurm-schedule commands to FILE ('-' for
            stdout) instead of submitting.""",
            constraints=EnsureStr() | EnsureNone()),
        failed_tasks=Parameter(
            args=("--failed-tasks",), metavar="REV",
            doc="""resubmit only the tasks of the array job recorded in REV
            that did not complete, as an array of just those task ids
            (``--array=3,17,999``, the recorded ``%%`` throttle kept);
            finishing it commits those tasks' outputs with a record whose
            chain ends with REV.""",
            constraints=EnsureStr() | EnsureNone()),
        tasks=Parameter(
            args=("--tasks",), metavar="LIST",
            doc="""resubmit only these tasks (an --array list: ``3,17``,
            ``1-9:2``) of the array job recorded in REVISION.""",
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
    def __call__(revision=None, *, since=None, affected_by=None,
                 affected_by_commit=None, dataset=None, message=None,
                 report=False, script=None, with_failed_jobs=False,
                 assume_ready=None, alt_dir=None, no_alt_dir=False,
                 jobs=None, failed_tasks=None, tasks=None):
        # the workflow is imported here, not when DataLad builds the parser
        from datalad.core.local.run import get_command_pwds

        from ..dataset.handle import DatasetHandle
        from ..jobs.reschedule import reschedule
        from ..jobs.schedule import job_pwd
        ds = require_dataset(dataset, check_installed=True,
                             purpose="reschedule a Slurm job")
        handle = DatasetHandle(ds)
        yield from reschedule(
            handle, revision=revision or "HEAD", since=since,
            message=message, report=report, script=script,
            with_failed=with_failed_jobs, assume_ready=assume_ready,
            alt_dir=alt_dir, no_alt_dir=no_alt_dir, jobs=jobs,
            affected_by=affected_by, affected_by_commit=affected_by_commit,
            failed_tasks=failed_tasks, tasks=tasks,
            pwd=job_pwd(handle, get_command_pwds(dataset)[0]))

    custom_result_renderer = staticmethod(render_result)
