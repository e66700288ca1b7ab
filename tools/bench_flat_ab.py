#!/usr/bin/env python
"""finish at 10k vs 1M files, interleaved: the same load for both sizes.

tools/bench.py measures one size after the other; on a shared machine the
load changes between them.  This runs the API finish on the two cached
fixtures (tools/bench_fixtures.py) in alternation -- K jobs per call and one
job per call -- and the finish's ``git annex add`` alone (4 and 80 files).

    python tools/bench_flat_ab.py [--rounds 4] [--out docs/benchmarks]

Writes flat-ab.json, flat-ab.md and flat-ab.png.  Only jobs it submitted
are ever waited for; they end by themselves (a few seconds each).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench  # noqa: E402
import bench_fixtures as fx  # noqa: E402

SIZES = (10000, 1000000)


def annex_add_once(ds: Path, tag: str, n: int) -> float:
    from datalad_hpcdata.dataset.scratch import annex_add
    d = ds / "out" / "ab" / tag
    d.mkdir(parents=True)
    files = []
    for j in range(n):
        (d / ("f%d.txt" % j)).write_text("ab %s %d %f\n" % (tag, j, time.time()))
        files.append("out/ab/%s/f%d.txt" % (tag, j))
    t0 = time.perf_counter()
    annex_add(str(ds), files, str(ds / ".git" / "ab.index"))
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--singles", type=int, default=2)
    ap.add_argument("--cache", default="/dev/shm/flat-bench-cache")
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "benchmarks"))
    ap.add_argument("--keep-cache", action="store_true",
                    help="keep the datasets of %s files and more on tmpfs "
                    "after the run (removed by default: memory)"
                    % format(fx.BIG, ","))
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    ds = {n: fx.get_dataset(cache, n)[0] for n in SIZES}
    R = {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
         "load_start": os.getloadavg(), "config": vars(args),
         "sizes": {str(n): {"finish_many_per_job_s": [],
                            "finish_single_s": [], "annex_add_4_s": [],
                            "annex_add_80_s": []} for n in SIZES}}
    api = {n: bench.Api(ds[n]) for n in SIZES}
    for n in SIZES:
        api[n].finish()             # warm-up; nothing open
        dt, jid, _ = api[n].schedule(api[n].next_out("w"))
        bench.wait_done([jid])
        api[n].finish()             # one-time costs (index split)
    try:
        for r in range(args.rounds):
            ids = {n: [] for n in SIZES}
            for n in SIZES:
                for _ in range(args.batch):
                    ids[n].append(api[n].schedule(api[n].next_out("m"))[1])
            bench.wait_done(ids[SIZES[0]] + ids[SIZES[1]])
            for n in (SIZES if r % 2 == 0 else SIZES[::-1]):
                dt, _, k = api[n].finish()
                assert k == args.batch, (n, k)
                R["sizes"][str(n)]["finish_many_per_job_s"].append(
                    dt / args.batch)
            for s in range(args.singles):
                one = {n: api[n].schedule(api[n].next_out("s"))[1]
                       for n in SIZES}
                bench.wait_done(list(one.values()))
                for n in (SIZES if s % 2 == 0 else SIZES[::-1]):
                    dt, _, k = api[n].finish()
                    assert k == 1, (n, k)
                    R["sizes"][str(n)]["finish_single_s"].append(dt)
            for k in (4, 80):
                for n in SIZES:
                    R["sizes"][str(n)]["annex_add_%d_s" % k].append(
                        annex_add_once(ds[n], "%d-%d" % (r, k), k))
    finally:
        for n in SIZES:
            shutil.rmtree(ds[n] / "out" / "ab", ignore_errors=True)
            fx.reset_dataset(ds[n])
        if not args.keep_cache:
            for p in fx.drop_big(cache, SIZES):
                print("removed %s (tmpfs memory; --keep-cache keeps it)" % p)
    R["load_end"] = os.getloadavg()
    R["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    for rec in R["sizes"].values():
        for key in list(rec):
            rec[key] = {"median": statistics.median(rec[key]),
                        "samples": [round(x, 4) for x in rec[key]]}
    out = Path(args.out)
    (out / "flat-ab.json").write_text(json.dumps(R, indent=1) + "\n")
    labels = (("finish_many_per_job_s", "finish, %d jobs per call, per job"
               % args.batch), ("finish_single_s", "finish, one job per call"),
              ("annex_add_4_s", "git annex add, 4 files (finish's way)"),
              ("annex_add_80_s", "git annex add, 80 files (finish's way)"))
    a, b = (R["sizes"][str(n)] for n in SIZES)
    # (linked from large-datasets.md and admin.md, not in a toctree)
    md = ["---", "orphan: true", "---", "",
          "# finish at 10,000 vs 1,000,000 files, interleaved", "",
          "Generated by `python tools/bench_flat_ab.py` (%s to %s UTC), one "
          "run: the two sizes measured in alternation (API, %d rounds), so "
          "both see the same load; load average (1/5/15 min) %s at the "
          "start, %s at the end." % (
              R["started"], R["finished"], args.rounds,
              " / ".join("%.1f" % x for x in R["load_start"]),
              " / ".join("%.1f" % x for x in R["load_end"])), "",
          "| measure | 10,000 files | 1,000,000 files | 1M / 10k |",
          "|---|---|---|---|"]
    for key, label in labels:
        md.append("| %s | %s | %s | %.2f× |" % (
            label, bench.fmt(a[key]["median"]), bench.fmt(b[key]["median"]),
            b[key]["median"] / a[key]["median"]))
    (out / "flat-ab.md").write_text("\n".join(md) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 4))
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], [a[k]["median"] for k, _ in labels],
               0.4, label="10,000 files")
        ax.bar([x + 0.2 for x in xs], [b[k]["median"] for k, _ in labels],
               0.4, label="1,000,000 files")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([lab for _, lab in labels], fontsize=7)
        ax.set_ylabel("seconds (median)")
        ax.set_title("finish, 10k vs 1M files, interleaved (API)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "flat-ab.png", dpi=100)
    except ImportError:
        pass
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
