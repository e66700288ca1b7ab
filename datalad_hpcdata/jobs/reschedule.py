"""slurm-reschedule: find run records in history and submit them again.

Jobs are submitted one after the other, in history order (or, with
``--affected-by``, in data-flow order, see :mod:`.affected`).  Each is
planned exactly like slurm-schedule plans a job, so a job reading what an
earlier resubmission of the same call writes gets that job's afterok (see
:mod:`.dataflow`); with ``--report``/``--script`` the earlier jobs are
planned, not submitted, and count as producers all the same.  A job reading
the output of a record whose resubmission failed or was skipped in this
call is not submitted.
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass, field

from datalad.interface.results import get_status_dict

from ..dataset.git import rev_parse
from ..dataset.handle import DatasetHandle
from ..slurm.argv import format_array, with_option
from .affected import AffectedError, PathIndex, changed_paths, check_paths
from .affected import select as select_affected
from .container import ContainerError
from .dataflow import Planned, annotate, public
from .history import Recorded, RevisionError, read_history, read_one
from .record import MARKER, RecordError
from .schedule import ScheduleError, plan, schedule
from .spec import JobSpec
from .tasks import task_override

lgr = logging.getLogger("datalad.hpcdata.reschedule")

ACTION = "slurm-reschedule"


def _range_text(revision: str, since: str | None) -> str:
    return "%s..%s" % (since, revision) if since else \
        "the history up to %s" % revision


def select_records(handle: DatasetHandle, revision: str = "HEAD",
                   since: str | None = None, affected_by=None,
                   affected_by_commit: str | None = None,
                   pwd: str | None = None) -> list[Recorded]:
    """The records to resubmit, in order.  RevisionError, RecordError or
    AffectedError for bad input."""
    if not affected_by and not affected_by_commit:
        if since is None:
            return [read_one(handle, revision)]
        records = read_history(handle, revision, since)
    else:
        records = read_history(handle, revision, since or "")
    if not records:
        raise RevisionError("no %s records in %s" % (
            MARKER, _range_text(revision, since)))
    if not affected_by and not affected_by_commit:
        return records
    paths = check_paths(handle, [affected_by] if isinstance(
        affected_by, str) else list(affected_by or []), pwd or handle.root,
        revision, records)
    if affected_by_commit:
        sha = rev_parse(handle.root, affected_by_commit)
        if sha is None:
            raise RevisionError("unknown revision %r" % affected_by_commit)
        changed = changed_paths(handle.root, sha)
        if not changed:
            raise AffectedError("commit %s changes no file"
                                % affected_by_commit)
        paths += [p for p in changed if p not in paths]
    return select_affected(records, paths, _range_text(revision, since))


@dataclass
class _Call:
    """What one reschedule call has done so far."""
    report: bool
    script: str | None
    planned: list[Planned] = field(default_factory=list)
    broken: PathIndex = field(default_factory=PathIndex)   # outputs
    script_lines: list[str] = field(default_factory=list)

    def skip(self, rec: Recorded) -> None:
        for out in rec.produced:
            self.broken.add(out, rec.sha)


def reschedule(handle: DatasetHandle, revision: str = "HEAD",
               since: str | None = None, message: str | None = None,
               report: bool = False, script: str | None = None,
               with_failed: bool = False, assume_ready: str | None = None,
               alt_dir: str | None = None, no_alt_dir: bool = False,
               jobs=None, affected_by=None,
               affected_by_commit: str | None = None,
               pwd: str | None = None, failed_tasks: str | None = None,
               tasks: str | None = None):
    """`failed_tasks` (a revision) or `tasks` (an --array list, with
    `revision`): re-run only these tasks of the recorded array."""
    ds = handle.ds
    res = dict(action=ACTION, ds=ds, path=ds.path, type="dataset",
               logger=lgr)
    if failed_tasks or tasks:
        if since is not None or affected_by or affected_by_commit:
            yield get_status_dict(
                status="impossible", message="--failed-tasks and --tasks "
                "pick tasks of one recorded array job; they cannot be "
                "combined with --since or --affected-by", **res)
            return
        revision = failed_tasks or revision
    try:
        records = select_records(handle, revision, since, affected_by,
                                 affected_by_commit, pwd)
        array = (task_override(records[0].record, bool(failed_tasks), tasks)
                 if failed_tasks or tasks else None)
    except (RevisionError, RecordError, AffectedError, ValueError) as e:
        yield get_status_dict(status="impossible", message=str(e), **res)
        return
    call = _Call(report, script)
    for rec in records:
        yield from _resubmit(handle, rec, call, res, message, with_failed,
                             assume_ready, alt_dir, no_alt_dir, jobs,
                             array or _affected_tasks(rec)
                             or rec.norm.get("array_override"),
                             picked=bool(array))
    if script is not None:
        yield from _write_script(call.script_lines, script)


def _affected_tasks(rec: Recorded) -> str | None:
    """The --array of an array only some of whose tasks a change affects
    (with the recorded throttle)."""
    if rec.rerun_tasks is None:
        return None
    return task_override(rec.record, False, format_array(rec.rerun_tasks))


def _resubmit(handle: DatasetHandle, rec: Recorded, call: _Call, res: dict,
              message, with_failed, assume_ready, alt_dir, no_alt_dir,
              jobs, array=None, picked=False):
    """`picked`: the user chose the tasks (--failed-tasks/--tasks), so a
    record that did not complete is re-run without --with-failed-jobs."""
    norm, sha = rec.norm, rec.sha
    state = rec.state
    if state != "COMPLETED" and not with_failed and not picked:
        call.skip(rec)
        yield get_status_dict(
            status="notneeded", commit=sha, state=state,
            message=("skipping %s: job %s ended %s (use "
                     "--with-failed-jobs)", sha[:10], rec.job_id, state),
            **res)
        return
    stale = sorted({s for r in rec.reads
                    for s in call.broken.overlapping(r)})
    if stale:
        call.skip(rec)
        yield get_status_dict(
            status="impossible", commit=sha, message=(
                "%s not resubmitted: it reads the output of %s, which is "
                "not resubmitted", sha[:10], ", ".join(s[:10] for s in stale)),
            **res)
        return
    job_alt = None if no_alt_dir else (alt_dir or norm["alt_dir"])
    msg = message if message is not None else _body_message(rec.body)
    some = array and array != norm.get("array_override")
    note = ("Re-submission of tasks %s of job %s." % (array, rec.job_id)
            if some else "Re-submission of job %s." % rec.job_id)
    msg = "%s\n\n%s" % (msg, note) if msg else note
    pwd_abs = os.path.join(handle.root, norm["pwd"])
    planning = call.report or call.script is not None
    try:
        spec = plan(handle, norm["cmd"], pwd_abs, inputs=norm["inputs"],
                    extra_inputs=norm["extra_inputs"],
                    outputs=norm["outputs"], message=msg,
                    chain=norm["chain"] + [sha], alt_dir=job_alt,
                    assume_ready=assume_ready,
                    container=norm.get("container"),
                    planned=call.planned if planning else (), array=array)
    except (ScheduleError, ContainerError) as e:
        call.skip(rec)
        yield get_status_dict(status="impossible", commit=sha,
                              message="%s: %s" % (sha[:10], e), **res)
        return
    if planning:
        call.planned.append(Planned(sha, spec.claims, spec.alt_root))
    if call.report:
        yield _report(spec, rec, res)
        return
    if call.script is not None:
        call.script_lines.append(_script_line(spec))
        return
    submitted = False
    for r in annotate(schedule(handle, spec, jobs=jobs), spec):
        r["action"] = ACTION
        r["commit"] = sha
        submitted = submitted or bool(r.get("status") == "ok"
                                      and r.get("slurm_job_id"))
        yield r
    if not submitted:
        call.skip(rec)


def _report(spec: JobSpec, rec: Recorded, res: dict) -> dict:
    deps = public(spec.depends_on)
    waits = ", ".join(
        "job %s" % d["slurm_job_id"] if d.get("slurm_job_id")
        else "the resubmission of %s" % d["planned"][:10] for d in deps)
    return get_status_dict(
        status="ok", commit=rec.sha, rerun_action="slurm-schedule",
        slurm_run_info=rec.record, cmd=spec.cmd, inputs=spec.inputs,
        extra_inputs=spec.extra_inputs, outputs=spec.outputs, pwd=spec.pwd,
        depends_on=deps, array=spec.array_override, message=(
            "would resubmit %s (job %s%s): %s\n  inputs: %s\n  outputs: %s"
            "\n  waits for: %s", rec.sha[:10], rec.job_id,
            ", tasks %s" % spec.array_override if spec.array_override
            else "", spec.cmd,
            ", ".join(spec.inputs + spec.extra_inputs) or "-",
            ", ".join(spec.outputs), waits or "nothing"), **res)


def _write_script(lines: list[str], script: str):
    text = "#!/bin/sh\n# datalad slurm-reschedule\nset -e\n" + "".join(lines)
    if script == "-":
        print(text, end="")
        return
    with open(script, "w") as f:
        f.write(text)
    yield get_status_dict(status="ok", path=os.path.abspath(script),
                          action=ACTION, type="file", logger=lgr,
                          message="wrote %d command(s)" % len(lines))


def _body_message(body):
    lines = [line for line in body.splitlines()
             if not line.startswith(("Re-submission of job",
                                     "Re-submission of tasks"))]
    return "\n".join(lines).strip() or None


def _script_line(spec: JobSpec) -> str:
    argv = ["datalad", "slurm-schedule"]
    if spec.message:
        argv += ["-m", spec.message]
    if spec.container:
        argv += ["--container", spec.container["name"]]
    for i in spec.inputs:
        argv += ["-i", i]
    for o in spec.outputs:
        argv += ["-o", o]
    cmd = spec.cmd
    if spec.array_override:
        # some tasks only: the --array goes into the submission itself
        cmd = shlex.join(with_option(shlex.split(cmd),
                                     "--array=%s" % spec.array_override))
    argv += ["--", cmd]
    return "(cd %s && %s)\n" % (shlex.quote(spec.pwd), shlex.join(argv))
