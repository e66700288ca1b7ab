"""Run records in the history, read with one ``git log``.

Three kinds of records are read: this extension's and datalad-slurm's
(``[DATALAD SLURM RUN]``, see :mod:`.record`) and, for the provenance
graph, ``datalad run``'s (``[DATALAD RUNCMD]``, inline or sidecar).  Each
becomes a :class:`Recorded` with its paths relative to the dataset root.
"""

from __future__ import annotations

import logging
import posixpath
import shlex
from dataclasses import dataclass, field
from functools import cached_property

from ..dataset.git import git, rev_parse
from ..slurm.argv import is_sbatch, script_index
from .record import MARKER, RecordError, normalize_record, parse_message
from .tasks import is_pattern, recorded_task_ids, task_paths

lgr = logging.getLogger("datalad.hpcdata.history")

RUN_MARKER = "[DATALAD RUNCMD]"
SLURM, RUN = "slurm", "run"


class RevisionError(ValueError):
    pass


@dataclass
class Recorded:
    """One run record: a commit and the job it records."""
    sha: str
    kind: str              # SLURM or RUN
    subject: str
    body: str
    record: dict           # as written
    norm: dict             # see record.normalize_record
    index: int = 0         # position in the history read, oldest first
    inputs: list[str] = field(default_factory=list)    # root-relative
    extra_inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    script: str | None = None   # the sbatch script, root-relative
    # an --affected-by walk found only these tasks of the array affected
    rerun_tasks: list[int] | None = None

    @property
    def state(self) -> str:
        return record_state(self.subject, self.record, self.kind)

    @property
    def job_id(self):
        return self.norm.get("slurm_job_id")

    @cached_property
    def produced(self) -> list[str]:
        """The outputs as the paths the job wrote (per-task patterns
        ``%a``/``%A`` expanded for the recorded tasks, or `rerun_tasks`):
        what later jobs read and what data flow is matched against."""
        return task_paths(self.outputs, self.record, self.rerun_tasks)

    @cached_property
    def reads(self) -> list[str]:
        """Everything the job read: inputs, extra inputs (per-task
        patterns expanded like `produced`), its script."""
        return task_paths(self.inputs + self.extra_inputs, self.record,
                          self.rerun_tasks) + (
            [self.script] if self.script else [])

    @property
    def task_reads(self) -> dict[str, list[str]] | None:
        """What each recorded task read of its own (the per-task input
        patterns expanded), None when the job has no such input or the
        record does not say its tasks."""
        patterns = [p for p in self.inputs + self.extra_inputs
                    if is_pattern(p)]
        ids = recorded_task_ids(self.record) if patterns else None
        if not ids:
            return None
        return {t: task_paths(patterns, self.record, [t]) for t in ids}

    @property
    def shared_reads(self) -> list[str]:
        """What every task read: the inputs without a pattern, the
        script."""
        return [p for p in self.inputs + self.extra_inputs
                if not is_pattern(p)] + ([self.script] if self.script
                                         else [])


def record_state(subject: str, record: dict, kind: str = SLURM) -> str:
    if kind == RUN:
        return "COMPLETED" if not record.get("exit") else "FAILED"
    state = record.get("slurm_state")
    if state:
        return state.upper()
    # the peer writes "Slurm job N: Completed" in the subject only
    word = subject.rsplit(":", 1)[-1].strip()
    return word.upper().replace(" ", "_") if word else "UNKNOWN"


def _root(pwd: str, path: str) -> str | None:
    """A recorded path relative to `pwd` as a root-relative path (None
    for absolute paths and paths outside the dataset)."""
    if not path or posixpath.isabs(path):
        return None
    p = posixpath.normpath(posixpath.join(pwd or ".", path))
    if p in (".", "..") or p.startswith("../"):
        return None
    return p


def root_paths(pwd: str, paths) -> list[str]:
    out = []
    for p in paths or []:
        r = _root(pwd, p)
        if r is not None and r not in out:
            out.append(r)
    return out


def sbatch_script(cmd, pwd: str) -> str | None:
    """The batch script an sbatch command line runs (root-relative)."""
    try:
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    except ValueError:
        return None
    if not is_sbatch(argv):
        return None
    idx = script_index(argv)
    if idx is None or "{" in argv[idx]:
        return None
    return _root(pwd, argv[idx])


def _normalize_run(record: dict) -> dict:
    """A datalad run record in the shape of record.normalize_record."""
    def norm(paths):
        return [posixpath.normpath(p.rstrip("/")) for p in paths or [] if p]
    cmd = record.get("cmd")
    return {
        "cmd": cmd if isinstance(cmd, str) else shlex.join(cmd or []),
        "pwd": posixpath.normpath(record.get("pwd") or "."),
        "inputs": norm(record.get("inputs")),
        "extra_inputs": norm(record.get("extra_inputs")),
        "outputs": norm(record.get("outputs")),
        "chain": list(record.get("chain") or []),
        "alt_dir": None, "slurm_job_id": None,
        "state": None, "from_peer": False, "dsid": record.get("dsid"),
    }


def recorded(sha: str, text: str, record: dict, kind: str = SLURM,
             index: int = 0) -> Recorded:
    subject, _, body = text.partition("\n")
    norm = normalize_record(record) if kind == SLURM else \
        _normalize_run(record)
    pwd = norm["pwd"]
    return Recorded(
        sha=sha, kind=kind, subject=subject.strip(), body=body.strip(),
        record=record, norm=norm, index=index,
        inputs=root_paths(pwd, norm["inputs"]),
        extra_inputs=root_paths(pwd, norm["extra_inputs"]),
        outputs=root_paths(pwd, norm["outputs"]),
        script=sbatch_script(norm["cmd"], pwd) if kind == SLURM else None)


def _parse(ds, sha: str, msg: str, with_runs: bool):
    """(text, record, kind) of a commit message, or None."""
    try:
        parsed = parse_message(msg)
    except RecordError as e:
        lgr.warning("skipping %s: %s", sha[:10], e)
        return None
    if parsed:
        return parsed[0], parsed[1], SLURM
    if with_runs and RUN_MARKER in msg:
        from datalad.local.rerun import get_run_info
        try:
            text, record = get_run_info(ds, msg)
        except ValueError as e:
            lgr.warning("skipping %s: %s", sha[:10], e)
            return None
        if record is not None:
            return text.replace(RUN_MARKER, "", 1).strip(), record, RUN
    return None


def log_range(root: str, revision: str, since: str | None) -> str:
    tip = rev_parse(root, revision)
    if tip is None:
        raise RevisionError("unknown revision %r" % revision)
    if not since:
        return tip
    base = rev_parse(root, since)
    if base is None:
        raise RevisionError("unknown revision %r" % since)
    return "%s..%s" % (base, tip)


def read_history(handle, revision: str = "HEAD", since: str | None = "",
                 with_runs: bool = False) -> list[Recorded]:
    """Records in ``since..revision`` (``since`` "" or None: the whole
    history up to `revision`), oldest first, from one ``git log``."""
    rng = log_range(handle.root, revision, since)
    greps = ["--grep", MARKER] + (["--grep", RUN_MARKER] if with_runs
                                  else [])
    out = git(handle.root, "log", "--reverse", "-z", "--format=%H%n%B",
              "--fixed-strings", *greps, rng).stdout
    found = []
    for entry in out.split("\0"):
        if not entry.strip():
            continue
        sha, _, msg = entry.partition("\n")
        parsed = _parse(handle.ds, sha.strip(), msg, with_runs)
        if parsed:
            found.append(recorded(sha.strip(), parsed[0], parsed[1],
                                  parsed[2], len(found)))
    return found


def read_one(handle, revision: str) -> Recorded:
    """The record in one commit (RevisionError if it has none)."""
    tip = rev_parse(handle.root, revision)
    if tip is None:
        raise RevisionError("unknown revision %r" % revision)
    msg = git(handle.root, "log", "-1", "--format=%B", tip).stdout
    parsed = parse_message(msg)
    if parsed is None:
        raise RevisionError("commit %s has no %s record" % (tip[:10], MARKER))
    return recorded(tip, parsed[0], parsed[1])
