"""slurm-schedule: validate, claim outputs, get inputs, prepare outputs, submit.

Order matters and is the contract: nothing is changed before everything is
validated; outputs are claimed atomically before anything is touched; a
failed submission releases the claim and restores the worktree exactly.
"""

from __future__ import annotations

import logging
import os
import re
import shlex

from datalad.core.local.run import format_command, normalize_command
from datalad.interface.results import get_status_dict
from datalad.log import log_progress
from datalad.support.globbedpaths import GlobbedPaths

from .gitplumbing import rev_parse
from .jobstore import ConflictError
from .paths import (PathError, canonical_spec, claim_path, expand, has_glob,
                    inside, overlaps, relative_to_pwd)
from .record import extension_tag
from .repolock import repository_lock
from .slurm.backend import SlurmError
from .slurm.cli import is_sbatch
from .worktree import missing_content, prepare_outputs, restore

lgr = logging.getLogger("datalad.hpcdata.schedule")

ACTION = "slurm-schedule"


class ScheduleError(ValueError):
    """Bad input; nothing was changed."""


def _listify(value):
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    return [str(v) for v in value]


def resolve_specs(ctx, specs, pwd_abs, kind):
    """Canonical root-relative specs for user paths; ScheduleError if bad."""
    out = []
    for spec in _listify(specs):
        try:
            canon = canonical_spec(spec, ctx.root, pwd_abs)
        except PathError as e:
            raise ScheduleError("%s %s" % (kind, e))
        if canon not in out:
            out.append(canon)
    return out


def check_inputs_exist(ctx, specs, kind="input"):
    for spec in specs:
        if not expand(spec, ctx.root):
            raise ScheduleError(
                "%s %r does not exist in the dataset%s" % (
                    kind, spec, " (the glob matches nothing)"
                    if has_glob(spec) else ""))


def check_outputs(ctx, outputs):
    claims = []
    subds = ctx.subdataset_paths()
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


def expanded_for_command(ctx, specs, rel_pwd, must_exist):
    """Paths relative to pwd, globs expanded, for {inputs}/{outputs}."""
    out = []
    for spec in specs:
        hits = expand(spec, ctx.root) if has_glob(spec) or must_exist \
            else [spec]
        out.extend(relative_to_pwd(h, rel_pwd) for h in hits)
    return out


def build_argv(ctx, cmd, pwd_abs, inputs_cmd, outputs_cmd, dspath=None,
               glob_pwd=None):
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
            ctx.ds, cmd_str, pwd=pwd_abs, dspath=dspath or ctx.root,
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


def plan(ctx, cmd, pwd_abs, inputs=None, extra_inputs=None, outputs=None,
         expand_opt=None, message=None, chain=None, alt_dir=None,
         assume_ready=None):
    """Validate everything and return the job spec (no side effects)."""
    rel_pwd = relative_to_pwd_root(ctx, pwd_abs)
    in_specs = resolve_specs(ctx, inputs, pwd_abs, "input")
    extra_specs = resolve_specs(ctx, extra_inputs, pwd_abs, "extra input")
    out_specs = resolve_specs(ctx, outputs, pwd_abs, "output")
    if not out_specs:
        raise ScheduleError(
            "at least one -o/--output is required: slurm-finish commits only "
            "the declared outputs (and the job's Slurm logs)")
    check_inputs_exist(ctx, in_specs)
    check_inputs_exist(ctx, extra_specs, "extra input")
    claims = check_outputs(ctx, out_specs)
    inputs_cmd = expanded_for_command(ctx, in_specs, rel_pwd, True)
    outputs_cmd = expanded_for_command(ctx, out_specs, rel_pwd, False)
    alt_root = None
    job_pwd = pwd_abs
    if alt_dir:
        from .staging import StagingError, check_alt_dir
        try:
            alt_root = check_alt_dir(alt_dir, ctx.root)
        except StagingError as e:
            raise ScheduleError("--alt-dir: %s" % e)
        job_pwd = os.path.join(alt_root, rel_pwd) if rel_pwd != "." \
            else alt_root
    cmd_str, expanded, argv = build_argv(ctx, cmd, job_pwd, inputs_cmd,
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
    rec_outputs = (expanded_for_command(ctx, out_specs, rel_pwd, True)
                   if exp in ("outputs", "both") else
                   [relative_to_pwd(s, rel_pwd) for s in out_specs])
    return {
        "cmd": cmd_str,
        "cmd_expanded": expanded,
        "argv": argv,
        "pwd": rel_pwd,
        "inputs": rec_inputs,
        "extra_inputs": [relative_to_pwd(s, rel_pwd) for s in extra_specs],
        "outputs": rec_outputs,
        "input_specs": in_specs + extra_specs,
        "output_specs": out_specs,
        "claims": claims,
        "message": message,
        "chain": list(chain or []),
        "alt_dir": alt_dir or None,
        "alt_root": alt_root,
        "assume_ready": assume_ready,
        "extension": extension_tag(),
    }


def relative_to_pwd_root(ctx, pwd_abs):
    if not inside(pwd_abs, ctx.root):
        return "."
    return os.path.relpath(os.path.realpath(pwd_abs),
                           ctx.root).replace(os.sep, "/")


def _assumed(assume_ready, what):
    return assume_ready in (what, "both")


def schedule(ctx, spec, jobs=None, dry_run=None):
    """Claim, prepare and submit one planned job; yield result records."""
    ds = ctx.ds
    res = dict(action=ACTION, ds=ds, path=ds.path, type="dataset",
               logger=lgr)
    pwd_abs = os.path.join(ctx.root, spec["pwd"])
    if dry_run:
        yield get_status_dict(
            status="ok", message=("would submit: %s", spec["cmd_expanded"]),
            dry_run=dry_run, cmd=spec["cmd"],
            cmd_expanded=spec["cmd_expanded"], inputs=spec["inputs"],
            outputs=spec["outputs"], pwd=spec["pwd"], **res)
        return
    head = rev_parse(ctx.root, "HEAD")
    store = ctx.store
    alt_root = spec.get("alt_root")
    staged = None
    stored = {k: v for k, v in spec.items() if k != "argv"}
    with repository_lock(ctx.git_dir):
        try:
            row = store.claim(spec["claims"], stored, head)
        except ConflictError as e:
            yield get_status_dict(status="impossible", message=str(e),
                                  conflicts=[
                                      {"output": n, "claimed": c,
                                       "slurm_job_id": j.job_id}
                                      for n, c, j in e.conflicts], **res)
            return
        actions = []
        try:
            if not _assumed(spec.get("assume_ready"), "inputs"):
                need = missing_content(
                    ctx.root, [h for s in spec["input_specs"]
                               for h in expand(s, ctx.root)])
                if need:
                    failed = [r for r in ds.get(
                        need, jobs=jobs, on_failure="ignore",
                        result_renderer="disabled", return_type="list")
                        if r.get("status") in ("error", "impossible")]
                    if failed:
                        raise ScheduleError(
                            "could not get input content: %s" % "; ".join(
                                "%s: %s" % (f.get("path"), f.get("message"))
                                for f in failed))
            if alt_root:
                staged = stage_job(ctx, spec, jobs)
            elif not _assumed(spec.get("assume_ready"), "outputs"):
                actions = prepare_outputs(ctx.root, spec["output_specs"])
        except BaseException as e:
            restore(actions)
            if alt_root:
                unstage(ctx, spec, row)
            store.reject(row, "preparation failed: %s" % e)
            expected = (ScheduleError, OSError)
            if alt_root:
                from .staging import StagingError
                expected += (StagingError,)
            if isinstance(e, expected):
                yield get_status_dict(status="error", message=str(e), **res)
                return
            raise
    try:
        sub = ctx.backend.submit(spec["argv"], cwd=pwd_abs)
    except (SlurmError, OSError) as e:
        with repository_lock(ctx.git_dir):
            unrestored = restore(actions)
            if alt_root:
                unstage(ctx, spec, row)
            store.reject(row, str(e))
        msg = str(e)
        if unrestored:
            msg += "; could not restore: %s" % ", ".join(unrestored)
        yield get_status_dict(status="error", message=msg, **res)
        return
    except BaseException:
        store.reject(row, "interrupted during submission")
        raise
    info = {}
    try:
        info = ctx.backend.submit_info(sub.job_id)
    except SlurmError as e:
        lgr.warning("could not read job %s details: %s", sub.job_id, e)
    logs = log_patterns(info, pwd_abs, sub.job_id)
    cluster = ctx.cluster_name(sub.cluster)
    staged_counts = ({"staged_files": staged.files,
                      "staged_bytes": staged.bytes} if staged else {})
    store.set_submitted(row, cluster, sub.job_id, dict(staged_counts, **{
        "slurm_logs": logs,
        "array": info.get("ArrayTaskId") or None,
        "job_name": info.get("JobName") or None,
        "workdir": info.get("WorkDir") or pwd_abs,
        "submit_stdout": sub.stdout.strip(),
    }))
    yield get_status_dict(
        status="ok", message=("submitted Slurm job %s%s", sub.job_id,
                              " on cluster %s" % cluster if cluster else ""),
        slurm_job_id=sub.job_id, cluster=cluster, outputs=spec["outputs"],
        inputs=spec["inputs"], pwd=spec["pwd"], slurm_logs=logs,
        array=info.get("ArrayTaskId") or None, alt_dir=spec.get("alt_dir"),
        **dict(staged_counts, **res))


def staged_inputs(ctx, spec):
    return sorted({h for s in spec["input_specs"]
                   for h in expand(s, ctx.root)})


def stage_job(ctx, spec, jobs=None):
    """Copy inputs into the alt-dir and prepare output dirs there."""
    from .staging import prepare_outputs as prepare_staged_outputs
    from .staging import stage_inputs
    alt_root = spec["alt_root"]
    prepare_staged_outputs(alt_root, spec["output_specs"], ds_root=ctx.root)
    os.makedirs(os.path.join(alt_root, spec["pwd"]), exist_ok=True)
    pid = "hpcdata-stage-%d" % os.getpid()
    log_progress(lgr.info, pid, "Staging inputs to %s", alt_root,
                 label="Staging", unit=" Bytes", total=1)

    def progress(done_files, total_files, done_bytes, total_bytes):
        log_progress(lgr.info, pid, "", update=done_bytes,
                     total=max(total_bytes, 1), noninteractive_level=5)

    try:
        report = stage_inputs(ctx.root, alt_root, staged_inputs(ctx, spec),
                              jobs=jobs if isinstance(jobs, int) and jobs > 0
                              else 4, progress=progress)
    finally:
        log_progress(lgr.info, pid, "Staged inputs", noninteractive_level=5)
    if report.failed:
        raise ScheduleError("could not stage inputs to %s: %s" % (
            alt_root, "; ".join("%s: %s" % f for f in report.failed)))
    return report


def other_staged_paths(ctx, alt_root, row):
    """Paths other open jobs use in the same alt-dir (never cleaned up)."""
    keep = set()
    for job in ctx.store.jobs():
        if job.row != row and job.spec.get("alt_root") == alt_root:
            keep.update(job.spec.get("input_specs") or [])
            keep.update(job.spec.get("output_specs") or [])
    return sorted(keep)


def unstage(ctx, spec, row, logs=()):
    """Remove what this job staged, leaving other jobs' paths alone."""
    from .staging import cleanup
    alt_root = spec["alt_root"]
    return cleanup(alt_root, staged_inputs(ctx, spec)
                   + list(spec["output_specs"]) + list(logs),
                   keep=other_staged_paths(ctx, alt_root, row))


NO_VAL = "4294967294"   # what scontrol prints for %a of a pending array


def log_patterns(info, pwd_abs, job_id):
    """Slurm log path patterns as the job will write them (absolute).

    scontrol shows a plain job's log names expanded.  For an array it shows
    the master record with %a as NO_VAL and %A/%j as the master id: turn
    those back into %a and %A (a %j pattern is re-derived per task at
    finish time, see finishing.job_logs)."""
    pats = []
    workdir = info.get("WorkDir") or pwd_abs
    array = bool(info.get("ArrayTaskId"))
    for key in ("StdOut", "StdErr"):
        value = info.get(key)
        if not value and key == "StdOut":
            value = "slurm-%A_%a.out" if array else "slurm-%j.out"
        if not value or value == "/dev/null":
            continue
        if array:
            value = value.replace(NO_VAL, "%a")
            value = re.sub(r"(?<!\d)%s(?!\d)" % re.escape(str(job_id)), "%A",
                           value)
        value = os.path.join(workdir, value)
        if value not in pats:
            pats.append(value)
    return pats
