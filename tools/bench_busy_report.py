"""Tables, targets and plot for tools/bench_busy.py results.

    python tools/bench_busy.py --report docs/benchmarks/busy.json

writes busy.json (with the targets), busy.md and busy.png (matplotlib, the
``bench`` extra; the plot is skipped with a note if it is missing).
"""

from __future__ import annotations

import json
from pathlib import Path

LIMIT_RATIO = 1.3
LIMIT_LIST_S = 1.0


def med(x):
    return x["median"] if isinstance(x, dict) and "median" in x else x


def fmt(x, unit="s"):
    if x is None:
        return "–"
    if unit == "s":
        return "%.1f ms" % (x * 1000) if x < 1 else "%.2f s" % x
    if unit == "x":
        return "%.2f×" % x
    return "%s %s" % (x, unit)


def figures(R: dict) -> list[tuple[str, str, object, object]]:
    """(figure, variant, empty value, busy value) in seconds."""
    E, Bz = R["phases"].get("empty", {}), R["phases"].get("busy", {})
    rows = []

    def add(name, var, get):
        try:
            e = get(E)
        except (KeyError, TypeError):
            e = None
        try:
            b = get(Bz)
        except (KeyError, TypeError):
            b = None
        if e is not None or b is not None:
            rows.append((name, var, e, b))
    n = R["config"]["batch"]
    add("bare sbatch (floor)", "floor", lambda P: med(P["floor_sbatch_s"]))
    for var in ("api", "cli", "peer"):
        add("schedule, per job", var,
            lambda P, v=var: med(P["work"][v]["schedule_s"]))
    for var in ("api", "cli", "peer"):
        # what the extension adds to what Slurm itself costs per submission
        add("schedule minus bare sbatch, per job", var,
            lambda P, v=var: med(P["work"][v]["schedule_s"]) -
            med(P["floor_sbatch_s"]))
    for var in ("api", "cli", "peer"):
        add("finish %d jobs in one call" % n, var,
            lambda P, v=var: P["work"][v]["finish_batch"]["wall_s"])
    k = R["config"]["open_jobs"]
    add("one sacct for %d ids (floor)" % k, "floor",
        lambda P: med(P["list"]["floor_sacct_s"]))
    add("list %d open jobs" % k, "api", lambda P: med(P["list"]["api_s"]))
    add("list %d open jobs" % k, "cli", lambda P: med(P["list"]["cli_s"]))
    add("list %d open jobs minus one sacct" % k, "api",
        lambda P: med(P["list"]["api_s"]) - med(P["list"]["floor_sacct_s"]))
    for m in R["config"].get("peer_list", []):
        add("list %d open jobs" % m, "peer",
            lambda P, m=m: P["list"]["peer"][str(m)]["wall_s"])
    return rows


def rpc_rows(R: dict) -> list[tuple[str, str, dict, dict]]:
    """(command, variant, empty rpcs, busy rpcs)."""
    rows = []
    cfg = R["config"]

    def get(P, path):
        x = P
        for p in path:
            x = x[p]
        return x
    cmds = []
    for var in ("api", "cli", "peer"):
        cmds.append(("schedule, first in a dataset", var,
                     ("work", var, "schedule_rpc", "first")))
        cmds.append(("schedule, next", var,
                     ("work", var, "schedule_rpc", "next")))
        cmds.append(("finish %d jobs" % cfg["small_batch"], var,
                     ("work", var, "finish_small", "rpc")))
        cmds.append(("finish %d jobs" % cfg["batch"], var,
                     ("work", var, "finish_batch", "rpc")))
    tenth = max(1, cfg["open_jobs"] // 10)
    cmds.append(("list %d open jobs" % tenth, "api",
                 ("list", "api_rpc_tenth")))
    cmds.append(("list %d open jobs" % cfg["open_jobs"], "api",
                 ("list", "api_rpc")))
    for m in cfg.get("peer_list", []):
        cmds.append(("list %d open jobs" % m, "peer",
                     ("list", "peer", str(m), "rpc")))
    for name, var, path in cmds:
        vals = []
        for ph in ("empty", "busy"):
            try:
                vals.append(get(R["phases"][ph], path))
            except (KeyError, TypeError):
                vals.append(None)
        if any(v is not None for v in vals):
            rows.append((name, var, vals[0], vals[1]))
    return rows


def total(rpc: dict | None, daemon: str) -> int | None:
    if not rpc:
        return None
    return sum(rpc.get(daemon, {}).values())


def describe(rpc: dict | None) -> str:
    if not rpc:
        return "–"
    parts = []
    for daemon, short in (("slurmctld", "ctld"), ("slurmdbd", "dbd")):
        t = rpc.get(daemon, {})
        parts.append("%s %d%s" % (short, sum(t.values()), (" (" + ", ".join(
            "%s %d" % (k, v) for k, v in t.items()) + ")") if t else ""))
    return "; ".join(parts)


def check_targets(R: dict) -> list[dict]:
    t = []

    def add(name, value, met, shown):
        t.append({"target": name, "value": value,
                  "met": None if value is None else bool(met),
                  "shown": shown})
    for name, var, e, b in figures(R):
        if var in ("api", "cli") and e and b and "minus" not in name:
            r = b / e
            add("busy/empty <= %.1f: %s (%s)" % (LIMIT_RATIO, name, var), r,
                r <= LIMIT_RATIO, fmt(r, "x"))
    k = R["config"]["open_jobs"]
    for ph in ("empty", "busy"):
        v = med(R["phases"].get(ph, {}).get("list", {}).get("api_s"))
        add("list %d open jobs (API, %s) <= %.0f s" % (k, ph, LIMIT_LIST_S),
            v, v is not None and v <= LIMIT_LIST_S, fmt(v))
    rows = {(n, v): (e, b) for n, v, e, b in rpc_rows(R)}
    cfg = R["config"]
    pairs = [(("finish %d jobs" % cfg["small_batch"], var),
              ("finish %d jobs" % cfg["batch"], var)) for var in ("api",
                                                                  "cli")]
    pairs.append((("list %d open jobs" % max(1, cfg["open_jobs"] // 10),
                   "api"), ("list %d open jobs" % cfg["open_jobs"], "api")))
    for small, big in pairs:
        if small not in rows or big not in rows:
            continue
        for i, ph in enumerate(("empty", "busy")):
            a, b = rows[small][i], rows[big][i]
            if a is None or b is None:
                continue
            same = all(total(a, d) == total(b, d)
                       for d in ("slurmctld", "slurmdbd"))
            add("RPCs constant in the number of jobs: %s vs %s (%s, %s)"
                % (small[0], big[0], big[1], ph), int(same), same,
                "%s vs %s" % (describe(a), describe(b)))
    return t


def write_markdown(R: dict, path: Path):
    M, F = R.get("machine", {}), R.get("fill", {})
    C = R.get("clusters", {}).get("busy", {})
    cfg = R["config"]
    L = []
    w = L.append
    w("# Busy cluster: datalad-hpcdata on an empty and a busy Slurm cluster")
    w("")
    w("Generated by `python tools/bench_busy.py`%s on %s (%s to %s UTC), one "
      "run; every figure is a median of the samples in `busy.json`, every "
      "ratio compares figures of this same run." % (
          " --quick" if cfg.get("quick") else "", M.get("host", "?"),
          R.get("started", "?"), R.get("finished", "?")))
    w("")
    w("Machine: %s CPUs (%s), %s GiB RAM; %s; Python %s, DataLad %s, "
      "datalad-hpcdata %s (commit %s), %s, git-annex %s%s." % (
          M.get("cpus"), M.get("cpu"), M.get("mem_gib"), M.get("slurm"),
          M.get("python"), M.get("datalad"), M.get("datalad_hpcdata"),
          M.get("datalad_hpcdata_commit"), M.get("git"), M.get("git_annex"),
          "; peer: datalad-slurm %s" % M["peer"]["datalad_slurm"]
          if M.get("peer") else ""))
    w("")
    H, P = F.get("history", {}), F.get("pending", {})
    w("Clusters: two instances of `tools/slurm-cluster.sh` up at the same "
      "time (`%s` empty, `%s` busy; %s nodes each in their own namespaces, "
      "each with its own slurmctld, slurmdbd and MariaDB), MaxJobCount %s, "
      "our job ids from %s. Every measurement alternates between the two "
      "round by round." % (
          R.get("clusters", {}).get("empty", {}).get("instance"),
          C.get("instance"), C.get("nodes"), C.get("max_job_count"),
          C.get("first_job_id")))
    w("")
    w("* **empty**: fresh accounting database; only this run's jobs (among "
      "them the %s open held jobs of the list measurement)." %
      "{:,}".format(cfg["open_jobs"]))
    w("* **busy**: + %s finished jobs of %s users over %s years in the job "
      "table (%s job rows, %s step rows, %s MiB of tables; copies of a real "
      "row slurmdbd wrote, filled in %s s) + %s other users' jobs pending in "
      "slurmctld (held or begin in a year; %s jobs in slurmctld during the "
      "busy phase)." % (
          "{:,}".format(H.get("jobs_inserted", 0)), H.get("users"),
          H.get("years"), "{:,}".format(H.get("job_rows", 0)),
          "{:,}".format(H.get("step_rows", 0)), H.get("tables_mib"),
          H.get("seconds"), "{:,}".format(P.get("jobs", 0)),
          "{:,}".format(R["phases"].get("busy", {}).get("queue", {}).get(
              "jobs_in_slurmctld", 0))))
    w("")
    w("Variants: **API** `datalad.api.slurm_*` in one process; **CLI** the "
      "`datalad` command; **peer** datalad-slurm %s commands; **floor** a "
      "bare `sbatch` / one `sacct -j` call for all ids. Schedule: %d jobs "
      "per variant and round, each timed; finish: those %d jobs, completed, "
      "in ONE call (median over rounds: API %d, CLI %d, peer %d)." % (
          M.get("peer", {}).get("datalad_slurm", "0.2.8")
          if M.get("peer") else "0.2.8", cfg["batch"], cfg["batch"],
          cfg.get("rounds_api", 1), cfg.get("rounds_cli", 1),
          cfg.get("rounds_peer", 1)))
    w("")
    w("## Empty vs busy")
    w("")
    w("| figure | variant | empty | busy | busy / empty |")
    w("|---|---|---|---|---|")
    for name, var, e, b in figures(R):
        w("| %s | %s | %s | %s | %s |" % (name, var, fmt(e), fmt(b),
                                          fmt(b / e, "x") if e and b
                                          else "–"))
    w("")
    w("## Slurm RPCs per command")
    w("")
    w("From `sdiag` (slurmctld) and `sacctmgr show stats` (slurmdbd), reset "
      "before and read after each command; RPC types only daemons and jobs "
      "send are left out, and reading the statistics is subtracted.")
    w("")
    w("| command | variant | empty | busy |")
    w("|---|---|---|---|")
    for name, var, e, b in rpc_rows(R):
        w("| %s | %s | %s | %s |" % (name, var, describe(e), describe(b)))
    w("")
    w("## Targets")
    w("")
    w("| target | value | met |")
    w("|---|---|---|")
    for t in R.get("targets", []):
        w("| %s | %s | %s |" % (t["target"], t["shown"],
                                {True: "yes", False: "**no**",
                                 None: "n/a"}[t["met"]]))
    w("")
    for note in R.get("notes", []):
        w("* " + note)
    path.write_text("\n".join(L) + "\n")


def plot(R: dict, path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = figures(R)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(16, 6),
                                 gridspec_kw={"width_ratios": [3, 2]})
    labels = ["%s\n(%s)" % (n, v) for n, v, _, _ in rows]
    xs = range(len(rows))
    for off, ph, color in ((-0.2, "empty", "#9ecae1"),
                           (0.2, "busy", "#de2d26")):
        vals = [(e if ph == "empty" else b) or 0 for _, _, e, b in rows]
        ax.bar([x + off for x in xs], vals, 0.4, label=ph, color=color)
    ax.set_yscale("log")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("seconds (median)")
    ax.set_title("empty vs busy cluster")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend()
    rr = rpc_rows(R)
    labels = ["%s (%s)" % (n, v) for n, v, _, _ in rr]
    ys = range(len(rr))
    for off, ph, color in ((-0.2, "empty", "#9ecae1"),
                           (0.2, "busy", "#de2d26")):
        vals = [(total(e if ph == "empty" else b, "slurmctld") or 0) +
                (total(e if ph == "empty" else b, "slurmdbd") or 0)
                for _, _, e, b in rr]
        bx.barh([y + off for y in ys], vals, 0.4, label=ph, color=color)
    bx.set_xscale("symlog")
    bx.set_yticks(list(ys))
    bx.set_yticklabels(labels, fontsize=7)
    bx.invert_yaxis()
    bx.set_xlabel("RPCs to slurmctld + slurmdbd per command")
    bx.set_title("Slurm RPCs per command")
    bx.grid(True, axis="x", alpha=0.3)
    bx.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(R: dict, out: Path):
    R["targets"] = check_targets(R)
    R.setdefault("notes", [])
    (out / "busy.json").write_text(json.dumps(R, indent=1, sort_keys=True))
    png = plot(R, out / "busy.png")
    if not png:
        R["notes"].append("busy.png not written: matplotlib is missing "
                          "(pip install matplotlib)")
    write_markdown(R, out / "busy.md")
