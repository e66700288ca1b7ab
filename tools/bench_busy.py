#!/usr/bin/env python
"""datalad-hpcdata on an empty and on a busy Slurm cluster, side by side.

One run, two multi-node instances of tools/slurm-cluster.sh up at the same
time (``bempty`` and ``bbusy``, 2 nodes each, each with its own slurmctld,
slurmdbd and MariaDB, started fresh with ``down --purge``; the shared
cluster and its database are never touched):

* ``empty``: fresh accounting database, only this run's jobs;
* ``busy``:  tools/bench_busy_fill.py put 1,000,000 finished jobs of 50
  users over two years into its job and step tables, and 20,000 other
  users' jobs are pending in its slurmctld.

Both get the same work, and every measurement alternates between the two
clusters round by round (empty first, then busy first, ...), so load from
other work on the machine hits both alike:

* schedule, per job: API (in process), CLI, peer (datalad-slurm 0.2.8);
* finish of 100 completed jobs in ONE call: API, CLI, peer (and 10 jobs,
  for the RPC counts);
* ``slurm-finish --list-open-jobs`` with 10,000 open (held) jobs: API,
  CLI; floor = one ``sacct`` call for the 10,000 ids; the peer on 100 and
  1,000 seeded open jobs (it makes one sacct call per job);
* the RPCs each command sends: slurmctld from ``sdiag`` and slurmdbd from
  ``sacctmgr show stats``, reset before and read after the call; message
  types only daemons and jobs send (node registration, job start/complete
  records, ...) are left out, and the cost of reading the statistics
  itself (measured with nothing in between) is subtracted.

    python tools/bench_busy.py                 # full run (~40 min), root
    python tools/bench_busy.py --quick         # tiny sizes, no peer, ~1 min
    python tools/bench_busy.py --report docs/benchmarks/busy.json

Results: docs/benchmarks/busy.{json,md,png} (tools/bench_busy_report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench as B  # noqa: E402
import bench_busy_fill as fill  # noqa: E402
import bench_busy_report as report  # noqa: E402
import bench_fixtures as fx  # noqa: E402

CLUSTER_SH = HERE / "slurm-cluster.sh"
FIRST_JOB_ID = 2_000_001      # our jobs come after the history's ids

FULL = dict(history_jobs=1_000_000, history_users=50, history_years=2.0,
            pending=20_000, open_jobs=10_000, batch=100, small_batch=10,
            rounds_api=3, rounds_cli=3, rounds_peer=1, list_reps_api=5,
            list_reps_cli=3, floor_reps=5, peer_list=[100, 1000], nodes=2)
QUICK = dict(history_jobs=5_000, history_users=50, history_years=2.0,
             pending=100, open_jobs=50, batch=5, small_batch=2,
             rounds_api=2, rounds_cli=1, rounds_peer=1, list_reps_api=2,
             list_reps_cli=1, floor_reps=2, peer_list=[5, 10], nodes=1)
PHASES = ("empty", "busy")

# RPC types that daemons and running jobs send, not the command measured
DAEMON_RPCS = {
    "MESSAGE_NODE_REGISTRATION_STATUS", "REQUEST_COMPLETE_BATCH_SCRIPT",
    "MESSAGE_EPILOG_COMPLETE", "REQUEST_STEP_COMPLETE",
    "REQUEST_COMPLETE_PROLOG", "MESSAGE_TASK_EXIT", "REQUEST_JOB_STEP_CREATE",
    "REQUEST_HET_JOB_ALLOC_INFO", "REQUEST_JOB_ALLOCATION_INFO",
    "REQUEST_STATS_INFO", "REQUEST_RESET_STATS",
    "DBD_JOB_COMPLETE", "DBD_JOB_START", "DBD_STEP_START",
    "DBD_STEP_COMPLETE", "DBD_SEND_MULT_MSG", "DBD_SEND_MULT_JOB_START",
    "DBD_JOB_SUSPEND", "DBD_NODE_STATE", "DBD_CLUSTER_TRES",
    "DBD_REGISTER_CTLD", "DBD_FLUSH_JOBS", "DBD_GET_STATS", "DBD_CLEAR_STATS",
}
RPC_LINE = re.compile(r"^\s+(\S+)\s+\(\s*\d+\)\s+count:(\d+)")

log = B.log


# ------------------------------------------------------------------ clusters

class Cluster:
    """One instance of tools/slurm-cluster.sh and this run's datasets on
    it; `use()` points SLURM_CONF (every Slurm call of ours, the CLI's and
    the peer's) at it."""

    def __init__(self, phase: str, instance: str, cfg: dict, cache: Path):
        self.phase, self.instance, self.cfg = phase, instance, cfg
        self.conf = "/etc/slurm-%s/slurm.conf" % instance
        self.socket = "/run/hpcdata-slurm-%s/mysqld/mysqld.sock" % instance
        self.work, _ = fx.get_dataset(cache, 1000, name="%s-work" % phase,
                                      log=log)
        self.list, _ = fx.get_dataset(cache, 1000, name="%s-list" % phase,
                                      log=log)
        self.held = []
        self.rpc_base = {}

    def use(self):
        os.environ["SLURM_CONF"] = self.conf
        return self

    def script(self, *args):
        env = dict(os.environ)
        env.pop("SLURM_CONF", None)
        env["HPCDATA_SLURM_MAXJOBCOUNT"] = str(
            max(20000, self.cfg["pending"] + self.cfg["open_jobs"] + 5000))
        env["HPCDATA_SLURM_FIRSTJOBID"] = str(FIRST_JOB_ID)
        p = subprocess.run(["bash", str(CLUSTER_SH), "--instance",
                            self.instance, *args], text=True,
                           capture_output=True, env=env, timeout=1800)
        if p.returncode:
            raise RuntimeError("slurm-cluster.sh %s failed:\n%s"
                               % (" ".join(args), p.stderr[-3000:]))

    def up(self):
        t = time.monotonic()
        self.script("down", "--purge")
        self.script("up", "--nodes", str(self.cfg["nodes"]))
        log("instance %s (%s) up in %.0f s" % (self.instance, self.phase,
                                               time.monotonic() - t))
        return {"instance": self.instance, "slurm_conf": self.conf,
                "nodes": self.cfg["nodes"], "first_job_id": FIRST_JOB_ID,
                "max_job_count": max(20000, self.cfg["pending"] +
                                     self.cfg["open_jobs"] + 5000)}

    def down(self):
        self.script("down", "--purge")


# ------------------------------------------------------------------ RPCs

def _rpc_table(text: str) -> dict[str, int]:
    out, on = {}, False
    for line in text.splitlines():
        if "statistics by message type" in line:
            on = True
            continue
        if on and "statistics by user" in line:
            break
        m = RPC_LINE.match(line) if on else None
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def rpc_reset():
    B.sh(["sdiag", "-r"], timeout=60)
    B.sh(["sacctmgr", "-i", "clear", "stats"], timeout=60)


def rpc_read() -> dict:
    return {"slurmctld": _rpc_table(B.sh(["sdiag"], timeout=60).stdout),
            "slurmdbd": _rpc_table(B.sh(["sacctmgr", "show", "stats"],
                                        timeout=60).stdout)}


def rpc_measure(cl: Cluster, fn):
    """(fn(), the RPCs it sent to cl's slurmctld and slurmdbd by type)."""
    if not cl.rpc_base:
        # what resetting and reading the statistics cost by themselves
        rpc_reset()
        cl.rpc_base = rpc_read()
    rpc_reset()
    res = fn()
    got = rpc_read()
    out = {}
    for daemon, table in got.items():
        base = cl.rpc_base.get(daemon, {})
        out[daemon] = {k: v - base.get(k, 0) for k, v in sorted(table.items())
                       if k not in DAEMON_RPCS and v - base.get(k, 0) > 0}
    return res, out


# ------------------------------------------------------------------ work

def variant(name, ds, peer):
    return {"api": B.Api, "cli": B.Cli}[name](ds) if name != "peer" \
        else B.Peer(ds, peer)


def schedule_and_finish(cl: Cluster, v, n, rpc=False):
    """n schedules through v (each timed; RPCs of the first), wait until
    they completed, then ONE finish through v (timed, with its RPCs)."""
    times, ids, srpc = [], [], {}
    for i in range(n):
        out = v.next_out(v.name[0])
        if i < 2 and rpc:
            # the first schedule in a dataset also looks up the cluster name
            (dt, jid, _), srpc["first" if i == 0 else "next"] = rpc_measure(
                cl, lambda: v.schedule(out))
        else:
            dt, jid, _ = v.schedule(out)
        B.SUBMITTED.add(jid)
        times.append(dt)
        ids.append(jid)
    B.wait_done(ids, timeout=900)
    if rpc:
        (dt, rss, k), frpc = rpc_measure(cl, v.finish)
    else:
        (dt, rss, k), frpc = v.finish(), None
    if k != n:
        raise RuntimeError("%s finish committed %s of %d" % (v.name, k, n))
    B.SUBMITTED.difference_update(ids)
    return times, srpc, {"wall_s": dt, "per_job_s": dt / n, "jobs": n,
                         "peak_rss_mib": rss, "rpc": frpc}


def work_rounds(cfg, clusters, peer, R):
    """schedule + finish, alternating the clusters round by round."""
    names = ["api", "cli"] + (["peer"] if peer else [])
    for name in names:
        for r in range(cfg["rounds_" + name]):
            order = clusters if r % 2 == 0 else clusters[::-1]
            for cl in order:
                cl.use()
                v = variant(name, cl.work, peer)
                if r == 0:
                    v.finish()      # warm-up: imports, bytecode cache
                rec = R["phases"][cl.phase]["work"].setdefault(
                    name, {"schedule_samples": [], "finish_batch_runs": []})
                t = time.monotonic()
                times, srpc, fin = schedule_and_finish(cl, v, cfg["batch"],
                                                       rpc=(r == 0))
                rec["schedule_samples"] += times
                rec["finish_batch_runs"].append(fin)
                if r == 0:
                    rec["schedule_rpc"] = srpc
                    _, _, rec["finish_small"] = schedule_and_finish(
                        cl, v, cfg["small_batch"], rpc=True)
                log("  %-5s %-4s round %d: schedule %.4f s/job, finish %d "
                    "in one call %.2f s  [%.0f s]" % (
                        cl.phase, name, r + 1, B.median(times), cfg["batch"],
                        fin["wall_s"], time.monotonic() - t))
    for cl in clusters:
        for rec in R["phases"][cl.phase]["work"].values():
            rec["schedule_s"] = B.summary(rec.pop("schedule_samples"))
            runs = rec["finish_batch_runs"]
            rec["finish_batch"] = dict(runs[0], wall_s=B.median(
                [x["wall_s"] for x in runs]), runs=len(runs))
            rec["finish_batch"]["per_job_s"] = rec["finish_batch"][
                "wall_s"] / cfg["batch"]
        fx.reset_dataset(cl.work)


def make_open_jobs(cfg, cl: Cluster):
    cl.use()
    api = B.Api(cl.list)
    times = []
    t = time.monotonic()
    for _ in range(cfg["open_jobs"]):
        o = api.next_out("h")
        dt, jid, _ = api.schedule(o, hold=True)
        cl.held.append((jid, o))
        times.append(dt)
    log("  %s: %d held jobs scheduled through the API in %.0f s" % (
        cl.phase, len(cl.held), time.monotonic() - t))
    B.wait_visible([j for j, _ in cl.held], timeout=900)
    return B.summary(times)


def sacct_floor(ids):
    """One sacct call for all ids (what one batched state query costs)."""
    t0 = time.perf_counter()
    p = B.sh(["sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o",
              "JobIDRaw,State"], timeout=900)
    if p.returncode:
        raise RuntimeError("sacct failed: %s" % p.stderr)
    return time.perf_counter() - t0


def list_rounds(cfg, clusters, peer, R):
    """Each repetition lists on both clusters, alternating the order."""
    n = cfg["open_jobs"]
    samples = {cl.phase: {"floor": [], "api": [], "cli": [], "rss": []}
               for cl in clusters}
    reps = max(cfg["list_reps_api"], cfg["list_reps_cli"], cfg["floor_reps"])
    for r in range(reps):
        for cl in (clusters if r % 2 == 0 else clusters[::-1]):
            cl.use()
            s = samples[cl.phase]
            res = R["phases"][cl.phase]["list"]
            ids = [j for j, _ in cl.held]
            if r < cfg["floor_reps"]:
                s["floor"].append(sacct_floor(ids))
            api, cli = B.Api(cl.list), B.Cli(cl.list)
            if r < cfg["list_reps_api"]:
                if r == 0:
                    (dt, _, k), res["api_rpc"] = rpc_measure(cl,
                                                             api.list_open)
                else:
                    dt, _, k = api.list_open()
                if k != n:
                    raise RuntimeError("api listed %d of %d" % (k, n))
                s["api"].append(dt)
            if r < cfg["list_reps_cli"]:
                dt, rss, k = cli.list_open()
                if k != n:
                    raise RuntimeError("cli listed %d of %d" % (k, n))
                s["cli"].append(dt)
                s["rss"].append(rss)
            if r == 0:
                small = ids[:max(1, n // 10)]
                _, res["api_rpc_tenth"] = rpc_measure(
                    cl, lambda: api.dl.slurm_finish(
                        dataset=str(cl.list), job_id=small,
                        list_open_jobs=True, result_renderer="disabled",
                        return_type="list", on_failure="ignore"))
    for cl in clusters:
        s, res = samples[cl.phase], R["phases"][cl.phase]["list"]
        res["floor_sacct_s"] = B.summary(s["floor"])
        res["api_s"] = B.summary(s["api"])
        res["cli_s"] = B.summary(s["cli"])
        res["cli_peak_rss_mib"] = max(s["rss"])
        log("  %-5s list %d open: api %.3f s, cli %.3f s, one sacct %.3f s"
            % (cl.phase, n, res["api_s"]["median"], res["cli_s"]["median"],
               res["floor_sacct_s"]["median"]))
    if not peer:
        return
    for m in cfg["peer_list"]:
        for cl in clusters:
            cl.use()
            pv = B.Peer(cl.list, peer)
            if pv.db.exists():
                pv.db.unlink()
            pv.seed(cl.held[:m])
            (dt, rss, _), rpcs = rpc_measure(cl, pv.list_open)
            pv.db.unlink()
            R["phases"][cl.phase]["list"].setdefault("peer", {})[str(m)] = {
                "wall_s": dt, "per_job_s": dt / m, "peak_rss_mib": rss,
                "rpc": rpcs}
            log("  %-5s peer list %d open: %.1f s" % (cl.phase, m, dt))


def floors(clusters, R, scratch):
    for cl in clusters:
        cl.use()
        R["phases"][cl.phase]["floor_sbatch_s"] = B.summary(
            B.floor_sbatch(cl.work, 10, scratch))


def cluster_load(cl: Cluster) -> dict:
    cl.use()
    q = [line for line in B.sh(["squeue", "-h", "-o", "%u"],
                               timeout=300).stdout.splitlines() if line]
    return {"jobs_in_slurmctld": len(q), "users_in_slurmctld": len(set(q))}


def make_busy(cfg, cl: Cluster, res):
    """History into the database, other users' jobs into the queue."""
    cl.use()
    # a real row slurmdbd wrote: the newest completed job (a floor job)
    B.floor_sbatch(cl.work, 1, Path("/tmp/hpcdata-bench-busy-tmpl"))
    row = fill.sql(cl.socket, "SELECT job_db_inx, id_job FROM "
                   "`%s_job_table` WHERE state = 3 ORDER BY job_db_inx DESC "
                   "LIMIT 1;" % cl.instance).split()
    if not row:
        raise RuntimeError("no completed job to copy rows from")
    log("filling history (%d jobs of %d users over %.0f years; template "
        "job %s)" % (cfg["history_jobs"], cfg["history_users"],
                     cfg["history_years"], row[1]))
    res["history"] = fill.fill_history(
        cl.socket, cl.instance, int(row[0]), cfg["history_jobs"],
        cfg["history_users"], cfg["history_years"], log=log)
    log("submitting %d other users' pending jobs" % cfg["pending"])
    ids, secs = fill.submit_pending(cfg["pending"], str(cl.work), log=log)
    res["pending"] = {"jobs": len(ids), "seconds": round(secs, 1),
                      "users": list(fill.OTHER_USERS)}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--with-peer", action="store_true",
                    help="include the peer in --quick mode")
    ap.add_argument("--no-peer", action="store_true")
    for key in ("history_jobs", "pending", "open_jobs", "batch"):
        ap.add_argument("--" + key.replace("_", "-"), type=int,
                        help="override the mode's %s" % key)
    ap.add_argument("--instances", default="bempty,bbusy",
                    help="instance names for the empty and the busy cluster")
    ap.add_argument("--keep", action="store_true",
                    help="leave the instances up (default: down --purge)")
    ap.add_argument("--out", help="default: docs/benchmarks (full run), "
                    "/tmp/hpcdata-bench-busy (--quick)")
    ap.add_argument("--cache", default="/tmp/hpcdata-bench-cache")
    ap.add_argument("--peer-venv", default="/tmp/peer-venv")
    ap.add_argument("--report", metavar="JSON",
                    help="only regenerate busy.md/busy.png from JSON")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out or (B.REPO / "docs" / "benchmarks" if not args.quick
                            else "/tmp/hpcdata-bench-busy"))
    out.mkdir(parents=True, exist_ok=True)
    if args.report:
        report.write(json.loads(Path(args.report).read_text()), out)
        return 0
    if os.geteuid() != 0:
        print("tools/bench_busy.py must run as root (it starts a Slurm "
              "instance)", file=sys.stderr)
        return 2
    cfg = dict(QUICK if args.quick else FULL, quick=args.quick)
    for key in ("history_jobs", "pending", "open_jobs", "batch"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    use_peer = args.with_peer if args.quick else not args.no_peer
    cache = Path(args.cache)
    scratch = cache / "scratch-busy"
    B.PYCACHE["dir"] = str(cache / "pycache")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *a: sys.exit(130))
    R = {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
         "config": cfg, "fill": {}, "clusters": {},
         "phases": {p: {"work": {}, "list": {}} for p in PHASES}}
    clusters = []
    try:
        for phase, inst in zip(PHASES, args.instances.split(",")):
            cl = Cluster(phase, inst, cfg, cache)
            clusters.append(cl)     # taken down below also if up fails
            R["clusters"][phase] = cl.up()
        peer = B.ensure_peer(Path(args.peer_venv)) if use_peer else None
        clusters[0].use()
        R["machine"] = B.machine_info(peer)
        make_busy(cfg, clusters[1], R["fill"])
        for cl in clusters:
            R["phases"][cl.phase]["schedule_held_s"] = make_open_jobs(cfg, cl)
        floors(clusters, R, scratch)
        work_rounds(cfg, clusters, peer, R)
        list_rounds(cfg, clusters, peer, R)
        for cl in clusters:
            R["phases"][cl.phase]["queue"] = cluster_load(cl)
    finally:
        B.SUBMITTED.clear()        # every job is in our own instances
        for cl in clusters:
            fx.reset_dataset(cl.work)
            fx.reset_dataset(cl.list)
            if not args.keep:
                try:
                    cl.down()
                except Exception as e:  # noqa: BLE001
                    log("WARNING: down --purge of %s failed: %s"
                        % (cl.instance, e))
    R["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    R["duration_s"] = round(time.monotonic() - B.T0, 1)
    report.write(R, out)
    for t in R["targets"]:
        log("target %-4s %s: %s" % ({True: "MET", False: "MISS",
                                     None: "n/a"}[t["met"]], t["target"],
                                    t["shown"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
