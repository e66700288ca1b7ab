"""Plot tools/bench.py results: cost vs dataset size (to 1M files), cost vs
open jobs.

    python tools/bench_plot.py docs/benchmarks/results.json [out.png]

Needs matplotlib (``pip install matplotlib``; the ``bench`` extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLORS = {"floor": "#888888", "api": "#1f77b4", "cli": "#2ca02c",
          "peer": "#d62728"}


def plot(R: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = R["config"]["sizes"]
    S = R["sizes"]
    fig, grid = plt.subplots(2, 2, figsize=(14, 10))
    axes = [grid[0][0], grid[0][1], grid[1][1], grid[1][0]]
    # the size axis spans the sizes measured, at least to 1M files
    xlim = (min(sizes) / 1.6, max(max(sizes), 1000000) * 1.6)

    def series(var, key):
        xs, ys = [], []
        for n in sizes:
            rec = S[str(n)].get(var)
            if rec and rec.get(key):
                xs.append(n)
                ys.append(rec[key]["median"])
        return xs, ys

    def size_panel(ax, lines, title, ylabel="seconds per job (median)"):
        for var, key, style, label in lines:
            xs, ys = series(var, key)
            if xs:
                ax.plot(xs, ys, style, marker="o", color=COLORS[var],
                        label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(*xlim)
        ax.set_xlabel("files tracked by the dataset")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)

    size_panel(axes[0], (
        ("floor", "sbatch_s", ":", "bare sbatch (floor)"),
        ("api", "schedule_s", "-", "API"),
        ("cli", "schedule_s", "-", "CLI"),
        ("peer", "schedule_s", "-", "peer CLI")), "slurm-schedule, per job")
    size_panel(axes[1], (
        ("floor", "commit_plumbing_s", ":", "1-file plumbing commit (floor)"),
        ("api", "finish_many_per_job_s", "-", "API, many jobs / call"),
        ("cli", "finish_many_per_job_s", "-", "CLI, many jobs / call"),
        ("peer", "finish_many_per_job_s", "-", "peer, many jobs / call"),
        ("api", "finish_single_s", "--", "API, one job at a time"),
        ("cli", "finish_single_s", "--", "CLI, one job at a time"),
        ("peer", "finish_single_s", "--", "peer, one job at a time")),
        "slurm-finish, per job")
    size_panel(axes[3], (
        ("floor", "sacct_1_s", ":", "one sacct call (floor)"),
        ("floor", "annex_add_4_s", "-.", "git annex add, 4 files (floor)"),
        ("floor", "annex_add_4_commit_s", "--",
         "same + git-annex branch commit (not done by finish)"),
        ("api", "list_batch_s", "-", "API"),
        ("cli", "list_batch_s", "-", "CLI"),
        ("peer", "list_batch_s", "-", "peer CLI")),
        "slurm-finish --list-open-jobs (jobs of one batch open), "
        "and floors", ylabel="seconds per call (median)")

    ax = axes[2]
    L = R.get("list", {}).get("points", {})
    if L:
        ks = sorted(L, key=int)
        x = [int(k) for k in ks]
        for var, key, style, label in (
                ("floor", "floor_sacct_batched_s", ":",
                 "one batched sacct (floor)"),
                ("api", "api_s", "-", "API"),
                ("cli", "cli_s", "-", "CLI"),
                ("peer", "peer_s", "-", "peer CLI")):
            pts = [(xi, L[k][key]["median"]) for xi, k in zip(x, ks)
                   if L[k].get(key)]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style,
                        marker="o", color=COLORS[var], label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("open jobs")
    ax.set_ylabel("seconds per call (median)")
    ax.set_title("slurm-finish --list-open-jobs")
    ax.grid(True, which="both", alpha=0.3)

    M = R.get("machine", {})
    fig.suptitle("datalad-hpcdata %s vs datalad-slurm %s vs bare sbatch — "
                 "%s CPUs, %s, %s" % (
                     M.get("datalad_hpcdata"),
                     (M.get("peer") or {}).get("datalad_slurm", "(no peer)"),
                     M.get("cpus"), M.get("slurm"), R.get("finished", "")),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    src = Path(sys.argv[1])
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else src.with_suffix(".png")
    plot(json.loads(src.read_text()), dst)
    print(dst)
