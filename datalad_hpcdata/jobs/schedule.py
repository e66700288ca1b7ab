"""slurm-schedule: validate, claim outputs, get inputs, prepare, submit.

Order matters and is the contract: nothing is changed before everything is
validated (the Slurm backend too); outputs are claimed atomically before
anything is touched; every error after the claim (including Ctrl-C,
SIGTERM and an sbatch that does not answer) restores the worktree and
releases the claim -- or, when the job may exist, leaves the claim for
:mod:`.submissions` to resolve by the token in the job's comment.
"""

from __future__ import annotations

import logging
import os
import shlex
import time

from datalad.interface.results import get_status_dict
from datalad.support.globbedpaths import GlobbedPaths

from .. import faults
from ..dataset.git import head_commit
from ..dataset.handle import DatasetHandle
from ..dataset.jobstore import ConflictError
from ..dataset.lock import repository_lock
from ..dataset.paths import (
    PathError,
    canonical_spec,
    claim_path,
    expand,
    has_glob,
    inside,
    overlaps,
    relative_to_pwd,
)
from ..slurm import SlurmError
from ..slurm.argv import is_sbatch, user_array, with_option
from . import dataflow, submissions
from .cluster import cluster_name
from .command import format_command, normalize_command
from .container import with_container
from .errors import ScheduleError
from .prepare import _expected_errors, _Prepared
from .record import extension_tag
from .signals import interruptible
from .spec import JobSpec
from .submissions import new_token
from .submit import submit, why
from .tasks import array_tasks, task_claims, task_inputs
from .tasks import split as split_tasks

__all__ = ["ScheduleError", "cluster_name", "plan", "schedule"]

lgr = logging.getLogger("datalad.hpcdata.schedule")

ACTION = "slurm-schedule"


def _listify(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    return [str(v) for v in value]


def resolve_specs(handle: DatasetHandle, specs, pwd_abs: str,
                  kind: str) -> list[str]:
    """Canonical root-relative specs for user paths; ScheduleError if bad."""
    out = []
    for spec in _listify(specs):
        try:
            canon = canonical_spec(spec, handle.root, pwd_abs)
        except PathError as e:
            raise ScheduleError("%s %s" % (kind, e))
        if canon not in out:
            out.append(canon)
    return out


def check_inputs_exist(handle: DatasetHandle, specs: list[str],
                       kind: str = "input") -> None:
    for spec in specs:
        if not expand(spec, handle.root):
            raise ScheduleError(
                "%s %r does not exist in the dataset%s" % (
                    kind, spec, " (the glob matches nothing)"
                    if has_glob(spec) else ""))


def check_outputs(handle: DatasetHandle, outputs: list[str],
                  tasks: list[int] = ()) -> list[str]:
    """The paths the outputs claim (per-task patterns: one per task, see
    :mod:`.tasks`); ScheduleError for unusable ones."""
    claims = []
    subds = handle.subdataset_paths()
    patterns, outputs = split_tasks(outputs)
    each = [(spec, None) for spec in outputs] + [
        (p, c) for p in patterns for c in task_claims([p], tasks)]
    for spec, claim in each:
        try:
            claim = claim or claim_path(spec)
        except PathError as e:
            raise ScheduleError("output %s" % e)
        for sub in subds:
            if overlaps(claim, sub):
                raise ScheduleError(
                    "output %r overlaps the subdataset %r; schedule the job "
                    "in the subdataset instead" % (spec, sub))
        claims.append(claim)
    return sorted(set(claims))


def expanded_for_command(handle: DatasetHandle, specs: list[str],
                         rel_pwd: str, must_exist: bool,
                         keep: set[str] = frozenset()) -> list[str]:
    """Paths relative to pwd, globs expanded, for {inputs}/{outputs}.

    Specs in `keep` (inputs an open job writes) are passed as given: what
    exists now is not what the job will read."""
    out = []
    for spec in specs:
        if spec in keep:
            out.append(relative_to_pwd(spec, rel_pwd))
            continue
        hits = expand(spec, handle.root) if has_glob(spec) or must_exist \
            else [spec]
        out.extend(relative_to_pwd(h, rel_pwd) for h in hits)
    return out


def build_argv(handle: DatasetHandle, cmd, pwd_abs: str,
               inputs_cmd: list[str], outputs_cmd: list[str],
               dspath: str | None = None, glob_pwd: str | None = None):
    """Expand placeholders and split into argv (no shell involved).

    `inputs_cmd`/`outputs_cmd` are already expanded paths relative to the
    pwd; they are globbed (again) in `glob_pwd`, the existing dataset
    directory, which for alt-dir jobs differs from the job's `pwd_abs`."""
    cmd_str = normalize_command(cmd)
    if not cmd_str.strip():
        raise ScheduleError("no command given; pass the submission, e.g. "
                            "'sbatch job.sh'")
    try:
        expanded = format_command(
            handle.ds, cmd_str, pwd=pwd_abs, dspath=dspath or handle.root,
            inputs=GlobbedPaths(inputs_cmd, pwd=glob_pwd or pwd_abs),
            outputs=GlobbedPaths(outputs_cmd, pwd=glob_pwd or pwd_abs))
    except (KeyError, IndexError, ValueError) as e:
        raise ScheduleError("cannot expand placeholders in %r: %s"
                            % (cmd_str, e))
    try:
        argv = shlex.split(expanded)
    except ValueError as e:
        raise ScheduleError("cannot split the command %r: %s" % (expanded, e))
    if not argv:
        raise ScheduleError("the command %r is empty" % cmd_str)
    return cmd_str, expanded, argv


def job_pwd(handle: DatasetHandle, pwd: str) -> str:
    """Where the job is submitted from: the current directory, or (like
    `datalad run`) the dataset root when that is outside the dataset."""
    return pwd if inside(pwd, handle.root) else handle.root


def dataset_relative_pwd(handle: DatasetHandle, pwd_abs: str) -> str:
    if not inside(pwd_abs, handle.root):
        return "."
    return os.path.relpath(os.path.realpath(pwd_abs),
                           handle.root).replace(os.sep, "/")


def _alt_root(handle: DatasetHandle, alt_dir: str | None) -> str | None:
    if not alt_dir:
        return None
    # the staging code is imported only for alt-dir jobs (start-up time)
    from ..altdir import StagingError, check_alt_dir
    try:
        return check_alt_dir(alt_dir, handle.root)
    except StagingError as e:
        raise ScheduleError("--alt-dir: %s" % e)


def _flow(fn, *args):
    """Call a :mod:`.dataflow` function; its errors are bad input."""
    try:
        return fn(*args)
    except dataflow.DataflowError as e:
        raise ScheduleError(str(e))


def _tasks(handle: DatasetHandle, cmd, pwd_abs: str, rel_pwd: str, specs,
           array: str | None):
    """(the --array value, the task ids of per-task outputs, (inputs,
    extra inputs) with per-task patterns expanded for the tasks).  Done
    before anything is created: a pattern without an array is refused
    with nothing changed."""
    in_specs, extra_specs, out_specs = specs
    patterns = split_tasks(out_specs)[0]
    in_patterns = split_tasks(in_specs + extra_specs)[0]
    if not (patterns or in_patterns or array):
        return None, [], (in_specs, extra_specs)
    array_spec = array or user_array(build_argv(
        handle, cmd, pwd_abs,
        expanded_for_command(handle, in_specs, rel_pwd, True,
                             set(in_patterns)),
        expanded_for_command(handle, out_specs, rel_pwd, False))[2], pwd_abs)
    tasks = array_tasks(array_spec, patterns) if patterns else []
    if not in_patterns:
        return array_spec, tasks, (in_specs, extra_specs)
    in_tasks = tasks or array_tasks(array_spec, in_patterns, "input")
    return array_spec, tasks, (task_inputs(in_specs, in_tasks),
                               task_inputs(extra_specs, in_tasks))


def plan(handle: DatasetHandle, cmd, pwd_abs: str, inputs=None,
         extra_inputs=None, outputs=None, expand_opt: str | None = None,
         message: str | None = None, chain=None, alt_dir: str | None = None,
         assume_ready: str | None = None, container=None,
         planned=(), array: str | None = None) -> JobSpec:
    """Validate everything and return the job spec (no side effects).

    Inputs that open jobs (or the `planned` ones, see
    :class:`.dataflow.Planned`) write make the job depend on those jobs:
    they need not exist yet, and the submission gets their afterok.
    `array` replaces the job's --array (re-running some of its tasks)."""
    rel_pwd = dataset_relative_pwd(handle, pwd_abs)
    in_specs = resolve_specs(handle, inputs, pwd_abs, "input")
    extra_specs = resolve_specs(handle, extra_inputs, pwd_abs, "extra input")
    out_specs = resolve_specs(handle, outputs, pwd_abs, "output")
    if not out_specs:
        raise ScheduleError(
            "at least one -o/--output is required: slurm-finish commits only "
            "the declared outputs (and the job's Slurm logs)")
    array_spec, tasks, reads = _tasks(handle, cmd, pwd_abs, rel_pwd,
                                      (in_specs, extra_specs, out_specs),
                                      array)
    producers = _flow(dataflow.producers, handle, reads[0] + reads[1],
                      planned)
    produced = dataflow.produced_specs(producers)
    check_inputs_exist(handle, [s for s in reads[0] if s not in produced])
    check_inputs_exist(handle, [s for s in reads[1] if s not in produced],
                       "extra input")
    # {inputs} keeps a per-task pattern as given, like {outputs}
    inputs_cmd = expanded_for_command(handle, in_specs, rel_pwd, True,
                                      produced | set(split_tasks(in_specs)[0]))
    outputs_cmd = expanded_for_command(handle, out_specs, rel_pwd, False)
    claims = check_outputs(handle, out_specs, tasks)
    # before _alt_root creates the directory
    _flow(dataflow.check_alt_root, alt_dir, producers)
    alt_root = _alt_root(handle, alt_dir)
    job_pwd = pwd_abs
    if alt_root:
        job_pwd = os.path.join(alt_root, rel_pwd) if rel_pwd != "." \
            else alt_root
    cmd_str, expanded, argv = build_argv(handle, cmd, job_pwd, inputs_cmd,
                                         outputs_cmd, dspath=alt_root,
                                         glob_pwd=pwd_abs)
    if alt_root:
        if not is_sbatch(argv):
            raise ScheduleError("--alt-dir needs the command to be an sbatch "
                                "call (the job's directory is set with "
                                "--chdir)")
        argv = [argv[0], "--chdir=%s" % job_pwd] + argv[1:]
    if array:
        if not is_sbatch(argv):
            raise ScheduleError("re-running some tasks of an array needs "
                                "the command to be an sbatch call")
        argv = with_option(argv, "--array=%s" % array)
    argv, dependency = _flow(dataflow.add_dependency, argv, pwd_abs,
                             producers, lambda: cluster_name(handle))
    exp = expand_opt or ""
    rec_inputs = (inputs_cmd if exp in ("inputs", "both") else
                  [relative_to_pwd(s, rel_pwd) for s in in_specs])
    rec_outputs = (expanded_for_command(handle, out_specs, rel_pwd, True)
                   if exp in ("outputs", "both") else
                   [relative_to_pwd(s, rel_pwd) for s in out_specs])
    spec = JobSpec(
        cmd=cmd_str, cmd_expanded=expanded, argv=argv, pwd=rel_pwd,
        inputs=rec_inputs,
        extra_inputs=[relative_to_pwd(s, rel_pwd) for s in extra_specs],
        outputs=rec_outputs, input_specs=reads[0] + reads[1],
        output_specs=out_specs, claims=claims, message=message,
        chain=list(chain or []), alt_dir=alt_dir or None, alt_root=alt_root,
        assume_ready=assume_ready, extension=extension_tag(),
        depends_on=[p.as_dict() for p in producers], dependency=dependency,
        tasks=tasks, array_spec=array_spec,
        array_override=array or None)
    return with_container(handle, spec, container, pwd_abs) if container \
        else spec


def schedule(handle: DatasetHandle, spec: JobSpec, jobs=None,
             dry_run: str | None = None):
    """Claim, prepare and submit one planned job; yield result records."""
    ds = handle.ds
    res = dict(action=ACTION, ds=ds, path=ds.path, type="dataset",
               logger=lgr)
    if dry_run:
        yield get_status_dict(
            status="ok", message=("would submit: %s", spec.cmd_expanded),
            dry_run=dry_run, cmd=spec.cmd, cmd_expanded=spec.cmd_expanded,
            inputs=spec.inputs, outputs=spec.outputs, pwd=spec.pwd, **res)
        return
    try:
        handle.backend      # configuration errors before anything changes
    except (ValueError, SlurmError) as e:
        yield get_status_dict(status="error", message=str(e), **res)
        return
    head = head_commit(handle.root, handle.git_dir)   # no git process
    token = new_token()
    prepared: list[_Prepared] = []

    def claimed(row: int) -> None:
        # still under the claim's lock: one lock acquisition per job
        prepared.append(_Prepared(handle, spec, row, token))
        _no_late_producer(handle, spec, row)
        faults.point("schedule:claim")
        prepared[0].prepare(jobs)

    with interruptible():
        result = _claim_prepare_submit(
            handle, spec, dict(spec.to_dict(), submit_token=token), head,
            claimed, prepared)
    yield get_status_dict(**dict(res, **result))


def _no_late_producer(handle: DatasetHandle, spec: JobSpec,
                      row: int) -> None:
    """Refuse a job whose input another job claimed since it was planned:
    its --dependency would miss that job."""
    try:
        late = dataflow.late_producers(handle.store, spec.input_specs,
                                       spec.depends_on, row)
    except dataflow.DataflowError as e:
        raise ScheduleError("%s; nothing was submitted" % e) from e
    if late:
        raise ScheduleError(
            "%s claimed %s, an input of this job, while it was being "
            "scheduled; nothing was submitted: schedule it again to depend "
            "on it" % (late[0].label, ", ".join(late[0].claims)))


def _claim_prepare_submit(handle: DatasetHandle, spec: JobSpec,
                          stored: dict, head: str | None, claimed,
                          prepared: list) -> dict:
    try:
        _claim(handle, spec, stored, head, then=claimed)
    except ConflictError as e:
        if prepared:
            raise
        return dict(status="impossible", message=str(e), conflicts=[
            {"output": n, "claimed": c, "slurm_job_id": j.job_id}
            for n, c, j in e.conflicts])
    except BaseException as e:
        if not prepared:
            raise
        unrestored = prepared[0].undo("preparation failed: %s" % why(e))
        if not isinstance(e, _expected_errors(spec)):
            raise
        msg = str(e)
        if unrestored:
            msg += "; could not restore: %s" % ", ".join(unrestored)
        return dict(status="error", message=msg)
    return submit(handle, spec, prepared[0])


def _claim(handle: DatasetHandle, spec: JobSpec, stored: dict,
           head: str | None, then=None, wait: float = 30.0) -> int:
    """Claim the outputs.  A conflicting submission in progress is given
    (bounded) time to get its job id, so a refusal can name the job; an
    interrupted one is resolved (adopted or released) once."""
    deadline = time.monotonic() + wait
    resolved = False
    while True:
        with repository_lock(handle.git_dir):
            try:
                row = handle.store.claim(spec.claims, stored, head)
            except ConflictError as e:
                conflict = e
            else:
                if then is not None:
                    then(row)
                return row
        pending = [j for _, _, j in conflict.conflicts
                   if j.status == "submitting"]
        if not pending:
            raise conflict
        if not resolved:
            resolved = True
            outcomes = submissions.resolve(handle, pending)
            if any(o in ("adopted", "released") for _, o, _ in outcomes):
                continue
            if not any(o == "working" for _, o, _ in outcomes):
                raise conflict
        if time.monotonic() > deadline:
            raise conflict
        time.sleep(0.2)
