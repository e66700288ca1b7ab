"""The job store: one SQLite database in the repository's git directory.

It holds every job ever scheduled from this worktree (open, committed,
abandoned, rejected) and the output paths open jobs claim.  Claiming is one
``BEGIN IMMEDIATE`` transaction, so concurrent ``slurm-schedule`` calls cannot
claim overlapping outputs.  Rows are never deleted: closing a job releases
its claims and keeps the row as history.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .paths import ancestors

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
                     else "a submission in progress (pid %s)" % job.pid)
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


def _pid_alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class JobStore:
    def __init__(self, git_dir: str | os.PathLike):
        self.dir = Path(git_dir) / "datalad-hpcdata"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "jobs.sqlite"
        self.con = sqlite3.connect(
            str(self.path), timeout=120, isolation_level=None)
        self.con.row_factory = sqlite3.Row
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute("PRAGMA foreign_keys=ON")
        version = self.con.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            with self.transaction() as con:
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                con.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)
        elif version > SCHEMA_VERSION:
            raise RuntimeError(
                "job store %s was written by a newer datalad-hpcdata "
                "(schema %d > %d)" % (self.path, version, SCHEMA_VERSION))

    def close(self):
        self.con.close()

    @contextmanager
    def transaction(self):
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            con.execute("COMMIT")

    # -- claiming ---------------------------------------------------------
    def _conflicts(self, con, paths):
        found = []
        for p in paths:
            anc = ancestors(p)
            q = ("SELECT c.path AS cpath, j.* FROM claims c JOIN jobs j "
                 "ON c.row = j.row WHERE c.path = ? OR "
                 "(c.path > ? AND c.path < ?)")
            args = [p, p + "/", p + "0"]
            if anc:
                q += " OR c.path IN (%s)" % ",".join("?" * len(anc))
                args += anc
            for r in con.execute(q, args):
                d = dict(r)
                cpath = d.pop("cpath")
                found.append((p, cpath, _job(d)))
        return found

    def conflicts(self, paths: list[str]) -> list:
        """(path, claimed path, job) for open claims overlapping `paths`;
        a look only (claim() is the atomic check)."""
        return self._conflicts(self.con, paths)

    def _reap_dead_submissions(self, con, conflicts) -> bool:
        """Abandon 'submitting' rows whose process died on this host."""
        host = socket.gethostname()
        reaped = False
        for _, _, job in conflicts:
            if (job.status == "submitting" and job.host == host
                    and job.pid and not _pid_alive(job.pid)):
                self._close(con, job.row, "abandoned",
                            "slurm-schedule (pid %d) died before the job id "
                            "was recorded" % job.pid)
                reaped = True
        return reaped

    def claim(self, paths: list[str], spec: dict, head: str | None,
              wait_submitting: float = 30.0) -> int:
        """Atomically claim `paths` for a new job; return its row id.

        If the conflicting claim belongs to a submission still in progress,
        wait (bounded) for it to get its job id, so the refusal can name
        the owning job."""
        deadline = time.monotonic() + wait_submitting
        while True:
            try:
                return self._claim(paths, spec, head)
            except ConflictError as e:
                pending = any(j.status == "submitting"
                              for _, _, j in e.conflicts)
                if not pending or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def _claim(self, paths, spec, head):
        with self.transaction() as con:
            conflicts = self._conflicts(con, paths)
            if conflicts and self._reap_dead_submissions(con, conflicts):
                conflicts = self._conflicts(con, paths)
            if conflicts:
                raise ConflictError(conflicts)
            cur = con.execute(
                "INSERT INTO jobs (status, created, head, host, pid, spec) "
                "VALUES ('submitting', ?, ?, ?, ?, ?)",
                (time.time(), head, socket.gethostname(), os.getpid(),
                 json.dumps(spec, sort_keys=True)))
            row = cur.lastrowid
            con.executemany("INSERT OR IGNORE INTO claims (path, row) "
                            "VALUES (?, ?)", [(p, row) for p in paths])
            return row

    def set_submitted(self, row: int, cluster: str, job_id: str,
                      spec_update: dict | None = None):
        with self.transaction() as con:
            if spec_update:
                spec = json.loads(con.execute(
                    "SELECT spec FROM jobs WHERE row = ?", (row,)
                ).fetchone()[0])
                spec.update(spec_update)
                con.execute("UPDATE jobs SET spec = ? WHERE row = ?",
                            (json.dumps(spec, sort_keys=True), row))
            con.execute(
                "UPDATE jobs SET status = 'open', cluster = ?, job_id = ?, "
                "submit_time = ?, pid = NULL WHERE row = ?",
                (cluster or "", str(job_id), time.time(), row))

    def reject(self, row: int, reason: str):
        """The submission failed: release the claims, keep the row."""
        with self.transaction() as con:
            self._close(con, row, "rejected", reason)

    def _close(self, con, row, status, reason=None, commit=None):
        con.execute("DELETE FROM claims WHERE row = ?", (row,))
        con.execute(
            "UPDATE jobs SET status = ?, reason = ?, closed_time = ?, "
            "commit_sha = COALESCE(?, commit_sha), pending_commit = NULL, "
            "pid = NULL WHERE row = ?",
            (status, reason, time.time(), commit, row))

    # -- queries ------------------------------------------------------------
    def jobs(self, statuses=OPEN_STATES, job_ids=None) -> list[Job]:
        q = "SELECT * FROM jobs WHERE status IN (%s)" % ",".join(
            "?" * len(statuses))
        args = list(statuses)
        rows = [_job(r) for r in self.con.execute(q + " ORDER BY row", args)]
        if job_ids is not None:
            wanted = {str(j) for j in job_ids}
            rows = [j for j in rows if j.job_id in wanted]
        return rows

    def find(self, job_id: str) -> list[Job]:
        return [_job(r) for r in self.con.execute(
            "SELECT * FROM jobs WHERE job_id = ? ORDER BY row",
            (str(job_id),))]

    def claims_of(self, row: int) -> list[str]:
        return [r[0] for r in self.con.execute(
            "SELECT path FROM claims WHERE row = ? ORDER BY path", (row,))]

    # -- finishing ------------------------------------------------------------
    def update_slurm(self, infos: dict[int, dict]):
        with self.transaction() as con:
            con.executemany(
                "UPDATE jobs SET slurm = ? WHERE row = ?",
                [(json.dumps(i, sort_keys=True), row)
                 for row, i in infos.items()])

    def set_pending_commits(self, shas: dict[int, str]):
        with self.transaction() as con:
            con.executemany("UPDATE jobs SET pending_commit = ? WHERE row = ?",
                            [(sha, row) for row, sha in shas.items()])

    def clear_pending_commit(self, row: int):
        with self.transaction() as con:
            con.execute("UPDATE jobs SET pending_commit = NULL WHERE row = ?",
                        (row,))

    def mark_committed(self, shas: dict[int, str]):
        with self.transaction() as con:
            for row, sha in shas.items():
                self._close(con, row, "committed", commit=sha)

    def abandon(self, row: int, reason: str):
        with self.transaction() as con:
            self._close(con, row, "abandoned", reason)

    # -- small key/value cache ----------------------------------------------
    def meta_get(self, key: str):
        r = self.con.execute("SELECT value FROM meta WHERE key = ?",
                             (key,)).fetchone()
        return r[0] if r else None

    def meta_set(self, key: str, value: str):
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) "
                        "VALUES (?, ?)",
                        (key, value))

