"""`datalad slurm-schedule`: submit a job now, record it when it finished."""

from __future__ import annotations

import logging

from datalad.distribution.dataset import datasetmethod, require_dataset
from datalad.interface.base import Interface, build_doc, eval_results
from datalad.interface.results import get_status_dict
from datalad.support.constraints import EnsureBool, EnsureNone, EnsureStr
from datalad.support.param import Parameter

from .options import alt_dir_opt, run_params
from .render import render_result

lgr = logging.getLogger("datalad.hpcdata.schedule")

_run = run_params


@build_doc
class SlurmSchedule(Interface):
    """Submit a Slurm job whose outputs are committed later by slurm-finish

    COMMAND is the submission itself, e.g. ``sbatch job.sh ARG``; ``#SBATCH``
    lines in the script are honoured. The command is not run through a
    shell. Placeholders ``{inputs}``, ``{outputs}``, ``{pwd}``, ``{dspath}``
    (and ``datalad.run.substitutions.*``) are expanded as in
    :command:`datalad run`.

    Before submission, inputs are retrieved, the declared outputs are
    claimed (no two open jobs may claim the same or nested paths, whatever
    the spelling) and prepared (annexed outputs become writable copies;
    nothing else in the dataset is touched). If the submission fails, the
    claim is released and the worktree restored. Nothing is committed now:
    run :command:`datalad slurm-finish` later.

    An input in, under or over an output an open job claims makes the job
    wait for that job: it is submitted with ``--dependency=afterok:<ids>``
    (merged with a dependency of your own), the input need not exist yet,
    and the result says ``depends_on``. Configuration
    ``datalad.hpcdata.dependencies``: ``auto`` (default) or ``refuse``.
    """

    _examples_ = [
        dict(text="Submit a job that reads data/ and writes results/",
             code_cmd="datalad slurm-schedule -i data -o results "
                      "sbatch code/job.sh",
             code_py="slurm_schedule('sbatch code/job.sh', inputs=['data'], "
                     "outputs=['results'])"),
        dict(text="Run the job script inside the container 'sim' registered "
                  "with datalad containers-add",
             code_cmd="datalad slurm-schedule --container sim -i data "
                      "-o results sbatch code/job.sh",
             code_py="slurm_schedule('sbatch code/job.sh', container='sim', "
                     "inputs=['data'], outputs=['results'])"),
        dict(text="Then one that reads those results at once: it waits for "
                  "the first job in Slurm",
             code_cmd="datalad slurm-schedule -i results -o plots "
                      "sbatch code/plot.sh",
             code_py="slurm_schedule('sbatch code/plot.sh', "
                     "inputs=['results'], outputs=['plots'])"),
        dict(text="Submit one job per line of a JSON lines file",
             code_cmd="datalad slurm-schedule --jobs-from jobs.jsonl",
             code_py="slurm_schedule(jobs_from=[{'cmd': 'sbatch job.sh 1', "
                     "'outputs': ['res/1']}, {'cmd': 'sbatch job.sh 2', "
                     "'outputs': ['res/2']}])"),
    ]

    result_renderer = "tailored"
    on_failure = "continue"

    _params_ = dict(
        cmd=_run["cmd"],
        dataset=_run["dataset"],
        inputs=_run["inputs"],
        extra_inputs=Parameter(
            args=("--extra-input",), dest="extra_inputs", metavar="PATH",
            action="append",
            doc="""like --input, but not substituted into {inputs}."""),
        outputs=Parameter(
            args=("-o", "--output"), dest="outputs", metavar="PATH",
            action="append",
            doc="""(required) a file or directory the job writes (globs
            claim their literal leading directory). Only declared outputs
            and the job's Slurm logs are committed by slurm-finish. For an
            array job, %%a (the task id) and %%A (the array's job id) make
            an output per task ('results/sim-%%a'): each task's outputs
            are committed when it completed, the failed ones' are not.
            An --input may contain %%a too ('params/p-%%a.txt': each task
            reads its own file); slurm-reschedule --affected-by then
            re-runs only the tasks whose own inputs changed.
            [CMD: This option can be given more than once. CMD]"""),
        expand=_run["expand"],
        assume_ready=_run["assume_ready"],
        message=_run["message"],
        dry_run=_run["dry_run"],
        alt_dir=alt_dir_opt,
        check_outputs=Parameter(
            args=("--check-outputs",),
            doc="""accepted for compatibility with datalad-slurm; the
            overlap check cannot be turned off (overlapping outputs would
            let one job's files be committed as another's).""",
            constraints=EnsureBool() | EnsureNone()),
        container=Parameter(
            args=("--container",), metavar="NAME",
            doc="""run the batch script inside the container NAME registered
            with :command:`datalad containers-add` (needs the
            datalad-container extension), using its call format. The
            script's #SBATCH lines still apply; the image is an extra input
            (retrieved now, staged with --alt-dir) and the record names the
            container, so slurm-reschedule reuses it.""",
            constraints=EnsureStr() | EnsureNone()),
        jobs=_run["jobs"],
        jobs_from=Parameter(
            args=("--jobs-from",), metavar="FILE",
            doc="""schedule one job per line of FILE ('-': standard input):
            JSON objects with the keys cmd and outputs (required), inputs,
            extra_inputs, message, alt_dir, expand, assume_ready (from
            Python also a list of such dicts). All lines are validated
            first; a bad line is reported by its number and nothing is
            submitted. Then the jobs are claimed and submitted one by one,
            each with its own result. Placeholders are expanded per line;
            -m, --alt-dir, --expand and --assume-ready are defaults for
            lines without that key."""),
    )

    @staticmethod
    @datasetmethod(name="slurm_schedule")
    @eval_results
    def __call__(cmd=None, *, dataset=None, inputs=None, extra_inputs=None,
                 outputs=None, expand=None, assume_ready=None, message=None,
                 dry_run=None, alt_dir=None, check_outputs=None,
                 container=None, jobs=None, jobs_from=None):
        # the workflow is imported here, not when DataLad builds the parser
        from ..dataset.handle import DatasetHandle
        from ..jobs.command import command_pwd
        from ..jobs.container import ContainerError
        from ..jobs.dataflow import annotate
        from ..jobs.schedule import (
            ACTION,
            ScheduleError,
            job_pwd,
            plan,
            schedule,
        )
        ds = require_dataset(dataset, check_installed=True,
                             purpose="schedule a Slurm job")
        handle = DatasetHandle(ds)
        pwd = job_pwd(handle, command_pwd(dataset))
        if check_outputs is False:
            lgr.warning("--check-outputs false is ignored: overlapping "
                        "outputs are always refused")
        alt_dir = alt_dir or ds.config.get("datalad.hpcdata.alt-dir")
        if jobs_from is not None:
            if cmd or inputs or outputs or extra_inputs:
                yield get_status_dict(
                    action=ACTION, ds=ds, path=ds.path, type="dataset",
                    status="impossible", logger=lgr,
                    message="with --jobs-from, give the command, inputs and "
                            "outputs on each line, not on the command line")
                return
            from ..jobs.batch import schedule_many
            yield from schedule_many(
                handle, jobs_from, pwd, jobs=jobs, dry_run=dry_run,
                defaults=dict(message=message, alt_dir=alt_dir,
                              expand=expand, assume_ready=assume_ready))
            return
        try:
            spec = plan(handle, cmd, pwd, inputs=inputs,
                        extra_inputs=extra_inputs, outputs=outputs,
                        expand_opt=expand, message=message, alt_dir=alt_dir,
                        assume_ready=assume_ready, container=container)
        except (ScheduleError, ContainerError) as e:
            yield get_status_dict(action=ACTION, ds=ds, path=ds.path,
                                  type="dataset", status="impossible",
                                  message=str(e), logger=lgr)
            return
        yield from annotate(schedule(handle, spec, jobs=jobs,
                                     dry_run=dry_run), spec)

    custom_result_renderer = staticmethod(render_result)
