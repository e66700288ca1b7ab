"""The job store: one SQLite database in the repository's git directory.

It holds every job ever scheduled from this worktree (open, committed,
abandoned, rejected) and the output paths open jobs claim.  Rows are never
deleted: closing a job releases its claims and keeps the row as history.

Safe on network file systems: no WAL (WAL needs memory shared by every
process using the database, which NFS, Lustre and GPFS cannot give); a
rollback journal with full syncs, so no transaction is ever half-written;
every write runs under the repository lock.  Where that lock is a lock file
(network file systems, see :mod:`.lock`), SQLite's own locking is switched
off (``flock``/``fcntl`` may not work there) and every access, reads
included, runs under the repository lock on a connection opened for it, so
NFS close-to-open consistency shows each process the last writer's data.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .jobrows import (  # noqa: F401  (ConflictError, Job: for importers)
    OPEN_STATES,
    SCHEMA,
    SCHEMA_VERSION,
    ConflictError,
    Job,
    _job,
)
from .lock import lock_mode, repository_lock
from .paths import ancestors


class JobStore:
    def __init__(self, git_dir: str | os.PathLike):
        self.git_dir = Path(git_dir)
        self.dir = self.git_dir / "datalad-hpcdata"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "jobs.sqlite"
        # 'file': no SQLite locking, every access under the repository lock
        self.locking = lock_mode(self.dir)
        self._local = threading.local()
        self._con = None
        if self.locking == "flock":
            self._con = self._connect()
        with self.session(write=True):
            pass

    def _connect(self) -> sqlite3.Connection:
        uri = "file:%s%s" % (self.path.as_posix().replace("?", "%3f")
                             .replace("#", "%23"),
                             "?vfs=unix-none" if self.locking == "file"
                             else "")
        con = sqlite3.connect(uri, uri=True, timeout=120,
                              isolation_level=None, check_same_thread=False)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys=ON")
        return con

    def _setup(self, con) -> None:
        """Schema and journal mode; runs under the repository lock."""
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != \
                "delete":
            con.execute("PRAGMA journal_mode=DELETE")
        con.execute("PRAGMA synchronous=FULL")
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            con.execute("BEGIN IMMEDIATE")
            try:
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                con.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        elif version > SCHEMA_VERSION:
            raise RuntimeError(
                "job store %s was written by a newer datalad-hpcdata "
                "(schema %d > %d)" % (self.path, version, SCHEMA_VERSION))

    @property
    def con(self) -> sqlite3.Connection:
        """The connection of the current session (tests may use it)."""
        con = getattr(self._local, "con", None) or self._con
        if con is None:
            con = self._local.con = self._connect()
        return con

    @contextmanager
    def session(self, write: bool = False):
        """A connection to use; under the repository lock for writes and,
        with lock-file locking, for reads too."""
        if self.locking == "flock" and not write:
            yield self._con
            return
        with repository_lock(self.git_dir):
            depth = getattr(self._local, "depth", 0)
            if depth == 0 and self.locking == "file":
                self._local.con = self._connect()
            self._local.depth = depth + 1
            try:
                con = self.con
                if depth == 0 and not getattr(self._local, "ready", False):
                    self._setup(con)
                    self._local.ready = self.locking == "flock"
                yield con
            finally:
                self._local.depth = depth
                if depth == 0 and self.locking == "file":
                    self._local.con.close()
                    self._local.con = None

    def close(self):
        if self._con is not None:
            self._con.close()

    @contextmanager
    def transaction(self):
        with self.session(write=True) as con:
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

    def claim(self, paths: list[str], spec: dict, head: str | None) -> int:
        """Atomically claim `paths` for a new job; return its row id.

        Raises ConflictError naming the owners of overlapping claims
        (a 'submitting' owner may be an interrupted submission: the caller
        resolves those and tries again)."""
        with self.transaction() as con:
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

    def _update_spec(self, con, row: int, update: dict):
        spec = json.loads(con.execute(
            "SELECT spec FROM jobs WHERE row = ?", (row,)).fetchone()[0])
        spec.update(update)
        con.execute("UPDATE jobs SET spec = ? WHERE row = ?",
                    (json.dumps(spec, sort_keys=True), row))

    def update_spec(self, row: int, update: dict) -> None:
        with self.transaction() as con:
            self._update_spec(con, row, update)

    def set_submitted(self, row: int, cluster: str, job_id: str,
                      spec_update: dict | None = None) -> bool:
        """Record the job id of a submission still in progress.

        False (and nothing changed) when the row is no longer being
        submitted: another command adopted or released it meanwhile."""
        with self.transaction() as con:
            r = con.execute("SELECT status FROM jobs WHERE row = ?",
                            (row,)).fetchone()
            if r is None or r[0] != "submitting":
                return False
            if spec_update:
                self._update_spec(con, row, spec_update)
            con.execute(
                "UPDATE jobs SET status = 'open', cluster = ?, job_id = ?, "
                "submit_time = ?, pid = NULL WHERE row = ?",
                (cluster or "", str(job_id), time.time(), row))
            return True

    def interrupted(self, row: int, reason: str) -> None:
        """Give up on a submission whose job may exist: the row stays
        claimed, without a pid, for the next command to resolve."""
        with self.transaction() as con:
            con.execute("UPDATE jobs SET pid = NULL, reason = ? WHERE row = ? "
                        "AND status = 'submitting'", (reason, row))

    def reject(self, row: int, reason: str) -> bool:
        """The submission failed: release the claims, keep the row.
        False if the row was not being submitted (any more)."""
        with self.transaction() as con:
            return self._close(con, row, "rejected", reason,
                               only=("submitting",))

    def _close(self, con, row, status, reason=None, commit=None,
               only=OPEN_STATES) -> bool:
        """Close a row that is in one of the `only` states."""
        r = con.execute("SELECT status FROM jobs WHERE row = ?",
                        (row,)).fetchone()
        if r is None or r[0] not in only:
            return False
        con.execute("DELETE FROM claims WHERE row = ?", (row,))
        con.execute(
            "UPDATE jobs SET status = ?, reason = ?, closed_time = ?, "
            "commit_sha = COALESCE(?, commit_sha), pending_commit = NULL, "
            "pid = NULL WHERE row = ?",
            (status, reason, time.time(), commit, row))
        return True

    # -- queries ------------------------------------------------------------
    def jobs(self, statuses=OPEN_STATES, job_ids=None) -> list[Job]:
        q = "SELECT * FROM jobs WHERE status IN (%s)" % ",".join(
            "?" * len(statuses))
        args = list(statuses)
        with self.session() as con:
            rows = [_job(r) for r in con.execute(q + " ORDER BY row", args)]
        if job_ids is not None:
            wanted = {str(j) for j in job_ids}
            rows = [j for j in rows if j.job_id in wanted]
        return rows

    def find(self, job_id: str) -> list[Job]:
        with self.session() as con:
            return [_job(r) for r in con.execute(
                "SELECT * FROM jobs WHERE job_id = ? ORDER BY row",
                (str(job_id),))]

    def get(self, row: int) -> Job | None:
        """The row as it is now."""
        with self.session() as con:
            r = con.execute("SELECT * FROM jobs WHERE row = ?",
                            (row,)).fetchone()
        return _job(r) if r is not None else None

    def overlapping_claims(self, paths: list[str]) -> list[tuple]:
        """Claims of open jobs that equal, contain or lie below any of
        `paths` (canonical; "" stands for the whole dataset), as
        ``(path, claimed path, Job)``.  Read-only.  Only open jobs have
        claims and the lookup uses the claims index, so its cost does not
        grow with the job history."""
        if "" in paths:
            return [("", d.pop("cpath"), _job(d)) for d in map(dict, (
                self.con.execute("SELECT c.path AS cpath, j.* FROM claims c "
                                 "JOIN jobs j ON c.row = j.row")))]
        return self._conflicts(self.con, sorted(set(paths)))

    def claims_of(self, row: int) -> list[str]:
        with self.session() as con:
            return [r[0] for r in con.execute(
                "SELECT path FROM claims WHERE row = ? ORDER BY path",
                (row,))]

    def all_claims(self) -> list[tuple[str, int]]:
        with self.session() as con:
            return [(r[0], r[1]) for r in con.execute(
                "SELECT path, row FROM claims ORDER BY path")]

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

    def mark_committed(self, shas: dict[int, str], cleanup=()):
        """Close the jobs as committed; note rows in `cleanup` (alt-dir
        jobs with staged files to remove) in the same transaction."""
        with self.transaction() as con:
            for row, sha in shas.items():
                self._close(con, row, "committed", commit=sha)
            con.executemany("INSERT OR REPLACE INTO meta (key, value) "
                            "VALUES (?, '')",
                            [("cleanup:%d" % r,) for r in cleanup])

    def cleanups(self) -> list[int]:
        """Committed jobs whose staged files are still to be removed."""
        with self.session() as con:
            return [int(r[0].split(":", 1)[1]) for r in con.execute(
                "SELECT key FROM meta WHERE key >= 'cleanup:' AND "
                "key < 'cleanup;'")]

    def cleanup_done(self, row: int) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM meta WHERE key = ?",
                        ("cleanup:%d" % row,))

    def abandon(self, row: int, reason: str) -> bool:
        """Close an open job without a commit; False if it was not open."""
        with self.transaction() as con:
            return self._close(con, row, "abandoned", reason)

    # -- small key/value cache ----------------------------------------------
    def meta_get(self, key: str):
        with self.session() as con:
            r = con.execute("SELECT value FROM meta WHERE key = ?",
                            (key,)).fetchone()
        return r[0] if r else None

    def meta_set(self, key: str, value: str):
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) "
                        "VALUES (?, ?)",
                        (key, value))

