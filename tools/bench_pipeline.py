#!/usr/bin/env python
"""Pipelines at scale: schedule and finish a 1,000-job pipeline.

A pipeline of STAGES x WIDTH jobs (full run: 10 x 100) on the local Slurm
cluster: job (0, i) reads ``params/p<i>.txt``; job (k, i) reads the outputs
of jobs (k-1, i) and (k-1, i+1 mod WIDTH), so every job after the first
stage has two producers.  Everything is scheduled in one go (stage 0 held,
so nothing runs while scheduling is measured), then released, and finished
in one ``slurm-finish`` call.  Measured, in one process (Python API):

* schedule: per-job wall time by stage, the dependency lookup's share of
  it, the Slurm calls per job; bare ``sbatch --dependency`` as the floor;
* finish: total and per job, commit rounds, Slurm calls, and whether every
  consumer's commit comes after its producers' (checked in git);
* dependency lookup vs. the job history: :func:`find_producers` on a copy
  of the job store with 0 .. 100,000 committed jobs added (and vs. the
  number of open jobs), with the SQL it runs and SQLite's query plan: only
  the claims of open jobs are read, so the history does not count;
* ``slurm-reschedule --report --affected-by params/p000.txt`` on the
  committed 1,000-job history: time, git calls (the history is read once),
  jobs found.

    python tools/bench_pipeline.py             # full run (~10 min)
    python tools/bench_pipeline.py --quick     # 3 x 4 jobs, < 1 min

Results: docs/benchmarks/pipeline.{json,md,png} (``--out DIR`` elsewhere).
Only jobs this script submitted are ever cancelled.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench  # noqa: E402
from bench import SUBMITTED, cancel, log, sh, wait_done  # noqa: E402

FULL = dict(stages=10, width=100, history=[0, 1000, 10000, 100000],
            open_jobs=[100, 1000, 10000], lookup_reps=200, floor_jobs=100)
QUICK = dict(stages=3, width=4, history=[0, 100, 1000],
             open_jobs=[10, 100], lookup_reps=20, floor_jobs=3)

STEP_SH = """#!/bin/sh
#SBATCH --job-name=hpcbench-pipe
#SBATCH --output=logs/slurm-%j.out
# step.sh OUT IN...: OUT = a line per input
mkdir -p "$(dirname "$1")"
out=$1; shift
for f in "$@"; do head -c 64 "$f"; echo; done > "$out"
"""


def summary(xs):
    xs = list(xs)
    if not xs:
        return None
    s = sorted(xs)
    return {"n": len(s), "median": statistics.median(s), "min": s[0],
            "max": s[-1], "p95": s[min(len(s) - 1, int(0.95 * len(s)))],
            "total": sum(s)}


@contextmanager
def counting(counts: dict):
    """Count the programs subprocess.run starts (argv[0], and the git
    subcommand) while the block runs."""
    real = subprocess.run

    def run(argv, *a, **kw):
        name = Path(str(argv[0])).name
        if name == "git":
            sub = next((x for x in argv[1:] if not str(x).startswith("-")),
                       "")
            name = "git " + str(sub)
        counts[name] = counts.get(name, 0) + 1
        return real(argv, *a, **kw)
    subprocess.run = run
    try:
        yield counts
    finally:
        subprocess.run = real


def make_dataset(path: Path, width: int):
    import datalad.api as dl
    ds = dl.create(str(path), result_renderer="disabled")
    (path / "code").mkdir()
    (path / "code" / "step.sh").write_text(STEP_SH)
    (path / "code" / "step.sh").chmod(0o755)
    (path / "params").mkdir()
    for i in range(width):
        (path / "params" / ("p%03d.txt" % i)).write_text("param %d\n" % i)
    (path / "logs").mkdir()
    (path / "logs" / ".gitkeep").write_text("")
    ds.save(message="pipeline fixture", result_renderer="disabled")
    return ds


def out_path(k: int, i: int) -> str:
    return "s%02d/j%03d.txt" % (k, i)


def schedule_pipeline(ds, cfg, R):
    import datalad.api as dl

    from datalad_hpcdata.jobs import dataflow
    stages, width = cfg["stages"], cfg["width"]
    lookups = []
    real_find = dataflow.find_producers

    def timed(*a, **kw):
        t0 = time.perf_counter()
        try:
            return real_find(*a, **kw)
        finally:
            lookups.append(time.perf_counter() - t0)
    dataflow.find_producers = timed
    per_stage, ids, counts, every = {}, {}, {}, []
    try:
        with counting(counts):
            for k in range(stages):
                times = []
                for i in range(width):
                    ins = (["params/p%03d.txt" % i] if k == 0 else
                           [out_path(k - 1, i),
                            out_path(k - 1, (i + 1) % width)])
                    cmd = "sbatch %scode/step.sh {outputs} {inputs}" % (
                        "--hold " if k == 0 else "")
                    for attempt in range(5):
                        t0 = time.perf_counter()
                        res = dl.slurm_schedule(
                            cmd, dataset=ds, inputs=ins,
                            outputs=[out_path(k, i)],
                            result_renderer="disabled", return_type="list",
                            on_failure="ignore")
                        dt = time.perf_counter() - t0
                        if not controller_down(res):
                            break
                        # the cluster is shared: another user may restart
                        # slurmctld; such a call is not counted
                        log("controller unreachable, retrying in 20 s")
                        time.sleep(20)
                    times.append(dt)
                    r = [x for x in res if x.get("slurm_job_id")]
                    if not r or r[0]["status"] != "ok":
                        raise RuntimeError("schedule failed: %s" % res)
                    ids[(k, i)] = r[0]["slurm_job_id"]
                    SUBMITTED.add(r[0]["slurm_job_id"])
                    want = 0 if k == 0 else (1 if width == 1 else 2)
                    assert len(r[0].get("depends_on") or []) == want, r[0]
                per_stage[k] = summary(times)
                every += times
                log("stage %d scheduled: median %.1f ms/job" % (
                    k, 1000 * per_stage[k]["median"]))
    finally:
        dataflow.find_producers = real_find
    n = stages * width
    R["schedule"] = {
        "jobs": n, "per_stage": per_stage,
        "all": summary(every),
        "with_producers": summary(every[width:]),
        "total_s": sum(every),
        "lookup": summary(lookups),
        "calls_per_job": {c: v / n for c, v in sorted(counts.items())},
    }
    return ids


def plan_overhead(ds, cfg, R):
    """plan() (validation, the producers' lookup, the merged --dependency;
    no Slurm, no git) of a job reading two open jobs' outputs vs. one
    reading a committed file, while the whole pipeline is open."""
    from datalad_hpcdata.dataset.handle import DatasetHandle
    from datalad_hpcdata.jobs.schedule import plan
    handle = DatasetHandle(ds)
    k, width = cfg["stages"] - 1, cfg["width"]
    cases = {"two_producers": [out_path(k, 0), out_path(k, 1 % width)],
             "no_producers": ["params/p000.txt"]}
    cmd = "sbatch code/step.sh {outputs} {inputs}"
    R["plan"] = {}
    for name, ins in cases.items():
        times = []
        for n in range(cfg["lookup_reps"]):
            t0 = time.perf_counter()
            spec = plan(handle, cmd, ds.path, inputs=ins,
                        outputs=["extra/%s-%d.txt" % (name, n)])
            times.append(time.perf_counter() - t0)
        assert len(spec.depends_on) == (2 if name == "two_producers"
                                        else 0), spec.depends_on
        R["plan"][name] = summary(times)
    log("plan(): %.2f ms with two producers, %.2f ms without" % (
        1000 * R["plan"]["two_producers"]["median"],
        1000 * R["plan"]["no_producers"]["median"]))


def controller_down(res) -> bool:
    return any("Unable to contact slurm controller" in str(r.get("message"))
               for r in res)


def floor_sbatch(ds, jobs: int, R):
    """bare sbatch with a dependency (the Slurm part of a schedule)."""
    held = sh(["sbatch", "--parsable", "--hold", "--job-name=hpcbench-pipe",
               "--wrap", "true"], cwd=ds.path).stdout.strip()
    SUBMITTED.add(held)
    times, got = [], []
    for _ in range(jobs):
        t0 = time.perf_counter()
        p = sh(["sbatch", "--parsable", "--job-name=hpcbench-pipe",
                "--dependency=afterok:%s" % held, "--wrap", "true"],
               cwd=ds.path)
        times.append(time.perf_counter() - t0)
        got.append(p.stdout.strip())
        SUBMITTED.add(got[-1])
    cancel([held] + got)
    R["floor"] = {"sbatch_dependency": summary(times)}


def finish_pipeline(ds, ids, R):
    import datalad.api as dl

    from datalad_hpcdata.jobs import order
    head0 = sh(["git", "rev-parse", "HEAD"], cwd=ds.path).stdout.strip()
    t0 = time.perf_counter()
    sh(["scontrol", "release", ",".join(
        ids[(0, i)] for i in range(R["config"]["width"]))])
    wait_done(list(ids.values()), timeout=3600)
    R["run_s"] = time.perf_counter() - t0
    SUBMITTED.difference_update(ids.values())
    rounds = []
    real = order.commit_in_order

    def traced(handle, flow, items, commit_batch):
        def batch(items):
            rounds.append(len(items))
            return commit_batch(items)
        return real(handle, flow, items, batch)
    counts = {}
    from datalad_hpcdata.jobs import finish as finish_mod
    finish_mod.commit_in_order = traced
    try:
        with counting(counts):
            t0 = time.perf_counter()
            res = dl.slurm_finish(dataset=ds, result_renderer="disabled",
                                  return_type="list", on_failure="ignore")
            wall = time.perf_counter() - t0
    finally:
        finish_mod.commit_in_order = real
    committed = [r for r in res if r.get("commit")]
    order_ok = check_order(ds, head0, ids, R["config"])
    R["finish"] = {"wall_s": wall, "per_job_s": wall / max(1, len(ids)),
                   "committed": len(committed), "rounds": rounds,
                   "order_ok": order_ok,
                   "slurm_calls": {c: v for c, v in counts.items()
                                   if not c.startswith("git")},
                   "git_calls": sum(v for c, v in counts.items()
                                    if c.startswith("git"))}
    log("finished %d jobs in %.1f s, %d rounds, order ok: %s" % (
        len(committed), wall, len(rounds), order_ok))


def check_order(ds, head0, ids, cfg) -> bool:
    """Every consumer's commit comes after both of its producers'."""
    out = sh(["git", "log", "--reverse", "--format=%s",
              head0 + "..HEAD"], cwd=ds.path).stdout.splitlines()
    pos = {line.split()[5].rstrip(":"): n for n, line in enumerate(out)}
    width = cfg["width"]
    for (k, i), jid in ids.items():
        if k == 0:
            continue
        for p in (ids[(k - 1, i)], ids[(k - 1, (i + 1) % width)]):
            if pos[p] >= pos[jid]:
                return False
    return len(pos) == len(ids)


def lookup_vs_history(ds, cfg, R):
    """find_producers on a copy of the store with more and more history."""
    from datalad_hpcdata.dataset.jobstore import JobStore
    from datalad_hpcdata.jobs.dataflow import find_producers
    src = Path(ds.path) / ".git" / "datalad-hpcdata" / "jobs.sqlite"
    scratch = Path(tempfile.mkdtemp(prefix="hpcbench-store-"))
    R["lookup"] = {"history": {}, "open": {}}
    try:
        made = []

        def store_with(history: int, open_jobs: int) -> JobStore:
            made.append(1)
            d = scratch / ("%d-h%d-o%d" % (len(made), history, open_jobs))
            (d / "datalad-hpcdata").mkdir(parents=True)
            con = sqlite3.connect(str(d / "datalad-hpcdata" / "jobs.sqlite"))
            orig = sqlite3.connect(str(src))
            orig.backup(con)       # the store is in WAL mode: no file copy
            orig.close()
            spec = json.dumps({"cmd": "sbatch x", "output_specs": ["h"]})
            con.executemany(
                "INSERT INTO jobs (status, cluster, job_id, created, spec, "
                "commit_sha) VALUES ('committed', 'bench', ?, 0, ?, ?)",
                [(str(10 ** 7 + n), spec, "0" * 40) for n in range(history)])
            for n in range(open_jobs):
                cur = con.execute(
                    "INSERT INTO jobs (status, cluster, job_id, created, "
                    "spec) VALUES ('open', 'bench', ?, 0, ?)",
                    (str(2 * 10 ** 7 + n), spec))
                con.execute("INSERT INTO claims (path, row) VALUES (?, ?)",
                            ("open/o%06d.txt" % n, cur.lastrowid))
            con.commit()
            con.close()
            return JobStore(d)

        specs = ["open/o000007.txt", "open/o000001.txt"]

        def measure(store):
            find_producers(store, specs)        # warm
            times = []
            for _ in range(cfg["lookup_reps"]):
                t0 = time.perf_counter()
                found = find_producers(store, specs)
                times.append(time.perf_counter() - t0)
            assert len(found) == 2, found
            stmts = []
            store.con.set_trace_callback(stmts.append)
            find_producers(store, specs)
            store.con.set_trace_callback(None)
            return summary(times), stmts
        base_open = cfg["open_jobs"][0]
        for h in cfg["history"]:
            store = store_with(h, base_open)
            rows = store.con.execute("SELECT COUNT(*) FROM jobs").fetchone()
            s, stmts = measure(store)
            R["lookup"]["history"][str(h)] = dict(s, rows=rows[0],
                                                  statements=len(stmts))
            plan = store.con.execute(
                "EXPLAIN QUERY PLAN " + stmts[0], ()).fetchall() \
                if "?" not in stmts[0] else []
            R["lookup"]["sql"] = stmts
            R["lookup"]["query_plan"] = [r[-1] for r in plan]
            store.close()
            log("lookup, %d jobs in the store: %.3f ms" % (
                rows[0], 1000 * s["median"]))
        for o in cfg["open_jobs"]:
            store = store_with(cfg["history"][-1], o)
            s, _ = measure(store)
            R["lookup"]["open"][str(o)] = s
            store.close()
            log("lookup, %d open jobs: %.3f ms" % (o, 1000 * s["median"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def affected_by(ds, cfg, R):
    import datalad.api as dl
    counts = {}
    with counting(counts):
        t0 = time.perf_counter()
        res = dl.slurm_reschedule(dataset=ds, report=True,
                                  affected_by=["params/p000.txt"],
                                  result_renderer="disabled",
                                  return_type="list", on_failure="ignore")
        wall = time.perf_counter() - t0
    ok = [r for r in res if r["status"] == "ok"]
    stages, width = cfg["stages"], cfg["width"]
    expect = sum(min(k + 1, width) for k in range(stages))
    R["affected_by"] = {"wall_s": wall, "records": stages * width,
                        "affected": len(ok), "expected": expect,
                        "git_calls": {c: v for c, v in counts.items()
                                      if c.startswith("git")},
                        "slurm_calls": {c: v for c, v in counts.items()
                                        if not c.startswith("git")}}
    log("--affected-by: %d of %d records in %.2f s" % (
        len(ok), stages * width, wall))


def write_markdown(R, path: Path):
    S, F, L, A = R["schedule"], R["finish"], R["lookup"], R["affected_by"]
    ms = 1000.0
    lines = [
        "# Pipeline benchmark (tools/bench_pipeline.py)", "",
        "%d stages x %d jobs = %d jobs on the local Slurm cluster (%s); "
        "each job after the first stage reads the outputs of two jobs of "
        "the stage before. One process, Python API. %s" % (
            R["config"]["stages"], R["config"]["width"], S["jobs"],
            R["machine"], "Quick mode." if R["config"]["quick"] else ""),
        "", "Load average (1/5/15 min) at the start %s, at the end %s: the "
        "machine (2 cores) was shared with other work, so absolute times "
        "are upper bounds; the shapes (per stage, vs. history) are what "
        "the run shows." % (
            "/".join("%.1f" % x for x in R["load_start"]),
            "/".join("%.1f" % x for x in R["load_end"])),
        "", "## Schedule", "",
        "| stage | median ms/job | p95 ms/job |", "|---|---|---|"]
    for k, s in sorted(S["per_stage"].items(), key=lambda kv: int(kv[0])):
        lines.append("| %s%s | %.1f | %.1f |" % (
            k, " (no producers, held)" if str(k) == "0" else "",
            ms * s["median"], ms * s["p95"]))
    lines += [
        "", "* all %d jobs: %.1f s; bare `sbatch --dependency` (floor): "
        "median %.1f ms/job" % (S["jobs"], S["total_s"],
                                ms * R["floor"]["sbatch_dependency"]
                                ["median"]),
        "* dependency lookup (`find_producers`) inside those calls: median "
        "%.3f ms, p95 %.3f ms" % (ms * S["lookup"]["median"],
                                  ms * S["lookup"]["p95"]),
        "* programs started per scheduled job: %s" % ", ".join(
            "%s %.2f" % kv for kv in S["calls_per_job"].items()),
        "* `plan()` alone (validation, producer lookup, merged "
        "`--dependency`; no Slurm, no git), all %d jobs open: median "
        "%.2f ms for a job reading two open jobs' outputs, %.2f ms for one "
        "reading a committed file" % (
            S["jobs"], ms * R["plan"]["two_producers"]["median"],
            ms * R["plan"]["no_producers"]["median"]),
        "", "## Finish (one call)", "",
        "* Slurm ran the %d jobs in %.1f s after release (not ours)" % (
            S["jobs"], R["run_s"]),
        "* `slurm-finish`: %.1f s for %d commits (%.1f ms/job) in %d "
        "rounds of %s jobs" % (F["wall_s"], F["committed"],
                               ms * F["per_job_s"], len(F["rounds"]),
                               "/".join(str(x) for x in F["rounds"])),
        "* every consumer committed after both its producers: **%s**" % (
            "yes" if F["order_ok"] else "NO"),
        "* Slurm calls: %s; git processes: %d" % (
            ", ".join("%s %d" % kv for kv in F["slurm_calls"].items())
            or "none", F["git_calls"]),
        "", "## Dependency lookup vs. history", "",
        "A copy of the job store with N committed jobs added, %s open jobs "
        "with claims; the lookup for a job with two inputs:" % (
            R["config"]["open_jobs"][0]), "",
        "| jobs in the store | median ms | p95 ms | SQL statements |",
        "|---|---|---|---|"]
    for h, s in L["history"].items():
        lines.append("| %d | %.3f | %.3f | %d |" % (
            s["rows"], ms * s["median"], ms * s["p95"], s["statements"]))
    lines += ["", "| open jobs (with %s committed) | median ms |" % (
        R["config"]["history"][-1]), "|---|---|"]
    for o, s in L["open"].items():
        lines.append("| %s | %.3f |" % (o, ms * s["median"]))
    lines += ["", "SQL of one lookup:", "", "```sql"] + L["sql"] + ["```"]
    if L.get("query_plan"):
        lines += ["", "Query plan: " + "; ".join(L["query_plan"])]
    lines += [
        "", "## `--affected-by` on the committed history", "",
        "`slurm-reschedule --report --affected-by params/p000.txt`: %.2f s "
        "for %d records; %d jobs found (expected %d); git processes: %s; "
        "Slurm calls: %s" % (
            A["wall_s"], A["records"], A["affected"], A["expected"],
            ", ".join("%s %d" % kv for kv in A["git_calls"].items()),
            ", ".join("%s %d" % kv for kv in A["slurm_calls"].items())
            or "none"), ""]
    path.write_text("\n".join(lines))


def plot(R, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    st = sorted(R["schedule"]["per_stage"].items(), key=lambda kv: int(kv[0]))
    ax = axes[0]
    ax.bar([int(k) for k, _ in st], [1000 * s["median"] for _, s in st],
           color="#1f77b4", label="slurm-schedule (API)")
    ax.axhline(1000 * R["floor"]["sbatch_dependency"]["median"],
               color="#888888", ls="--", label="bare sbatch --dependency")
    ax.set_xlabel("stage (0: no producers)")
    ax.set_ylabel("ms per job (median)")
    ax.set_title("Scheduling %d jobs" % R["schedule"]["jobs"])
    ax.legend(fontsize=8)
    ax = axes[1]
    hist = R["lookup"]["history"]
    xs = [hist[h]["rows"] for h in hist]
    ax.plot(xs, [1000 * hist[h]["median"] for h in hist], "o-",
            label="vs. jobs in the store (%s open)"
            % R["config"]["open_jobs"][0])
    op = R["lookup"]["open"]
    ax.plot([int(o) for o in op], [1000 * op[o]["median"] for o in op],
            "s--", label="vs. open jobs")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("jobs")
    ax.set_ylabel("ms per lookup (median)")
    ax.set_title("Dependency lookup")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[2]
    F = R["finish"]
    ax.bar(["slurm-finish\n(%d rounds)" % len(F["rounds"])],
           [F["wall_s"]], color="#2ca02c")
    ax.bar(["Slurm runs\nthe jobs"], [R["run_s"]], color="#888888")
    ax.set_ylabel("seconds")
    ax.set_title("Finishing %d jobs in one call" % F["committed"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "benchmarks"))
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    ok, why = bench.slurm_usable()
    if not ok:
        print("no usable Slurm cluster: %s" % why, file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hpcbench-pipeline-"))
    R = {"config": dict(cfg, quick=args.quick),
         "machine": "%s CPUs on the node, %s" % (
             sh(["sinfo", "-h", "-o", "%c"]).stdout.split()[0],
             sh(["sinfo", "--version"]).stdout.strip())}
    R["load_start"] = list(bench.os.getloadavg())
    try:
        ds = make_dataset(work / "ds", cfg["width"])
        floor_sbatch(ds, cfg["floor_jobs"], R)
        ids = schedule_pipeline(ds, cfg, R)
        plan_overhead(ds, cfg, R)
        finish_pipeline(ds, ids, R)
        lookup_vs_history(ds, cfg, R)
        affected_by(ds, cfg, R)
        R["load_end"] = list(bench.os.getloadavg())
    finally:
        bench.cleanup_all()
        subprocess.run(["chmod", "-R", "u+w", str(work)])
        shutil.rmtree(work, ignore_errors=True)
    (out / "pipeline.json").write_text(json.dumps(R, indent=1,
                                                  sort_keys=True))
    write_markdown(R, out / "pipeline.md")
    if not args.no_plot:
        try:
            plot(R, out / "pipeline.png")
        except ImportError:
            log("matplotlib missing (pip install -e .[bench]): no "
                "pipeline.png")
    log("results in %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
