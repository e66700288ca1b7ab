#!/usr/bin/env python
"""Campaign benchmarks: many jobs per call, and slurm-finish --wait.

* ``jobs-from``: N jobs (default 1,000, held with ``--hold`` so the shared
  node is not loaded) submitted by bare ``sbatch`` in a loop, by ONE
  ``datalad slurm-schedule --jobs-from`` call, and (for context, fewer
  jobs) by a shell-style loop of ``datalad slurm-schedule`` calls; per-job
  cost and our overhead over bare ``sbatch``; rounds interleaved, medians.
  The Slurm calls per job are counted in a separate small run (logging
  shims on ``PATH`` would slow the timed runs).
* ``array`` and ``altdir``: see tools/bench_arrays.py (a 1,000-task
  array with per-task outputs: schedule, finish, reschedule of 10 failed
  tasks; the alt-dir finish of one 2 GiB output vs ``cp`` + hash).
* ``wait``: M jobs (default 200, 0-2 s each) scheduled with
  ``--jobs-from``, then ONE ``datalad slurm-finish --wait`` with the default
  poll interval; the Slurm calls it made (logging shims on ``PATH``),
  polls, commits (must equal M), the delay between each job's end and its
  commit, and what a fixed 5 s poller would have cost.

Results: ``campaign.json``, ``campaign.md``, ``campaign.png``.  Only jobs
this script submitted are ever cancelled.

    python tools/bench_campaign.py                      # docs/benchmarks/
    python tools/bench_campaign.py --quick --out /tmp/c
    python tools/bench_campaign.py --report docs/benchmarks/campaign.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import bench_arrays
from campaign_report import report

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATALAD = str(BIN / "datalad")
JOB_SH = """#!/bin/sh
sleep "${2:-0}"
mkdir -p "$(dirname "$1")"
echo "job ${SLURM_JOB_ID:-none}" > "$1"
"""
FULL = dict(jobs=1000, rounds=3, loop=50, calls=20, wait=200, array=1000,
            array_failed=10, altdir_bytes=2 << 30)
QUICK = dict(jobs=20, rounds=1, loop=3, calls=5, wait=6, array=20,
             array_failed=3, altdir_bytes=8 << 20)
PHASES = ("jobs-from", "wait", "array", "altdir")
SUBMITTED: set[str] = set()
T0 = time.monotonic()


def log(*a):
    print("[campaign %7.1fs]" % (time.monotonic() - T0), *a, flush=True)


def env_for(shims: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE",)}
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = "%s%s:%s" % ("%s:" % shims if shims else "", BIN,
                               env.get("PATH", ""))
    env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) /
                                              "hpcdata-campaign-pycache"))
    return env


def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def make_shims(where: Path) -> tuple[Path, Path]:
    """Logging shims for the Slurm tools: (directory, log file)."""
    shims, logf = where / "shims", where / "slurm-calls.log"
    shims.mkdir(parents=True)
    for tool in ("sacct", "squeue", "scontrol", "sbatch", "scancel"):
        (shims / tool).write_text('#!/bin/sh\necho "%s $*" >> "%s"\n'
                                  'exec "%s" "$@"\n'
                                  % (tool, logf, shutil.which(tool)))
        (shims / tool).chmod(0o755)
    return shims, logf


def calls_by_tool(logf: Path) -> dict:
    out = {}
    if logf.exists():
        for line in logf.read_text().splitlines():
            tool = line.split()[0]
            out[tool] = out.get(tool, 0) + 1
    return out


def make_dataset(path: Path) -> None:
    env = env_for()
    sh([DATALAD, "create", str(path)], env=env, check=True)
    (path / "code").mkdir()
    (path / "code" / "job.sh").write_text(JOB_SH)
    (path / "code" / "job.sh").chmod(0o755)
    sh([DATALAD, "save", "-m", "job"], cwd=path, env=env, check=True)


def cancel(ids) -> None:
    ids = sorted(set(map(str, ids)) & SUBMITTED)
    for i in range(0, len(ids), 500):
        sh(["scancel"] + ids[i:i + 500])


def jobs_file(path: Path, n: int, hold: bool, sleeps=(0,)) -> Path:
    lines = [json.dumps({"cmd": "sbatch %s--job-name=hpcdata-bench "
                                "code/job.sh {outputs} %d"
                                % ("--hold " if hold else "",
                                   sleeps[i % len(sleeps)]),
                         "outputs": "out/%d" % i}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def bare(ds: Path, n: int) -> float:
    ids, t = [], time.perf_counter()
    for i in range(n):
        p = sh(["sbatch", "--parsable", "--hold",
                "--job-name=hpcdata-bench", "code/job.sh", "bare/%d" % i],
               cwd=ds, check=True)
        ids.append(p.stdout.strip().split(";")[0])
    total = time.perf_counter() - t
    SUBMITTED.update(ids)
    cancel(ids)
    return total


def ours(ds: Path, n: int, env=None) -> tuple[float, int]:
    jf = jobs_file(ds.parent / "jobs.jsonl", n, hold=True)
    t = time.perf_counter()
    p = sh([DATALAD, "-f", "json", "slurm-schedule", "--jobs-from", str(jf)],
           cwd=ds, env=env or env_for())
    total = time.perf_counter() - t
    recs = [json.loads(line) for line in p.stdout.splitlines()
            if line.startswith("{")]
    ids = [r["slurm_job_id"] for r in recs if r.get("slurm_job_id")]
    SUBMITTED.update(ids)
    cancel(ids)
    failed = [r.get("message") for r in recs if r.get("status") != "ok"]
    if failed or len(ids) != n:
        log("%d of %d not submitted, e.g. %s" % (n - len(ids), n,
                                                 failed[:2]))
    return total, len(ids), failed[:5]


def loop(ds: Path, n: int) -> float:
    ids, t = [], time.perf_counter()
    for i in range(n):
        p = sh([DATALAD, "-f", "json", "slurm-schedule", "-o", "loop/%d" % i,
                "sbatch", "--hold", "code/job.sh", "{outputs}"], cwd=ds,
               env=env_for())
        ids += [json.loads(line).get("slurm_job_id")
                for line in p.stdout.splitlines() if line.startswith("{")]
    total = time.perf_counter() - t
    SUBMITTED.update(i for i in ids if i)
    cancel(ids)
    return total


def bench_jobs_from(tmp: Path, cfg: dict) -> dict:
    n, res = cfg["jobs"], dict(jobs=cfg["jobs"], loop_jobs=cfg["loop"],
                                bare=[], ours=[], loop=[],
                                not_submitted=[])
    for r in range(cfg["rounds"]):
        ds = tmp / ("jf-%d" % r) / "ds"
        make_dataset(ds)
        steps = [("bare", lambda: bare(ds, n)),
                 ("ours", lambda: ours(ds, n)),
                 ("loop", lambda: loop(ds, cfg["loop"]))]
        for name, fn in (steps if r % 2 == 0 else steps[::-1]):
            out = fn()
            if name == "ours":
                out, got, failed = out
                res["not_submitted"].append(
                    dict(round=r, count=n - got, messages=failed))
            per = out / (cfg["loop"] if name == "loop" else n)
            res[name].append(per)
            log("round %d %-4s %.1f ms per job" % (r, name, per * 1000))
    shims, logf = make_shims(tmp / "count")
    ds = tmp / "count" / "ds"
    make_dataset(ds)
    ours(ds, cfg["calls"], env=env_for(shims))
    res["calls_per_job"] = {k: v / cfg["calls"]
                            for k, v in calls_by_tool(logf).items()
                            if k != "scancel"}
    for k in ("bare", "ours", "loop"):
        res[k + "_median"] = statistics.median(res[k])
    res["overhead_median"] = res["ours_median"] - res["bare_median"]
    return res


def wait_all_visible(ids, timeout=300.0) -> None:
    """Until accounting knows every job (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = sh(["sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o",
                "JobIDRaw"])
        if len(set(p.stdout.split()) & set(ids)) == len(ids):
            return
        time.sleep(1)


def commit_times(ds: Path) -> dict:
    """job id -> (end time, commit time) from the commits' records."""
    sys.path.insert(0, str(REPO))
    from datalad_hpcdata.jobs.record import parse_message
    out = {}
    log_ = sh(["git", "log", "--format=%H %ct"], cwd=ds, check=True).stdout
    for line in log_.splitlines():
        sha, ct = line.split()
        msg = sh(["git", "log", "-1", "--format=%B", sha], cwd=ds).stdout
        parsed = parse_message(msg)
        if parsed and parsed[1].get("end_time"):
            end = datetime.fromisoformat(parsed[1]["end_time"]).timestamp()
            out[str(parsed[1]["slurm_job_id"])] = (end, float(ct))
    return out


def bench_wait(tmp: Path, cfg: dict) -> dict:
    m = cfg["wait"]
    ds = tmp / "wait" / "ds"
    make_dataset(ds)
    jf = jobs_file(tmp / "wait" / "jobs.jsonl", m, hold=False,
                   sleeps=(0, 1, 2))
    p = sh([DATALAD, "-f", "json", "slurm-schedule", "--jobs-from", str(jf)],
           cwd=ds, env=env_for(), check=True)
    ids = [json.loads(line)["slurm_job_id"] for line in p.stdout.splitlines()
           if line.startswith("{")]
    SUBMITTED.update(ids)
    shims, logf = make_shims(tmp / "wait")
    head0 = sh(["git", "rev-parse", "HEAD"], cwd=ds).stdout.strip()
    t = time.time()
    p = sh([DATALAD, "-f", "json", "slurm-finish", "--wait", "--timeout",
            "3600"], cwd=ds, env=env_for(shims))
    took = time.time() - t
    recs = [json.loads(line) for line in p.stdout.splitlines()
            if line.startswith("{")]
    summary = recs[-1]
    commits = int(sh(["git", "rev-list", "--count", head0 + "..HEAD"],
                     cwd=ds).stdout)
    times = commit_times(ds)
    lag = [c - e for e, c in times.values()]
    ends = sorted(e - t for e, _ in times.values())
    return dict(
        jobs=m, exit=p.returncode, wall=took, polls=summary.get("polls"),
        queries=summary.get("slurm_queries"), calls=calls_by_tool(logf),
        commits=commits, committed_ok=sum(1 for r in recs
                                          if r.get("commit")),
        lag_median=statistics.median(lag) if lag else None,
        lag_max=max(lag) if lag else None, ends=ends,
        commits_at=sorted(c - t for _, c in times.values()),
        fixed_5s_polls=int(took // 5) + 1, summary=summary.get("message"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks")
    ap.add_argument("--report", type=Path,
                    help="only redo campaign.md/png from this JSON")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help="comma list of %s (default: all)" % ", ".join(
                        PHASES))
    args = ap.parse_args()
    if args.report:
        report(json.loads(args.report.read_text()), args.out)
        return 0
    cfg = QUICK if args.quick else FULL
    tmp = Path(tempfile.mkdtemp(prefix="hpcdata-campaign-"))
    phases = [p for p in args.phases.split(",") if p]
    res = dict(config=cfg, quick=args.quick, phases=phases,
               head=sh(["git", "rev-parse", "HEAD"],
                       cwd=REPO).stdout.strip(),
               machine=dict(host=platform.node(), cpus=os.cpu_count(),
                            python=platform.python_version(),
                            load=os.getloadavg()))
    me = sys.modules[__name__]
    steps = {"jobs-from": ("jobs_from", lambda: bench_jobs_from(tmp, cfg)),
             "wait": ("wait", lambda: bench_wait(tmp, cfg)),
             "array": ("array", lambda: bench_arrays.bench_array(me, tmp,
                                                                 cfg)),
             "altdir": ("altdir", lambda: bench_arrays.bench_altdir(
                 me, tmp, cfg))}
    try:
        for phase in phases:
            key, fn = steps[phase]
            log("phase %s" % phase)
            res[key] = fn()
            log("%s: %s" % (phase, json.dumps(res[key])[:600]))
    finally:
        cancel(SUBMITTED)
        res["machine"]["load_end"] = os.getloadavg()
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "campaign.json").write_text(json.dumps(res, indent=1))
    report(res, args.out)
    log("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
