"""Make a test cluster look busy (used by tools/bench_busy.py).

* ``fill_history``: N finished jobs of U users over Y years, inserted into
  the instance's own accounting database the way slurmdbd stores them: each
  row of ``<cluster>_job_table`` and ``<cluster>_step_table`` is a copy of a
  real row slurmdbd wrote for a job of this run (the template), with job id,
  user, association, times, state, exit code, node list, name and
  directory varied.  Job ids and submit times grow together (older jobs
  have smaller ids, as on a real cluster); the users get real associations
  (``sacctmgr add account/user``).
* ``submit_pending``: other users' jobs kept pending in slurmctld (held or
  begin time in a year), submitted as root with ``sbatch --uid`` for the
  system accounts every Debian has (they never run).

Only the database of the instance named by SLURM_CONF is written (through
its own MariaDB socket); nothing here touches another cluster.
"""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

# system accounts present on every Debian 12 machine, as "other users"
OTHER_USERS = ("daemon", "bin", "sys", "games", "man", "lp", "mail", "news",
               "uucp", "nobody")
HIST_FIRST_ID = 1_000_000       # history ids; FirstJobId must be above
HIST_UID = 20001                # uids of the history's users


def sql(socket: str, query: str, db: str = "slurm_acct_db") -> str:
    p = subprocess.run(["mariadb", "--no-defaults", "--socket", socket,
                        "-u", "root", "-N", "-B", db],
                       input=query, capture_output=True, text=True,
                       timeout=3600)
    if p.returncode:
        raise RuntimeError("SQL failed: %s\n%s" % (p.stderr, query[:500]))
    return p.stdout


def columns(socket: str, table: str) -> list[str]:
    out = sql(socket, "SELECT column_name FROM information_schema.columns "
              "WHERE table_schema='slurm_acct_db' AND table_name='%s' "
              "ORDER BY ordinal_position;" % table)
    return out.split()


def make_users(cluster: str, users: int) -> dict[int, int]:
    """Account `hist` with users hu01..huNN; {user index: id_assoc}."""
    def mgr(*args):
        subprocess.run(["sacctmgr", "-i", *args], capture_output=True,
                       text=True, timeout=600)
    mgr("add", "account", "hist", "cluster=%s" % cluster)
    names = ["hu%02d" % (i + 1) for i in range(users)]
    for i in range(0, users, 25):
        mgr("add", "user", "name=%s" % ",".join(names[i:i + 25]),
            "account=hist", "cluster=%s" % cluster)
    out = subprocess.run(
        ["sacctmgr", "-n", "-P", "list", "assoc", "cluster=%s" % cluster,
         "account=hist", "format=user,id"], capture_output=True, text=True,
        timeout=600).stdout
    ids = {}
    for line in out.splitlines():
        user, _, inx = line.partition("|")
        if user in names:
            ids[names.index(user)] = int(inx)
    if len(ids) != users:
        raise RuntimeError("only %d of %d associations created: %s"
                           % (len(ids), users, out))
    return ids


# The varied columns; every other column is copied from the template row.
# s.seq is 1..N; h = a hash of it (reproducible pseudo-random numbers).
JOB_EXPR = {
    "mod_time": "t_end",
    "account": "'hist'",
    "id_job": "%(first)d + s.seq",
    "id_user": "%(uid)d + MOD(s.seq, %(users)d)",
    "id_group": "%(uid)d + MOD(s.seq, %(users)d)",
    "id_assoc": "a.id_assoc",
    "job_name": "CONCAT('sim', MOD(h, 997))",
    "work_dir": "CONCAT('/home/hu', LPAD(1 + MOD(s.seq, %(users)d), 2, '0'),"
                " '/project', MOD(h, 7))",
    "submit_line": "CONCAT('sbatch --time=04:00:00 run', MOD(h, 13), '.sh')",
    "state": "CASE WHEN MOD(h, 100) < 85 THEN 3 WHEN MOD(h, 100) < 92 "
             "THEN 5 WHEN MOD(h, 100) < 97 THEN 4 ELSE 6 END",
    "exit_code": "CASE WHEN MOD(h, 100) BETWEEN 85 AND 91 THEN 256 ELSE 0 "
                 "END",
    "nodelist": "CONCAT('cn', LPAD(MOD(h, 480), 3, '0'))",
    "node_inx": "MOD(h, 480)",
    "time_submit": "t_sub",
    "time_eligible": "t_sub",
    "time_start": "t_sub + MOD(h, 3600)",
    "time_end": "t_end",
    "priority": "MOD(h, 100000)",
}
STEP_EXPR = {
    "job_db_inx": "j.job_db_inx",
    "state": "j.state",
    "exit_code": "j.exit_code",
    "nodelist": "j.nodelist",
    "node_inx": "j.node_inx",
    "time_start": "j.time_start",
    "time_end": "j.time_end",
}


def fill_history(socket: str, cluster: str, template_job_inx: int,
                 jobs: int, users: int, years: float, chunk: int = 100_000,
                 log=print) -> dict:
    """Insert `jobs` finished jobs; returns counts and timings."""
    t0 = time.monotonic()
    assocs = make_users(cluster, users)
    jt, st = "%s_job_table" % cluster, "%s_step_table" % cluster
    sql(socket, "DROP TABLE IF EXISTS hist_assoc; CREATE TABLE hist_assoc "
        "(u INT PRIMARY KEY, id_assoc INT); INSERT INTO hist_assoc VALUES "
        + ",".join("(%d,%d)" % kv for kv in sorted(assocs.items())) + ";")
    now = int(time.time()) - 86400          # history ends a day ago
    span = int(years * 365 * 86400)
    jcols = [c for c in columns(socket, jt) if c != "job_db_inx"]
    scols = columns(socket, st)
    params = dict(first=HIST_FIRST_ID, uid=HIST_UID, users=users)
    jsel = ", ".join(JOB_EXPR[c] % params if c in JOB_EXPR else "t.`%s`" % c
                     for c in jcols)
    ssel = ", ".join(STEP_EXPR.get(c, "t.`%s`" % c) for c in scols)
    done = 0
    while done < jobs:
        n = min(chunk, jobs - done)
        q = """
        INSERT INTO `{jt}` ({cols})
        SELECT {sel} FROM (
            SELECT seq, CRC32(seq) AS h,
                   {now} - {span} + FLOOR(seq * {step}) AS t_sub,
                   {now} - {span} + FLOOR(seq * {step}) + MOD(CRC32(seq), 3600)
                     + 60 + MOD(CRC32(seq) DIV 7, 14400) AS t_end
            FROM seq_{lo}_to_{hi}) AS s
        JOIN hist_assoc a ON a.u = MOD(s.seq, {users})
        JOIN `{jt}` t ON t.job_db_inx = {tmpl};
        INSERT INTO `{st}` ({scols})
        SELECT {ssel} FROM `{jt}` j
        JOIN `{st}` t ON t.job_db_inx = {tmpl}
        WHERE j.id_job BETWEEN {idlo} AND {idhi};
        """.format(jt=jt, st=st, cols=", ".join("`%s`" % c for c in jcols),
                   sel=jsel, now=now, span=span, step=span / jobs,
                   lo=done + 1, hi=done + n, users=users,
                   tmpl=template_job_inx,
                   scols=", ".join("`%s`" % c for c in scols), ssel=ssel,
                   idlo=HIST_FIRST_ID + done + 1, idhi=HIST_FIRST_ID + done + n)
        sql(socket, q)
        done += n
        log("  history: %d / %d jobs (%.0f s)" % (done, jobs,
                                                   time.monotonic() - t0))
    counts = sql(socket, "SELECT COUNT(*) FROM `%s`; SELECT COUNT(*) FROM "
                 "`%s`; SELECT COUNT(DISTINCT id_user) FROM `%s`;"
                 % (jt, st, jt)).split()
    sql(socket, "ANALYZE TABLE `%s`, `%s`;" % (jt, st))
    size = sql(socket, "SELECT ROUND(SUM(data_length + index_length) / 1048576)"
               " FROM information_schema.tables WHERE table_schema="
               "'slurm_acct_db' AND table_name IN ('%s', '%s');" % (jt, st))
    return {"jobs_inserted": jobs, "users": users, "years": years,
            "job_rows": int(counts[0]), "step_rows": int(counts[1]),
            "distinct_users": int(counts[2]),
            "tables_mib": float(size.strip() or 0),
            "first_id": HIST_FIRST_ID + 1, "last_id": HIST_FIRST_ID + jobs,
            "seconds": round(time.monotonic() - t0, 1)}


def submit_pending(n: int, workdir: str, log=print, threads: int = 4
                   ) -> tuple[list[str], float]:
    """n jobs of other users kept pending; returns (ids, seconds)."""
    t0 = time.monotonic()

    def one(i):
        user = OTHER_USERS[i % len(OTHER_USERS)]
        when = ["--hold"] if i % 2 else ["--begin=now+365days"]
        p = subprocess.run(
            ["sbatch", "--parsable", "--uid", user, *when, "-J",
             "other%d" % i, "-o", "/dev/null", "--chdir", workdir,
             "--wrap", "sleep 600"], capture_output=True, text=True,
            timeout=600, env=dict(os.environ))
        if p.returncode:
            raise RuntimeError("sbatch --uid %s failed: %s" % (user, p.stderr))
        return p.stdout.strip().split(";")[0]

    ids = []
    with ThreadPoolExecutor(threads) as ex:
        for k, jid in enumerate(ex.map(one, range(n))):
            ids.append(jid)
            if (k + 1) % 5000 == 0:
                log("  pending: %d / %d (%.0f s)" % (k + 1, n,
                                                     time.monotonic() - t0))
    return ids, time.monotonic() - t0
