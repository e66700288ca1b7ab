#!/usr/bin/env python3
"""Compare benchmark results.json files of two revisions, figure by figure.

    python tools/bench_compare.py --before A1.json A2.json \\
        --after B1.json B2.json --out docs/benchmarks --name layout-ab

Every numeric timing or memory figure that both sides' results.json have is
paired: a measurement record (a dict with a numeric "median", as
tools/bench.py writes them) counts with its median, a bare number counts when
its key ends in "_s" (seconds) or "_mib" (MiB).  Figures are named by their
path in the JSON tree ("sizes/1000/api/schedule_s"); nothing else about the
structure is assumed.  Per side the figure's value is the median over that
side's runs; the per-run spread is the min-max of the runs' values.

Verdict of a figure (lower is better for time and memory):

* "within noise" when after/before lies within +-TOL (default 10 %) of 1, or
  inside the combined spread of both sides: the ratio band
  [(min_b - (max_a - med_a)) / med_b, (max_b + (med_a - min_a)) / med_b],
  which holds the ratio exactly when the two sides' run ranges overlap;
* otherwise "worse" (ratio > 1) or "better" (ratio < 1).

Writes OUT/NAME.json (everything, per run and per figure), OUT/NAME.md
(header with commits, run order, dates, load, machine, sizes; the table) and
OUT/NAME.png (ratio per figure with its noise band; needs matplotlib).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys
from pathlib import Path

UNITS = (("_s", "s"), ("_mib", "MiB"))
# subtrees and keys that are not costs of the code under test
EXCLUDE = ("config", "machine", "targets", "notes", "layoutab", "run",
           "duration_s", "fixture_build_s", "load_*")
TOL = 0.10


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def unit_of(key: str):
    for suffix, unit in UNITS:
        if key.endswith(suffix):
            return unit
    return None


def figures(tree, exclude=EXCLUDE) -> dict:
    """{path: (value, unit)} of every timing/memory leaf of a results tree."""
    found = {}

    def walk(node, path):
        if isinstance(node, dict):
            if _num(node.get("median")) and path:
                unit = unit_of(path[-1])
                if unit:
                    found["/".join(path)] = (float(node["median"]), unit)
                return
            for k, v in node.items():
                if any(fnmatch.fnmatchcase(str(k), p) for p in exclude):
                    continue
                walk(v, path + [str(k)])
        elif _num(node) and path:
            unit = unit_of(path[-1])
            if unit:
                found["/".join(path)] = (float(node), unit)

    walk(tree, [])
    return found


def side_stats(values):
    return {"median": statistics.median(values), "min": min(values),
            "max": max(values), "runs": values}


def verdict(b: dict, a: dict, tol=TOL):
    """(ratio, band, verdict) of one figure; b/a from side_stats."""
    if b["median"] == 0:
        return None, None, "n/a"
    ratio = a["median"] / b["median"]
    lo = (b["min"] - (a["max"] - a["median"])) / b["median"]
    hi = (b["max"] + (a["median"] - a["min"])) / b["median"]
    eps = 1e-9   # 1.1 / 1.0 - 1 is 0.10000000000000009
    if abs(ratio - 1) <= tol + eps or lo - eps <= ratio <= hi + eps:
        v = "within noise"
    else:
        v = "worse" if ratio > 1 else "better"
    return ratio, [lo, hi], v


def _load(R):
    for rec in [R] + [v for v in R.values() if isinstance(v, dict)]:
        if "load_start" in rec or "load_end" in rec:
            return rec.get("load_start"), rec.get("load_end")
    return None, None


def run_info(path: Path, R: dict, side: str) -> dict:
    M = R.get("machine") or {}
    ls, le = _load(R)
    cfg = R.get("config") or {}
    return {"file": str(path), "side": side,
            "commit": M.get("datalad_hpcdata_commit"),
            "started": R.get("started"), "finished": R.get("finished"),
            "duration_s": R.get("duration_s"),
            "load_start": ls, "load_end": le,
            "host": M.get("host"), "cpus": M.get("cpus"),
            "cpu": M.get("cpu"), "slurm": M.get("slurm"),
            "sizes": cfg.get("sizes"), "open_jobs": cfg.get("open_jobs"),
            "quick": cfg.get("quick")}


def compare(before: list, after: list, tol=TOL) -> dict:
    """before/after: lists of (path, results dict)."""
    runs = [run_info(p, R, "before") for p, R in before] + \
        [run_info(p, R, "after") for p, R in after]
    fb = [figures(R) for _, R in before]
    fa = [figures(R) for _, R in after]
    names_b = set().union(*fb) if fb else set()
    names_a = set().union(*fa) if fa else set()
    rows = []
    for name in sorted(names_b & names_a, key=_sort_key):
        vb = [f[name][0] for f in fb if name in f]
        va = [f[name][0] for f in fa if name in f]
        b, a = side_stats(vb), side_stats(va)
        ratio, band, v = verdict(b, a, tol)
        unit = (fb[0].get(name) or next(f[name] for f in fb if name in f))[1]
        rows.append({"figure": name, "unit": unit, "before": b, "after": a,
                     "ratio": ratio, "noise_band": band, "verdict": v})
    order = sorted(runs, key=lambda r: r["started"] or "")
    return {"tolerance": tol, "runs": runs,
            "run_order": [r["side"] for r in order],
            "only_before": sorted(names_b - names_a),
            "only_after": sorted(names_a - names_b),
            "figures": rows}


def _sort_key(name):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p)
            for p in name.split("/")]


def _fmt(x, unit):
    if x is None:
        return "-"
    if unit == "s":
        return "%.1f ms" % (x * 1e3) if x < 1 else "%.2f s" % x
    return "%.1f %s" % (x, unit)


def _load_s(x):
    return "-" if not x else "/".join("%.2f" % v for v in x)


def markdown(C: dict, name: str) -> str:
    runs = C["runs"]
    order = sorted(runs, key=lambda r: r["started"] or "")
    commits = {s: sorted({str(r["commit"]) for r in runs if r["side"] == s})
               for s in ("before", "after")}
    r0 = runs[0] if runs else {}
    L = ["# %s: before/after comparison" % name, "",
         "* before: commit %s; after: commit %s" % (
             ", ".join(commits["before"]), ", ".join(commits["after"])),
         "* run order: %s" % " ".join(
             "%s(%s)" % (r["side"][0].upper(), r["side"]) for r in order),
         "* machine: %s, %s CPUs (nproc), %s; %s" % (
             r0.get("host"), r0.get("cpus"), r0.get("cpu"), r0.get("slurm")),
         "* sizes: %s files; open jobs: %s" % (r0.get("sizes"),
                                               r0.get("open_jobs")),
         "", "| # | side | commit | started (UTC) | duration | load 1/5/15 "
         "start | load 1/5/15 end | file |", "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(order, 1):
        L.append("| %d | %s | %s | %s | %s | %s | %s | %s |" % (
            i, r["side"], r["commit"], r["started"],
            _fmt(r["duration_s"], "s"), _load_s(r["load_start"]),
            _load_s(r["load_end"]), Path(r["file"]).parent.name))
    L += ["", "**Noise.** Per side a figure is the median of the runs' "
          "values (each run's value is itself a median of repeated "
          "measurements where the benchmark repeats them); \"spread\" is the "
          "min-max over the runs. A figure is *within noise* when "
          "after/before is within +-%d %% of 1 or inside the two sides' "
          "combined spread, the band [(min_b - (max_a - med_a)) / med_b, "
          "(max_b + (med_a - min_a)) / med_b] (i.e. the two sides' run "
          "ranges overlap); otherwise *worse* (> 1) or *better* (< 1). "
          "Lower is better for every figure (times and memory)."
          % round(C["tolerance"] * 100), ""]
    for note in C.get("notes") or []:
        L += ["* " + note]
    if C.get("notes"):
        L.append("")
    counts = {}
    for row in C["figures"]:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    L.append("%d figures paired: %s." % (len(C["figures"]), ", ".join(
        "%d %s" % (n, v) for v, n in sorted(counts.items()))))
    L += ["", "| figure | before median | after median | after/before | "
          "before spread | after spread | noise band | verdict |",
          "|---|---|---|---|---|---|---|---|"]
    for row in C["figures"]:
        b, a, u = row["before"], row["after"], row["unit"]
        band = row["noise_band"]
        L.append("| %s | %s | %s | %s | %s-%s | %s-%s | %s | %s |" % (
            row["figure"], _fmt(b["median"], u), _fmt(a["median"], u),
            "-" if row["ratio"] is None else "%.2f" % row["ratio"],
            _fmt(b["min"], u), _fmt(b["max"], u), _fmt(a["min"], u),
            _fmt(a["max"], u),
            "-" if band is None else "%.2f-%.2f" % tuple(band),
            row["verdict"]))
    for key, label in (("only_before", "before"), ("only_after", "after")):
        if C[key]:
            L += ["", "Only in %s (not compared): %s" % (
                label, ", ".join(C[key]))]
    return "\n".join(L) + "\n"


def plot(C: dict, path: Path, name: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in C["figures"] if r["ratio"] is not None]
    n = len(rows)
    fig, ax = plt.subplots(figsize=(9, max(3, 0.22 * n + 1.2)))
    ys = list(range(n))[::-1]
    tol = C["tolerance"]
    ax.axvspan(1 - tol, 1 + tol, color="0.88", label="+-%d %%" % (tol * 100))
    colors = {"within noise": "tab:gray", "worse": "tab:red",
              "better": "tab:green"}
    for y, r in zip(ys, rows):
        lo, hi = r["noise_band"]
        ax.plot([lo, hi], [y, y], color="tab:blue", lw=3, alpha=0.35)
        ax.plot(r["ratio"], y, "o", color=colors.get(r["verdict"], "k"),
                ms=4)
    ax.plot([], [], color="tab:blue", lw=3, alpha=0.35,
            label="combined run spread")
    for v, c in colors.items():
        ax.plot([], [], "o", color=c, ms=4, label=v)
    ax.axvline(1, color="k", lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([r["figure"] for r in rows], fontsize=6)
    ax.set_xlabel("after / before (median over runs; < 1 is faster)")
    ax.set_title(name)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", nargs="+", required=True, metavar="JSON")
    ap.add_argument("--after", nargs="+", required=True, metavar="JSON")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="compare")
    ap.add_argument("--tolerance", type=float, default=TOL)
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--note", action="append", default=[],
                    help="a line for the md's header (repeatable)")
    args = ap.parse_args(argv)

    def read(files):
        return [(Path(f), json.loads(Path(f).read_text())) for f in files]

    C = compare(read(args.before), read(args.after), args.tolerance)
    C["name"] = args.name
    C["notes"] = args.note
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / (args.name + ".json")).write_text(json.dumps(C, indent=1) + "\n")
    (out / (args.name + ".md")).write_text(markdown(C, args.name))
    if not args.no_plot:
        try:
            plot(C, out / (args.name + ".png"), args.name)
        except ImportError as e:
            print("no plot (%s); pip install matplotlib" % e,
                  file=sys.stderr)
    worse = [r["figure"] for r in C["figures"] if r["verdict"] == "worse"]
    print("%d figures paired, %d worse beyond noise%s" % (
        len(C["figures"]), len(worse),
        (": " + ", ".join(worse)) if worse else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
