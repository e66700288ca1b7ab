"""Tables (remote-results.md) and plot (remote-results.png) for
tools/bench_remote.py; ``write`` also saves remote-results.json.

Throughput is the size over the median wall time; every ratio compares
medians of the same run.
"""

from __future__ import annotations

import json
from pathlib import Path

MIB = 1 << 20


def med(R: dict, name: str, key: str = "wall"):
    return (R["medians"].get(name) or {}).get(key)


def rate(R: dict, name: str, size: int) -> float | None:
    wall = med(R, name)
    return size / MIB / wall if wall else None


def fmt(value, spec: str = "%.0f") -> str:
    return spec % value if value is not None else "-"


def ratio(a, b) -> str:
    return "%.2f" % (a / b) if a and b else "-"


def large_rows(R: dict) -> list[str]:
    size = R["config"]["large"]
    rows = ["| transfer | raw boto3 | this remote | built-in S3 | remote / "
            "boto3 | remote / built-in | CPU s: remote, built-in, boto3 "
            "(server) |", "|---|---|---|---|---|---|---|"]
    for what, suffix, label in (
            ("upload", "", "upload (`copy --to`)"),
            ("download", "", "download (`get`)"),
            ("download", " noverify", "download, git-annex's hash off")):
        boto = rate(R, "large %s boto3" % what, size)
        ours = rate(R, "large %s ours%s" % (what, suffix), size)
        built = rate(R, "large %s builtin%s" % (what, suffix), size)
        cpu = ", ".join(fmt(med(R, "large %s %s%s" % (what, r, suffix),
                                "cpu"), "%.1f") + " (" + fmt(med(
                                    R, "large %s %s%s" % (what, r, suffix),
                                    "server_cpu"), "%.1f") + ")"
                        for r in ("ours", "builtin"))
        cpu += ", " + fmt(med(R, "large %s boto3" % what, "cpu"), "%.1f")
        rows.append("| %s | %s MiB/s | %s MiB/s | %s MiB/s | %s | %s | %s |"
                    % (label, fmt(boto), fmt(ours), fmt(built),
                       ratio(ours, boto), ratio(ours, built), cpu))
    hashed = rate(R, "large git-annex hash", size)
    if hashed:
        rows += ["", "git-annex's own hash of the file (`git annex fsck`, "
                 "the check it makes after every `get`): %s MiB/s, %s CPU s."
                 % (fmt(hashed), fmt(med(R, "large git-annex hash", "cpu"),
                                     "%.1f"))]
    return rows


def zenodo_rows(R: dict) -> list[str]:
    size = R["config"]["large"]
    curl = rate(R, "zenodo curl", size)
    rows = ["| client | MiB/s | / curl | client CPU s | server CPU s |",
            "|---|---|---|---|---|"]
    for name, label in (("zenodo curl", "`curl -o file`"),
                        ("zenodo curl | md5sum", "`curl \\| md5sum`"),
                        ("zenodo get ours", "this remote, `git annex get`"),
                        ("zenodo get ours noverify",
                         "this remote, git-annex's hash off"),
                        ("zenodo engine ours",
                         "the remote's download code alone (Python API)")):
        value = rate(R, name, size)
        rows.append("| %s | %s | %s | %s | %s |" % (
            label, fmt(value), ratio(value, curl),
            fmt(med(R, name, "cpu"), "%.1f"),
            fmt(med(R, name, "server_cpu"), "%.1f")))
    return rows


def small_rows(R: dict) -> list[str]:
    files = R["config"]["files"]
    rows = ["| operation | this remote | built-in S3 | built-in / remote "
            "(>1: remote faster) | CPU ms per file: this remote's "
            "processes + git-annex and the rest; built-in (server) |",
            "|---|---|---|---|---|"]

    def per_file(name: str, key: str) -> float | None:
        value = med(R, name, key)
        return value * 1000 / files if value is not None else None

    for op in ("copy -J1", "copy -J8", "get -J8"):
        ours, built = med(R, "small ours " + op), med(R, "small builtin " + op)
        name = "small ours " + op
        remote, total = per_file(name, "remote_cpu"), per_file(name, "cpu")
        rest = total - remote if None not in (remote, total) else None
        rows.append("| `%s` of %d files | %s s (%s files/s) | %s s (%s "
                    "files/s) | %s | %s + %s (%s); %s (%s) |" % (
                        op, files, fmt(ours, "%.1f"),
                        fmt(files / ours if ours else None),
                        fmt(built, "%.1f"),
                        fmt(files / built if built else None),
                        ratio(built, ours), fmt(remote, "%.1f"),
                        fmt(rest, "%.1f"),
                        fmt(per_file(name, "server_cpu"), "%.1f"),
                        fmt(per_file("small builtin " + op, "cpu"), "%.1f"),
                        fmt(per_file("small builtin " + op, "server_cpu"),
                            "%.1f")))
    return rows


def memory_rows(R: dict) -> list[str]:
    size = R["config"]["large"] // MIB
    rows = ["| transfer | remote process peak RSS (`VmHWM`) | whole "
            "command peak RSS (`wait4`; boto3: `VmHWM`) |", "|---|---|---|"]
    names = [("large upload ours", "%d MiB upload, this remote" % size),
             ("large download ours", "%d MiB download, this remote" % size)]
    for mem in R["config"]["mem_sizes"]:
        for what in ("upload", "download"):
            names.append(("memory %d MiB %s ours" % (mem // MIB, what),
                          "%d MiB %s, this remote" % (mem // MIB, what)))
    names += [("large upload builtin", "%d MiB upload, built-in S3" % size),
              ("large download builtin",
               "%d MiB download, built-in S3" % size),
              ("large upload boto3", "%d MiB `upload_file`, boto3" % size),
              ("large download boto3",
               "%d MiB `download_file`, boto3" % size)]
    for name, label in names:
        remote = med(R, name, "remote_rss")
        whole = med(R, name, "maxrss")
        rows.append("| %s | %s | %s |" % (
            label, "%d MiB" % (remote // MIB) if remote else "-",
            "%d MiB" % (whole // MIB) if whole else "-"))
    return rows


def sweep_rows(R: dict) -> list[str]:
    size = R["config"]["large"]
    concs = R["config"]["concurrencies"]
    rows = ["| part size | " + " | ".join(
        "x%d up / down MiB/s (peak RSS)" % c for c in concs) + " |",
        "|---|" + "---|" * len(concs)]
    for unit in R["config"]["units"]:
        cells = []
        for conc in concs:
            up = rate(R, "sweep upload %d MiB x %d" % (unit, conc), size)
            down = rate(R, "sweep download %d MiB x %d" % (unit, conc), size)
            rss = med(R, "sweep download %d MiB x %d" % (unit, conc),
                      "maxrss")
            cells.append("%s / %s (%s MiB)" % (
                fmt(up), fmt(down), fmt(rss / MIB if rss else None)))
        rows.append("| %d MiB | %s |" % (unit, " | ".join(cells)))
    return rows


def phase_rows(R: dict) -> list[str]:
    """One transfer of each kind with ``--debug``: git-annex's protocol
    log tells when it sent ``TRANSFER`` and got ``TRANSFER-SUCCESS``."""
    rows = ["| transfer (one, with `--debug`) | before `TRANSFER` | inside "
            "the remote | after `TRANSFER-SUCCESS` | whole command |",
            "|---|---|---|---|---|"]
    for name, got in sorted((R.get("phases") or {}).items()):
        if got:
            rows.append("| %s | %.2f s | %.2f s | %.2f s | %.2f s |" % (
                name, got["before"], got["remote"], got["after"],
                got["wall"]))
    return rows


def targets(R: dict) -> list[str]:
    size = R["config"]["large"]
    big = ("1 GiB" if size == 1024 * MIB else "%d MiB" % (size // MIB))
    out = []

    def check(text: str, ok, detail: str) -> None:
        verdict = "-" if ok is None else ("met" if ok else "**missed**")
        out.append("| %s | %s | %s |" % (text, detail, verdict))

    for what in ("upload", "download"):
        ours = rate(R, "large %s ours" % what, size)
        boto = rate(R, "large %s boto3" % what, size)
        built = rate(R, "large %s builtin" % what, size)
        check("%s %s >= 0.8x raw boto3" % (big, what),
              ours and boto and ours >= 0.8 * boto, ratio(ours, boto))
        check("%s %s >= built-in S3" % (big, what),
              ours and built and ours >= built, ratio(ours, built))
    ours = rate(R, "large download ours noverify", size)
    boto = rate(R, "large download boto3", size)
    check("(%s download, git-annex's hash off, >= 0.8x raw boto3)" % big,
          ours and boto and ours >= 0.8 * boto, ratio(ours, boto))
    for name, label in (("zenodo get ours", "`git annex get`"),
                        ("zenodo get ours noverify",
                         "`git annex get`, git-annex's hash off"),
                        ("zenodo engine ours",
                         "the remote's download code alone")):
        ours, curl = rate(R, name, size), rate(R, "zenodo curl", size)
        check("Zenodo, %s >= 0.8x curl" % label,
              ours and curl and ours >= 0.8 * curl, ratio(ours, curl))
    ours, built = med(R, "small ours copy -J8"), med(R,
                                                     "small builtin copy -J8")
    check("{:,} small files `copy -J8` >= built-in S3".format(
        R["config"]["files"]),
          ours and built and ours <= built, "time ratio built-in / remote "
          + ratio(built, ours))
    for what in ("upload", "download"):
        # the same direction at every size: uploads hold part buffers,
        # downloads range buffers, so the two differ by design
        names = ["large %s ours" % what] + [
            "memory %d MiB %s ours" % (mem // MIB, what)
            for mem in R["config"]["mem_sizes"]]
        peaks = [(int(n.split()[1]) if n.startswith("memory")
                  else size // MIB, med(R, n, "remote_rss")) for n in names]
        peaks = [(mib, p) for mib, p in peaks if p]
        values = [p for _, p in peaks]
        check("remote memory independent of file size (%s)" % what,
              len(values) > 1 and max(values) < 1.25 * min(values),
              ", ".join("%d MiB file: %s MiB" % (mib, fmt(p / MIB))
                        for mib, p in sorted(peaks)))
    return ["| target | figure | verdict |", "|---|---|---|"] + out


def load_line(R: dict) -> str:
    """Machine load (1/5/15-minute averages) at the start and end of the
    run, and the range of the 1-minute load at the start of each sample."""
    def avg(value) -> str:
        return "/".join("%.2f" % x for x in value) if value else "?"

    loads = [s["load"] for samples in R["samples"].values()
             for s in samples if s.get("load") is not None]
    return ("Machine load (1/5/15 min) at the start %s, at the end %s; "
            "1-minute load when each sample started: %s-%s." % (
                avg(R.get("load_start")), avg(R.get("load_end")),
                fmt(min(loads) if loads else None, "%.2f"),
                fmt(max(loads) if loads else None, "%.2f")))


def markdown(R: dict) -> str:
    cfg, m, v = R["config"], R["machine"], R["versions"]
    size = cfg["large"] // MIB
    parts = [
        "# Special remote throughput (tools/bench_remote.py)", "",
        "One run, started %s%s. Machine: %s CPUs (%s), %s GiB RAM; %s." % (
            R.get("started", "?"), " (quick mode)" if cfg.get("quick")
            else "", m["cpus"], m["cpu"], m["mem_gib"], m["platform"]),
        "Versions: " + ", ".join("%s %s" % kv for kv in sorted(v.items()))
        + ".", "", load_line(R), "",
        "Medians of %d rounds (small files: %d), variants interleaved in "
        "every round; MiB/s = size / median wall time. Method and findings: "
        "[docs/remote/benchmark.md](../remote/benchmark.md)." % (
            cfg["reps"], cfg["small_reps"]), "",
        "## Targets", ""] + targets(R) + [
        "", "## %d MiB through S3 (SeaweedFS on loopback, tmpfs)" % size, ""
    ] + large_rows(R) + [
        "", "Where the time of a transfer goes:", ""] + phase_rows(R) + [
        "", "## %d MiB from a Zenodo loopback server (sendfile)" % size, ""
    ] + zenodo_rows(R) + [
        "", "## %d files of %d bytes" % (cfg["files"], cfg["file_size"]), ""
    ] + small_rows(R) + ["", "## Peak memory", ""] + memory_rows(R) + [
        "", "## This remote's S3 engine: part size x concurrency "
        "(Python API, %d MiB)" % size, ""] + sweep_rows(R)
    return "\n".join(parts) + "\n"


def plot(R: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = R["config"]["large"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    groups = [("upload", "upload"), ("download", "download"),
              ("download\n(git-annex hash off)", "download noverify")]
    for i, (name, color) in enumerate((("boto3", "#888888"),
                                       ("ours", "#1f77b4"),
                                       ("builtin", "#d62728"))):
        values = []
        for _, what in groups:
            if name == "boto3":  # boto3 has one download, no hash to turn off
                key = "large %s boto3" % what.split()[0]
            else:  # "large download ours noverify"
                first, _, rest = what.partition(" ")
                key = ("large %s %s %s" % (first, name, rest)).rstrip()
            values.append(rate(R, key, size) or 0)
        ax.bar([g + (i - 1) * 0.27 for g in range(len(groups))], values,
               0.27, color=color, label={"ours": "this remote",
                                         "builtin": "built-in S3",
                                         "boto3": "raw boto3"}[name])
    ax.set_xticks(range(len(groups)), [g for g, _ in groups])
    ax.set_ylabel("MiB/s")
    ax.set_title("%d MiB through S3 (SeaweedFS)" % (size // MIB))
    ax.legend()
    ax = axes[0][1]
    names = ["zenodo curl", "zenodo curl | md5sum", "zenodo get ours",
             "zenodo get ours noverify", "zenodo engine ours"]
    ax.bar(range(5), [rate(R, n, size) or 0 for n in names],
           color=["#888888", "#aaaaaa", "#1f77b4", "#6baed6", "#9ecae1"])
    ax.set_xticks(range(5), ["curl", "curl|md5sum", "git annex get",
                             "get (git-annex\nhash off)", "remote code\nalone"])
    ax.set_ylabel("MiB/s")
    ax.set_title("%d MiB from a Zenodo loopback server" % (size // MIB))
    ax = axes[1][0]
    ops = ["copy -J1", "copy -J8", "get -J8"]
    for i, (who, color) in enumerate((("ours", "#1f77b4"),
                                      ("builtin", "#d62728"))):
        ax.bar([g + (i - 0.5) * 0.38 for g in range(3)],
               [med(R, "small %s %s" % (who, op)) or 0 for op in ops], 0.38,
               color=color, label="this remote" if who == "ours"
               else "built-in S3")
    ax.set_xticks(range(3), ops)
    ax.set_ylabel("seconds (lower is better)")
    ax.set_title("%d files of %d bytes" % (R["config"]["files"],
                                           R["config"]["file_size"]))
    ax.legend()
    ax = axes[1][1]
    for conc, style in zip(R["config"]["concurrencies"], ("o-", "s-", "^-")):
        units = R["config"]["units"]
        # a failed setting is a gap in its line, not a zero
        ax.plot(units, [rate(R, "sweep upload %d MiB x %d" % (u, conc), size)
                        or float("nan") for u in units], style,
                color="#1f77b4", label="upload x%d" % conc)
        ax.plot(units, [rate(R, "sweep download %d MiB x %d" % (u, conc),
                             size) or float("nan") for u in units], style,
                color="#2ca02c", label="download x%d" % conc)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("part / range size (MiB)")
    ax.set_ylabel("MiB/s")
    ax.set_title("this remote's engine: part size x concurrency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def write(R: dict, out: Path, plot_png: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "remote-results.json").write_text(json.dumps(R, indent=1) + "\n")
    (out / "remote-results.md").write_text(markdown(R))
    if plot_png:
        try:
            plot(R, out / "remote-results.png")
        except ImportError:
            print("matplotlib missing: no plot (pip install matplotlib)")
