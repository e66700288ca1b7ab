"""slurm-reschedule: find run records in history and submit them again."""

from __future__ import annotations

import logging
import os
import shlex

from datalad.interface.results import get_status_dict

from ..dataset.git import git, rev_parse
from ..dataset.handle import DatasetHandle
from .container import ContainerError
from .record import MARKER, RecordError, normalize_record, parse_message
from .schedule import ScheduleError, plan, schedule
from .spec import JobSpec

lgr = logging.getLogger("datalad.hpcdata.reschedule")

ACTION = "slurm-reschedule"


class RevisionError(ValueError):
    pass


def find_records(root, revision="HEAD", since=None):
    """[(sha, subject, body, record)] oldest first.

    With `since` None only `revision` itself is looked at (and must carry a
    record); with `since` "" the whole history up to `revision`."""
    tip = rev_parse(root, revision)
    if tip is None:
        raise RevisionError("unknown revision %r" % revision)
    if since is None:
        msg = git(root, "log", "-1", "--format=%B", tip).stdout
        parsed = parse_message(msg)
        if parsed is None:
            raise RevisionError(
                "commit %s has no %s record" % (tip[:10], MARKER))
        return [(tip,) + _split(parsed[0]) + (parsed[1],)]
    if since:
        base = rev_parse(root, since)
        if base is None:
            raise RevisionError("unknown revision %r" % since)
        rng = "%s..%s" % (base, tip)
    else:
        rng = tip
    out = git(root, "log", "--reverse", "-z", "--format=%H%n%B",
              "--fixed-strings", "--grep", MARKER, rng).stdout
    found = []
    for entry in out.split("\0"):
        if not entry.strip():
            continue
        sha, _, msg = entry.partition("\n")
        try:
            parsed = parse_message(msg)
        except RecordError as e:
            lgr.warning("skipping %s: %s", sha[:10], e)
            continue
        if parsed:
            found.append((sha.strip(),) + _split(parsed[0]) + (parsed[1],))
    return found


def _split(text):
    subject, _, body = text.partition("\n")
    return subject.strip(), body.strip()


def record_state(subject, record):
    state = record.get("slurm_state")
    if state:
        return state.upper()
    # the peer writes "Slurm job N: Completed" in the subject only
    word = subject.rsplit(":", 1)[-1].strip()
    return word.upper().replace(" ", "_") if word else "UNKNOWN"


def reschedule(handle: DatasetHandle, revision: str = "HEAD",
               since: str | None = None, message: str | None = None,
               report: bool = False, script: str | None = None,
               with_failed: bool = False, assume_ready: str | None = None,
               alt_dir: str | None = None, no_alt_dir: bool = False,
               jobs=None):
    ds = handle.ds
    res = dict(action=ACTION, ds=ds, path=ds.path, type="dataset",
               logger=lgr)
    try:
        records = find_records(handle.root, revision, since)
    except (RevisionError, RecordError) as e:
        yield get_status_dict(status="impossible", message=str(e), **res)
        return
    script_lines = []
    for sha, subject, body, record in records:
        norm = normalize_record(record)
        state = record_state(subject, record)
        if state != "COMPLETED" and not with_failed:
            yield get_status_dict(
                status="notneeded", commit=sha, state=state,
                message=("skipping %s: job %s ended %s (use "
                         "--with-failed-jobs)", sha[:10],
                         norm["slurm_job_id"], state), **res)
            continue
        job_alt = None if no_alt_dir else (alt_dir or norm["alt_dir"])
        msg = message if message is not None else _body_message(body)
        note = "Re-submission of job %s." % norm["slurm_job_id"]
        msg = "%s\n\n%s" % (msg, note) if msg else note
        pwd_abs = os.path.join(handle.root, norm["pwd"])
        try:
            spec = plan(handle, norm["cmd"], pwd_abs, inputs=norm["inputs"],
                        extra_inputs=norm["extra_inputs"],
                        outputs=norm["outputs"], message=msg,
                        chain=norm["chain"] + [sha], alt_dir=job_alt,
                        assume_ready=assume_ready,
                        container=norm.get("container"))
        except (ScheduleError, ContainerError) as e:
            yield get_status_dict(status="impossible", commit=sha,
                                  message="%s: %s" % (sha[:10], e), **res)
            continue
        if report:
            yield get_status_dict(
                status="ok", commit=sha, rerun_action="slurm-schedule",
                slurm_run_info=record, cmd=spec.cmd, inputs=spec.inputs,
                outputs=spec.outputs, pwd=spec.pwd,
                message=("would resubmit %s: %s", sha[:10], spec.cmd), **res)
            continue
        if script is not None:
            script_lines.append(_script_line(spec))
            continue
        for r in schedule(handle, spec, jobs=jobs):
            r["action"] = ACTION
            r["commit"] = sha
            yield r
    if script is not None:
        text = "#!/bin/sh\n# datalad slurm-reschedule\nset -e\n" + \
            "".join(script_lines)
        if script == "-":
            print(text, end="")
        else:
            with open(script, "w") as f:
                f.write(text)
            yield get_status_dict(status="ok", path=os.path.abspath(script),
                                  action=ACTION, type="file", logger=lgr,
                                  message="wrote %d command(s)"
                                  % len(script_lines))


def _body_message(body):
    lines = [line for line in body.splitlines()
             if not line.startswith("Re-submission of job")]
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
    argv += ["--", spec.cmd]
    return "(cd %s && %s)\n" % (shlex.quote(spec.pwd), shlex.join(argv))
