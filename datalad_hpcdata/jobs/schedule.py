"""slurm-schedule: validate, claim outputs, get inputs, prepare, submit.

Order matters and is the contract: nothing is changed before everything is
validated; outputs are claimed atomically before anything is touched; a
failed submission releases the claim and restores the worktree exactly.
"""

from __future__ import annotations

import logging
import os
import shlex

from datalad.core.local.run import format_command, normalize_command
from datalad.interface.results import get_status_dict
from datalad.support.globbedpaths import GlobbedPaths

from ..dataset.git import rev_parse
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
from ..dataset.worktree import missing_content, prepare_outputs, restore
from ..slurm import SlurmError
from ..slurm.argv import is_sbatch
from .cluster import cluster_name
from .logs import log_patterns
from .record import extension_tag
from .spec import JobSpec

lgr = logging.getLogger("datalad.hpcdata.schedule")

ACTION = "slurm-schedule"


class ScheduleError(ValueError):
    """Bad input; nothing was changed."""


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


def check_outputs(handle: DatasetHandle, outputs: list[str]) -> list[str]:
    """The paths the outputs claim; ScheduleError for unusable ones."""
    claims = []
    subds = handle.subdataset_paths()
    for spec in outputs:
        try:
            claim = claim_path(spec)
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
                         rel_pwd: str, must_exist: bool) -> list[str]:
    """Paths relative to pwd, globs expanded, for {inputs}/{outputs}."""
    out = []
    for spec in specs:
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


def plan(handle: DatasetHandle, cmd, pwd_abs: str, inputs=None,
         extra_inputs=None, outputs=None, expand_opt: str | None = None,
         message: str | None = None, chain=None, alt_dir: str | None = None,
         assume_ready: str | None = None) -> JobSpec:
    """Validate everything and return the job spec (no side effects)."""
    rel_pwd = dataset_relative_pwd(handle, pwd_abs)
    in_specs = resolve_specs(handle, inputs, pwd_abs, "input")
    extra_specs = resolve_specs(handle, extra_inputs, pwd_abs, "extra input")
    out_specs = resolve_specs(handle, outputs, pwd_abs, "output")
    if not out_specs:
        raise ScheduleError(
            "at least one -o/--output is required: slurm-finish commits only "
            "the declared outputs (and the job's Slurm logs)")
    check_inputs_exist(handle, in_specs)
    check_inputs_exist(handle, extra_specs, "extra input")
    claims = check_outputs(handle, out_specs)
    inputs_cmd = expanded_for_command(handle, in_specs, rel_pwd, True)
    outputs_cmd = expanded_for_command(handle, out_specs, rel_pwd, False)
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
    exp = expand_opt or ""
    rec_inputs = (inputs_cmd if exp in ("inputs", "both") else
                  [relative_to_pwd(s, rel_pwd) for s in in_specs])
    rec_outputs = (expanded_for_command(handle, out_specs, rel_pwd, True)
                   if exp in ("outputs", "both") else
                   [relative_to_pwd(s, rel_pwd) for s in out_specs])
    return JobSpec(
        cmd=cmd_str, cmd_expanded=expanded, argv=argv, pwd=rel_pwd,
        inputs=rec_inputs,
        extra_inputs=[relative_to_pwd(s, rel_pwd) for s in extra_specs],
        outputs=rec_outputs, input_specs=in_specs + extra_specs,
        output_specs=out_specs, claims=claims, message=message,
        chain=list(chain or []), alt_dir=alt_dir or None, alt_root=alt_root,
        assume_ready=assume_ready, extension=extension_tag())


def _assumed(assume_ready: str | None, what: str) -> bool:
    return assume_ready in (what, "both")


def get_inputs(handle: DatasetHandle, spec: JobSpec, jobs=None) -> None:
    """Get the content of annexed inputs that is not present."""
    if _assumed(spec.assume_ready, "inputs"):
        return
    need = missing_content(handle.root, [
        h for s in spec.input_specs for h in expand(s, handle.root)])
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

    def __init__(self, handle: DatasetHandle, spec: JobSpec, row: int):
        self.handle, self.spec, self.row = handle, spec, row
        self.actions = []
        self.staged = None

    def prepare(self, jobs=None) -> None:
        get_inputs(self.handle, self.spec, jobs)
        if self.spec.alt_root:
            from . import staging
            self.staged = staging.stage_job(self.handle, self.spec, jobs)
        elif not _assumed(self.spec.assume_ready, "outputs"):
            self.actions = prepare_outputs(self.handle.root,
                                           self.spec.output_specs)

    def undo(self, reason: str) -> list[str]:
        """Restore the worktree, remove staged files, reject the row;
        return paths that could not be restored."""
        unrestored = restore(self.actions)
        if self.spec.alt_root:
            from . import staging
            staging.unstage(self.handle, self.spec, self.row)
        self.handle.store.reject(self.row, reason)
        return unrestored


def _expected_errors(spec: JobSpec) -> tuple:
    expected = (ScheduleError, OSError)
    if spec.alt_root:
        from ..altdir import StagingError
        expected += (StagingError,)
    return expected


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
    head = rev_parse(handle.root, "HEAD")
    with repository_lock(handle.git_dir):
        try:
            row = handle.store.claim(spec.claims, spec.to_dict(), head)
        except ConflictError as e:
            yield get_status_dict(status="impossible", message=str(e),
                                  conflicts=[
                                      {"output": n, "claimed": c,
                                       "slurm_job_id": j.job_id}
                                      for n, c, j in e.conflicts], **res)
            return
        prepared = _Prepared(handle, spec, row)
        try:
            prepared.prepare(jobs)
        except BaseException as e:
            prepared.undo("preparation failed: %s" % e)
            if isinstance(e, _expected_errors(spec)):
                yield get_status_dict(status="error", message=str(e), **res)
                return
            raise
    yield from _submit(handle, spec, prepared, res)


def _submit(handle: DatasetHandle, spec: JobSpec, prepared: _Prepared,
            res: dict):
    pwd_abs = os.path.join(handle.root, spec.pwd)
    row = prepared.row
    try:
        sub = handle.backend.submit(spec.argv, cwd=pwd_abs)
    except (SlurmError, OSError) as e:
        with repository_lock(handle.git_dir):
            unrestored = prepared.undo(str(e))
        msg = str(e)
        if unrestored:
            msg += "; could not restore: %s" % ", ".join(unrestored)
        yield get_status_dict(status="error", message=msg, **res)
        return
    except BaseException:
        handle.store.reject(row, "interrupted during submission")
        raise
    info = {}
    try:
        info = handle.backend.submit_info(sub.job_id)
    except SlurmError as e:
        lgr.warning("could not read job %s details: %s", sub.job_id, e)
    logs = log_patterns(info, pwd_abs, sub.job_id)
    cluster = cluster_name(handle, sub.cluster)
    staged = prepared.staged
    staged_counts = ({"staged_files": staged.files,
                      "staged_bytes": staged.bytes} if staged else {})
    handle.store.set_submitted(row, cluster, sub.job_id, dict(
        staged_counts, slurm_logs=logs,
        array=info.get("ArrayTaskId") or None,
        job_name=info.get("JobName") or None,
        workdir=info.get("WorkDir") or pwd_abs,
        submit_stdout=sub.stdout.strip()))
    yield get_status_dict(
        status="ok", message=("submitted Slurm job %s%s", sub.job_id,
                              " on cluster %s" % cluster if cluster else ""),
        slurm_job_id=sub.job_id, cluster=cluster, outputs=spec.outputs,
        inputs=spec.inputs, pwd=spec.pwd, slurm_logs=logs,
        array=info.get("ArrayTaskId") or None, alt_dir=spec.alt_dir,
        **dict(staged_counts, **res))
