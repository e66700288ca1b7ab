"""campaign.md and campaign.png from the results of tools/bench_campaign.py
(every phase that ran)."""

from __future__ import annotations

from pathlib import Path

import bench_arrays


def log(*a):
    print("[campaign report]", *a, flush=True)


def report(res: dict, out: Path) -> None:
    jf, w = res.get("jobs_from"), res.get("wait")
    end = res["machine"].get("load_end")
    lines = [
        "# Campaign benchmarks (tools/bench_campaign.py)", "",
        "One run on the local single-node Slurm 22.05 cluster (host %s, %s "
        "CPUs, Python %s, load %s at the start%s), commit `%s`%s." % (
            res["machine"]["host"], res["machine"]["cpus"],
            res["machine"]["python"],
            " ".join("%.1f" % x for x in res["machine"]["load"]),
            ", %s at the end" % " ".join("%.1f" % x for x in end)
            if end else "", res["head"][:10],
            " (quick mode: small sizes)" if res.get("quick") else "")]
    if jf:
        lines += jobs_from_lines(jf)
    if w:
        lines += wait_lines(w)
    lines += bench_arrays.report_lines(res)
    (out / "campaign.md").write_text("\n".join(lines) + "\n")
    plot(res, out)


def jobs_from_lines(jf: dict) -> list[str]:
    ms = 1000
    return [
        "", "## %d jobs from `--jobs-from` in one call" % jf["jobs"], "",
        "Held jobs (`sbatch --hold`, cancelled right after), %d rounds "
        "interleaved, medians of the per-job cost." % len(jf["bare"]), "",
        "| how | per job (ms) | rounds (ms) |", "|---|---:|---|",
        "| bare `sbatch` loop | %.1f | %s |" % (
            jf["bare_median"] * ms,
            ", ".join("%.1f" % (x * ms) for x in jf["bare"])),
        "| one `datalad slurm-schedule --jobs-from` | %.1f | %s |" % (
            jf["ours_median"] * ms,
            ", ".join("%.1f" % (x * ms) for x in jf["ours"])),
        "| loop of `datalad slurm-schedule` (%d jobs) | %.1f | %s |" % (
            jf["loop_jobs"], jf["loop_median"] * ms,
            ", ".join("%.1f" % (x * ms) for x in jf["loop"])), "",
        "Overhead of `--jobs-from` over bare `sbatch`: **%.1f ms per job** "
        "(target <= 25 ms). Slurm calls per job: %s. Jobs not submitted "
        "(Slurm refused or timed out): %s." % (
            jf["overhead_median"] * ms, ", ".join(
                "%s %.2f" % kv for kv in sorted(jf["calls_per_job"].items())),
            ", ".join("%d" % x["count"] for x in jf["not_submitted"]))]


def wait_lines(w: dict) -> list[str]:
    return [
        "", "## `slurm-finish --wait` on %d jobs" % w["jobs"], "",
        "Jobs of 0, 1 or 2 s, scheduled with `--jobs-from`, then one "
        "`datalad slurm-finish --wait` (default poll interval 5:180 s).", "",
        "| figure | value |", "|---|---:|",
        "| wall time of `--wait` | %.1f s |" % w["wall"],
        "| exit status | %d |" % w["exit"],
        "| polls (one batched query each) | %s |" % w["polls"],
        "| Slurm calls | %s |" % ", ".join(
            "%s %d" % kv for kv in sorted(w["calls"].items())),
        "| a fixed 5 s poller would have polled | %d times |"
        % w["fixed_5s_polls"],
        "| commits made / jobs | %d / %d |" % (w["commits"], w["jobs"]),
        "| job end -> its commit, median / max | %.1f / %.1f s |" % (
            w["lag_median"] or 0, w["lag_max"] or 0), "",
        "Summary record: %s" % w["summary"]]


def plot(res: dict, out: Path) -> None:
    """campaign.png: one panel per phase that ran."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no campaign.png")
        return
    panels = [(k, f) for k, f in (("jobs_from", _jobs_from_panel),
                                  ("wait", _wait_panel),
                                  ("array", bench_arrays.array_panel),
                                  ("altdir", bench_arrays.altdir_panel))
              if res.get(k)]
    if not panels:
        return
    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, cols, figsize=(11, 4 * rows),
                             squeeze=False)
    for ax, (key, fn) in zip(axes.flat, panels):
        fn(ax, res[key])
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "campaign.png", dpi=110)


def _jobs_from_panel(a1, jf: dict) -> None:
    ms = 1000
    names = ["bare sbatch", "--jobs-from", "loop of CLI"]
    vals = [jf[k + "_median"] * ms for k in ("bare", "ours", "loop")]
    a1.bar(names, vals, color=["grey", "tab:blue", "tab:orange"])
    a1.set_yscale("log")
    a1.set_ylabel("ms per job (median, log scale)")
    a1.set_title("%d jobs in one call" % jf["jobs"])
    for i, v in enumerate(vals):
        a1.text(i, v, "%.0f" % v, ha="center", va="bottom")


def _wait_panel(a2, w: dict) -> None:
    a2.step(w["ends"], range(1, len(w["ends"]) + 1), where="post",
            label="jobs ended")
    a2.step(w["commits_at"], range(1, len(w["commits_at"]) + 1),
            where="post", label="jobs committed")
    a2.set_xlabel("seconds since slurm-finish --wait started")
    a2.set_ylabel("jobs")
    a2.set_title("--wait on %d jobs: %s polls, %s Slurm calls" % (
        w["jobs"], w["polls"], sum(w["calls"].values())))
    a2.legend()
