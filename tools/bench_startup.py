#!/usr/bin/env python
"""Command-line start-up of our commands, against DataLad's own.

Every call is a real ``datalad`` process in a small dataset with no open
jobs (so Slurm is not asked), measured for two checkouts of the package in
the same period, interleaved (A = a baseline revision, default the merge
base with main; B = this checkout):

* wall-clock and CPU time (median of ``--reps``);
* how many command parsers DataLad built (its level-5 log);
* what importing this package costs the call: the ``datalad_hpcdata``
  modules it imports (``-X importtime``), imported again in a fresh
  interpreter that has what DataLad's command line has loaded before it
  loads extensions (CPU time, median of 5).

References: ``datalad --version`` (interpreter, DataLad and its top-level
parser: the floor of any call) and ``datalad wtf -S python`` (one of
DataLad's own commands).  Both checkouts run with cached bytecode
(``PYTHONPYCACHEPREFIX``) and one warm-up call each, as after a pip
install.  Results: ``startup.json``, ``startup.md``, ``startup.png``.

    python tools/bench_startup.py                       # docs/benchmarks/
    python tools/bench_startup.py --reps 5 --out /tmp/s
    python tools/bench_startup.py --report docs/benchmarks/startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATALAD = str(Path(sys.executable).parent / "datalad")

CALLS = [
    ("floor", "datalad --version", ["--version"]),
    ("datalad", "datalad wtf -S python", ["wtf", "-S", "python"]),
    ("finish", "slurm-finish", ["slurm-finish"]),
    ("finish", "slurm-finish -l", ["slurm-finish", "-l"]),
    ("finish", "slurm-finish --list-open-jobs",
     ["slurm-finish", "--list-open-jobs"]),
    ("schedule", "slurm-schedule --dry-run basic ...",
     ["slurm-schedule", "--dry-run", "basic", "-o", "out", "sbatch",
      "code/job.sh", "{outputs}"]),
    ("reschedule", "slurm-reschedule --report",
     ["slurm-reschedule", "--report"]),
]


def log(*a):
    print("[startup %6.1fs]" % (time.monotonic() - T0), *a, flush=True)


T0 = time.monotonic()


def git(*args, cwd=REPO):
    return subprocess.run(["git", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


def export(rev: str, dest: Path) -> None:
    """The package as of `rev`, in `dest` (for PYTHONPATH)."""
    dest.mkdir(parents=True)
    tar = subprocess.run(["git", "archive", rev, "datalad_hpcdata"],
                         cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)


def make_dataset(path: Path, env: dict) -> None:
    subprocess.run([DATALAD, "create", str(path)], env=env, check=True,
                   capture_output=True)
    (path / "code").mkdir()
    (path / "code" / "job.sh").write_text("#!/bin/sh\necho $1 > $1\n")
    subprocess.run([DATALAD, "save", "-m", "job"], cwd=path, env=env,
                   check=True, capture_output=True)


def timed(argv, cwd, env) -> tuple[float, float]:
    """(wall s, CPU s) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime -
                                                 before.ru_stime)
    return wall, cpu


def parsers_built(argv, cwd, env) -> int:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                          env=dict(env, DATALAD_LOG_LEVEL="5"))
    return len(re.findall(r"Importing module \S+", proc.stderr))


PRELOAD = ("import datalad.cli.main, datalad.cli.parser, "
           "datalad.support.entrypoints, datalad.interface.base")


def our_import_ms(argv, cwd, env, reps: int = 5) -> float:
    """CPU time of importing the package modules this call imports, in a
    fresh interpreter that has loaded what DataLad's command line has
    before it loads extensions (median of `reps`)."""
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                          env=dict(env, PYTHONPROFILEIMPORTTIME="1"))
    # modules DataLad loads with importlib (the package for its entry point,
    # the command's module) are not in -X importtime's output
    mods = []
    cmd = next((a for a in argv[1:] if a.startswith("slurm-")), None)
    if cmd:
        mods += ["datalad_hpcdata",
                 "datalad_hpcdata.commands." + cmd[len("slurm-"):]]
    for m in re.finditer(r"^import time:.*\| +(datalad_hpcdata\S*)$",
                         proc.stderr, re.M):
        if m.group(1) not in mods:
            mods.append(m.group(1))
    if not mods:
        return 0.0
    code = "%s\nimport time\nt = time.process_time()\n%s\n" \
        "print(time.process_time() - t)" % (
            PRELOAD, "\n".join("import %s" % m for m in mods))
    times = []
    for _ in range(reps):
        # (not in the checkout: "-c" puts the current directory first)
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                             capture_output=True, text=True, check=True)
        times.append(float(out.stdout) * 1000)
    return statistics.median(times)


def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="hpcdata-startup-"))
    base = args.baseline or git("merge-base", "HEAD", "main")
    export(base, tmp / "A")
    variants = {"A": str(tmp / "A"), "B": str(REPO)}
    env0 = {k: v for k, v in os.environ.items()
            if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env0["PATH"] = "%s:%s" % (Path(DATALAD).parent, env0.get("PATH", ""))
    envs = {k: dict(env0, PYTHONPATH=v,
                    PYTHONPYCACHEPREFIX=str(tmp / ("pycache-" + k)))
            for k, v in variants.items()}
    ds = tmp / "ds"
    make_dataset(ds, envs["B"])
    res = dict(baseline=base, head=git("rev-parse", "HEAD"),
               reps=args.reps, calls=[], machine=dict(
                   host=platform.node(), python=platform.python_version(),
                   cpus=os.cpu_count(), load=os.getloadavg()))
    for group, label, extra in CALLS:
        argv = [DATALAD] + extra
        rec = dict(group=group, label=label, argv=extra)
        for k, env in envs.items():
            timed(argv, ds, env)        # warm-up: bytecode, caches
            rec[k] = dict(parsers=parsers_built(argv, ds, env),
                          import_ms=our_import_ms(argv, ds, env),
                          wall=[], cpu=[])
        for i in range(args.reps):
            for k in (("A", "B") if i % 2 == 0 else ("B", "A")):
                wall, cpu = timed(argv, ds, envs[k])
                rec[k]["wall"].append(wall)
                rec[k]["cpu"].append(cpu)
        for k in envs:
            rec[k]["wall_median"] = statistics.median(rec[k]["wall"])
            rec[k]["cpu_median"] = statistics.median(rec[k]["cpu"])
        log("%-38s A %.3f s  B %.3f s  parsers %d -> %d" % (
            label, rec["A"]["wall_median"], rec["B"]["wall_median"],
            rec["A"]["parsers"], rec["B"]["parsers"]))
        res["calls"].append(rec)
    return res


def report(res: dict, out: Path) -> None:
    calls = res["calls"]
    ref = next(c for c in calls if c["group"] == "datalad")["B"]
    floor = next(c for c in calls if c["group"] == "floor")["B"]
    lines = [
        "# Command-line start-up (tools/bench_startup.py)", "",
        "One run, %d interleaved repetitions per call, medians. "
        "A = baseline `%s`, B = `%s`. Every call is a real `datalad` "
        "process in a small dataset with no open jobs (Slurm is not "
        "asked). Host %s, Python %s, %s CPUs, load %s at the start." % (
            res["reps"], res["baseline"][:10], res["head"][:10],
            res["machine"]["host"], res["machine"]["python"],
            res["machine"]["cpus"],
            " ".join("%.1f" % x for x in res["machine"]["load"])), "",
        "| call | wall A (s) | wall B (s) | B/A | CPU A (s) | CPU B (s) "
        "| B - `datalad wtf -S python`, wall / CPU (s) "
        "| parsers built A → B "
        "| our imports A → B (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in calls:
        a, b = c["A"], c["B"]
        lines.append(
            "| `%s` | %.3f | %.3f | %.2f | %.3f | %.3f | %+.3f / %+.3f "
            "| %d → %d | %.0f → %.0f |" % (
                c["label"], a["wall_median"], b["wall_median"],
                b["wall_median"] / a["wall_median"], a["cpu_median"],
                b["cpu_median"], b["wall_median"] - ref["wall_median"],
                b["cpu_median"] - ref["cpu_median"], a["parsers"],
                b["parsers"], a["import_ms"], b["import_ms"]))
    lines += [
        "", "Reference: `datalad wtf -S python` %.3f s wall, %.3f s CPU; "
        "floor `datalad --version` %.3f s wall." % (
            ref["wall_median"], ref["cpu_median"], floor["wall_median"]),
        "CPU time (user + system of the process and its children) depends "
        "far less on the load of the shared machine than wall time does.",
        "\"our imports\": CPU time of importing the `datalad_hpcdata` "
        "modules the call imports (and everything they pull in, e.g. "
        "`datalad.core.local.run`), in a fresh interpreter that has loaded "
        "what DataLad's command line loads before extensions; median of "
        "5."]
    (out / "startup.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no startup.png")
        return
    labels = [c["label"] for c in calls]
    ys = range(len(calls))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(calls) + 1.5),
                             sharey=True)
    for ax, key, what in ((axes[0], "wall_median", "wall-clock"),
                          (axes[1], "cpu_median", "CPU")):
        ax.barh([y + 0.2 for y in ys], [c["A"][key] for c in calls],
                height=0.4, label="A (baseline %s)" % res["baseline"][:7])
        ax.barh([y - 0.2 for y in ys], [c["B"][key] for c in calls],
                height=0.4, label="B (%s)" % res["head"][:7])
        ax.axvline(ref[key], color="grey", linestyle="--",
                   label="datalad wtf -S python (B)")
        ax.set_xlabel("%s seconds per call (median)" % what)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_yticks(list(ys))
    axes[0].set_yticklabels(labels)
    axes[0].invert_yaxis()
    fig.suptitle("datalad-hpcdata command-line start-up")
    fig.tight_layout()
    fig.savefig(out / "startup.png", dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--baseline", help="git revision for A (default: the "
                    "merge base of HEAD and main)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks")
    ap.add_argument("--report", type=Path,
                    help="only redo startup.md/png from this JSON")
    args = ap.parse_args()
    if args.report:
        res = json.loads(args.report.read_text())
    else:
        res = run(args)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "startup.json").write_text(json.dumps(res, indent=1))
    report(res, args.out)
    log("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
