"""A job's specification: what was asked for, validated and canonical.

Built by :func:`datalad_hpcdata.jobs.schedule.plan`, kept in the job store
(as JSON; the keys are the field names) and read back by finish and
reschedule.  Paths in ``*_specs`` and ``claims`` are canonical
dataset-relative POSIX paths; ``inputs``/``extra_inputs``/``outputs`` are
what the run record shows (relative to ``pwd``, as in ``datalad run``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class JobSpec:
    cmd: str
    cmd_expanded: str = ""
    pwd: str = "."
    inputs: list[str] = field(default_factory=list)
    extra_inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    input_specs: list[str] = field(default_factory=list)
    output_specs: list[str] = field(default_factory=list)
    claims: list[str] = field(default_factory=list)
    message: str | None = None
    chain: list[str] = field(default_factory=list)
    alt_dir: str | None = None        # as given
    alt_root: str | None = None       # its real absolute path
    assume_ready: str | None = None
    extension: str = ""
    # --container: name, image, call format, extra inputs, batch script
    container: dict | None = None
    # data flow: the open jobs whose outputs this job reads (one dict per
    # producer: slurm_job_id, cluster, row, claims, inputs; slurm-finish
    # adds its commit) and the --dependency it was submitted with
    depends_on: list[dict] = field(default_factory=list)
    dependency: str | None = None
    # an array with per-task outputs (%a/%A in output_specs, see
    # jobs/tasks.py): its task ids, the --array value asked for and, for a
    # re-run of some tasks, the --array the submission was given instead
    tasks: list[int] = field(default_factory=list)
    array_spec: str | None = None
    array_override: str | None = None
    # the submission command; not stored (re-derived from cmd when needed)
    argv: list[str] = field(default_factory=list)
    # learnt when the job was submitted
    slurm_logs: list[str] = field(default_factory=list)
    array: str | None = None
    job_name: str | None = None
    workdir: str | None = None
    submit_stdout: str | None = None
    staged_files: int | None = None
    staged_bytes: int | None = None

    def to_dict(self) -> dict:
        """What the job store keeps (everything but argv)."""
        d = asdict(self)
        d.pop("argv")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> JobSpec:
        """Read a stored spec; keys this version does not know are
        ignored, missing ones get their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items()
                      if k in known and v is not None})
