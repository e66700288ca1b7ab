"""The job store's schema and its row types (a job, a claim conflict)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    row            INTEGER PRIMARY KEY AUTOINCREMENT,
    status         TEXT NOT NULL CHECK (status IN
                     ('submitting', 'open', 'committed', 'abandoned',
                      'rejected')),
    cluster        TEXT NOT NULL DEFAULT '',
    job_id         TEXT,
    created        REAL NOT NULL,
    submit_time    REAL,
    head           TEXT,
    host           TEXT,
    pid            INTEGER,
    spec           TEXT NOT NULL,
    slurm          TEXT NOT NULL DEFAULT '{}',
    pending_commit TEXT,
    commit_sha     TEXT,
    closed_time    REAL,
    reason         TEXT,
    UNIQUE (cluster, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE TABLE IF NOT EXISTS claims (
    path TEXT PRIMARY KEY,
    row  INTEGER NOT NULL REFERENCES jobs (row)
);
CREATE INDEX IF NOT EXISTS claims_row ON claims (row);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

OPEN_STATES = ("submitting", "open")


class ConflictError(Exception):
    """Outputs overlap with those of an open job."""

    def __init__(self, conflicts):
        self.conflicts = conflicts  # list of (new_path, claimed_path, job)
        lines = []
        for new, claimed, job in conflicts:
            owner = ("job %s" % job.job_id if job.job_id
                     else "a submission in progress (pid %s on %s)"
                     % (job.pid, job.host) if job.pid
                     else "an interrupted submission (row %d; run "
                     "slurm-finish to resolve it)" % job.row)
            lines.append("output %r overlaps %r claimed by %s"
                         % (new, claimed, owner))
        super().__init__("; ".join(lines))


@dataclass
class Job:
    row: int
    status: str
    cluster: str
    job_id: str | None
    created: float
    submit_time: float | None
    head: str | None
    host: str | None
    pid: int | None
    spec: dict
    slurm: dict = field(default_factory=dict)
    pending_commit: str | None = None
    commit_sha: str | None = None
    closed_time: float | None = None
    reason: str | None = None

    @property
    def label(self) -> str:
        return self.job_id if self.job_id else "(row %d)" % self.row

def _job(r) -> Job:
    d = dict(r)
    d["spec"] = json.loads(d["spec"])
    d["slurm"] = json.loads(d["slurm"] or "{}")
    return Job(**d)
