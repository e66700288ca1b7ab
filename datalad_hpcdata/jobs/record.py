"""Run records in commit messages: building and writing ours, reading ours
and the peer's.

Format (shared with datalad-slurm so either tool can read the other)::

    [DATALAD SLURM RUN] Slurm job 123: Completed

    <message>

    === Do not change lines below ===
    { ...JSON, one key per line... }
    ^^^ Do not change lines above ^^^

The record is a superset of a ``datalad run`` record (cmd, dsid, exit,
inputs, extra_inputs, outputs, pwd, chain); inputs/outputs are relative to
``pwd`` like in core DataLad.  The marker differs from ``[DATALAD RUNCMD]``
on purpose: core ``datalad rerun`` would run ``sbatch`` and commit at once.
"""

from __future__ import annotations

import json
import posixpath
import re

from .. import __version__
from ..dataset.jobstore import Job
from ..dataset.paths import relative_to_pwd
from ..slurm import JobInfo
from .container import record_entry
from .spec import JobSpec
from .tasks import record_keys

MARKER = "[DATALAD SLURM RUN]"
BELOW = "=== Do not change lines below ==="
ABOVE = "^^^ Do not change lines above ^^^"
RECORD_RE = re.compile(
    r"\[DATALAD SLURM RUN\] (.*)=== Do not change lines below ===\n(.*)\n"
    r"\^\^\^ Do not change lines above \^\^\^", re.S)
EXTENSION = "datalad-hpcdata"


class RecordError(ValueError):
    pass


def state_word(state: str) -> str:
    """'COMPLETED' -> 'Completed', 'OUT_OF_MEMORY' -> 'Out of memory'."""
    return (state or "unknown").replace("_", " ").capitalize()


def format_message(job_id, state: str, messages, record: dict) -> str:
    subject = "%s Slurm job %s: %s" % (MARKER, job_id, state_word(state))
    body = "\n".join(m for m in messages if m)
    parts = [subject, ""]
    if body:
        parts += [body, ""]
    parts += [BELOW,
              json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False),
              ABOVE, ""]
    return "\n".join(parts)


def parse_message(message: str):
    """Return (subject_and_body, record) or None if there is no record."""
    m = RECORD_RE.search(message)
    if not m:
        return None
    try:
        record = json.loads(m.group(2))
    except ValueError as e:
        raise RecordError("the run record in this commit is not valid JSON: "
                          "%s" % e)
    if not isinstance(record, dict) or "cmd" not in record:
        raise RecordError("the run record in this commit has no 'cmd'")
    return m.group(1).strip(), record


def _norm(p: str) -> str:
    p = posixpath.normpath(p.rstrip("/")) if p else p
    return p


def normalize_record(record: dict) -> dict:
    """Turn our or the peer's record into what rescheduling needs.

    Returned keys: cmd, pwd, inputs, extra_inputs, outputs (relative to pwd,
    the peer's Slurm log and env JSON removed), chain, alt_dir, slurm_job_id,
    state, from_peer.
    """
    pwd = _norm(record.get("pwd") or ".")
    from_peer = record.get("extension") != EXTENSION
    outputs = [o for o in record.get("outputs") or [] if o]
    if from_peer:
        # the peer records outputs relative to the dataset root (with a
        # "./" prefix) and includes the Slurm log and env JSON in them
        slurm = {_norm(posixpath.join(pwd, s))
                 for s in record.get("slurm_outputs") or []}
        outs = []
        for o in outputs:
            root_rel = _norm(o)
            if root_rel in slurm or re.search(
                    r"(^|/)slurm-job-\d+(_\d+)?\.env\.json$", root_rel):
                continue
            outs.append(posixpath.relpath(root_rel, pwd)
                        if not posixpath.isabs(root_rel) else root_rel)
        outputs = outs
    else:
        outputs = [_norm(o) for o in outputs]
    # the peer records no state (only its subject says it): None then
    state = record.get("slurm_state")
    return {
        "cmd": record["cmd"],
        "pwd": pwd,
        "inputs": [_norm(i) for i in record.get("inputs") or [] if i],
        "extra_inputs": [_norm(i) for i in record.get("extra_inputs") or []
                         if i],
        "outputs": outputs,
        "chain": list(record.get("chain") or []),
        "alt_dir": record.get("alt_dir") or None,
        "slurm_job_id": record.get("slurm_job_id"),
        "state": state,
        "from_peer": from_peer,
        "dsid": record.get("dsid"),
        "container": record.get("container") or None,
        "array_override": record.get("array_override") or None,
    }


def extension_tag() -> str:
    return "%s %s" % (EXTENSION, __version__)


def _int_id(job_id):
    return int(job_id) if str(job_id).isdigit() else job_id


def _task_key(task: str):
    return (0, int(task)) if task.isdigit() else (1, task)


def build_record(dsid: str, job: Job, spec: JobSpec, info: JobInfo,
                 logs: list[str], split=None) -> dict:
    """The run record of a finished job (a superset of datalad run's)."""
    rel_pwd = spec.pwd
    rec = {
        "cmd": spec.cmd,
        "dsid": dsid,
        "exit": info.exit_status,
        "inputs": spec.inputs,
        "extra_inputs": spec.extra_inputs,
        "outputs": spec.outputs,
        "pwd": rel_pwd,
        "chain": spec.chain,
        "slurm_job_id": _int_id(job.job_id),
        "slurm_outputs": [relative_to_pwd(log, rel_pwd) for log in logs],
        "cluster": job.cluster,
        "slurm_state": info.state,
        "slurm_exit_code": info.exit_code,
        "submit_time": info.submit_time,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "elapsed": info.elapsed,
        "nodes": info.nodes,
        "max_rss": info.max_rss,
        "submit_head": job.head,
        "alt_dir": spec.alt_dir or "",
        "extension": EXTENSION,
        "extension_version": __version__,
    }
    if spec.container:
        rec["container"] = record_entry(spec.container)
    if spec.depends_on:
        # the producers whose outputs this job read, with their commits
        rec["depends_on"] = [
            dict({k: d.get(k) for k in ("cluster", "commit", "inputs")},
                 slurm_job_id=_int_id(d.get("slurm_job_id")))
            for d in spec.depends_on]
    if info.tasks:
        rec["array"] = spec.array
        rec["array_tasks"] = {
            t: {"state": i.state, "exit_code": i.exit_code,
                "slurm_job_id": i.job_id}
            for t, i in sorted(info.tasks.items(),
                               key=lambda kv: _task_key(kv[0]))}
        rec.update(record_keys(spec, info, split))
    return rec
