"""Array and alt-dir phases of tools/bench_campaign.py.

* ``array``: an N-task array (default 1,000) with per-task outputs
  (``-o 'out/t-%a'``) of which F tasks (default 10) fail: bare ``sbatch
  --array`` vs ``datalad slurm-schedule`` of the same array; then ONE
  ``datalad slurm-finish`` (target <= 5 s for the whole finish: one commit
  of the completed tasks' outputs and logs), with the raw tools doing the
  same work beside it (``sacct`` of the array, ``git annex add`` of the
  files, ``git commit``); then ``slurm-reschedule --failed-tasks HEAD`` and
  the finish of that re-run.
* ``altdir``: a job writing one large output (default 2 GiB) in an
  alt-dir; ``slurm-finish`` of it vs ``cp`` + the hash of the dataset's
  annex backend (``md5sum``: MD5E, datalad's default) and ``cp`` +
  ``sha256sum``, target <= 1.3x; and, on a copy of the file, what each way
  of giving it to git-annex costs (``git annex add``, ``reinject
  --known``, ``setkey`` verifying, ``setkey`` with annex.verify=false, the
  way slurm-finish uses).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

TASK_SH = """#!/bin/sh
out=$(printf '%s' "$1" | sed "s/%a/$SLURM_ARRAY_TASK_ID/g")
mkdir -p "$(dirname "$out")"
echo "task $SLURM_ARRAY_TASK_ID" > "$out"
case ",$FAIL_TASKS," in *",$SLURM_ARRAY_TASK_ID,"*) exit 3;; esac
exit 0
"""
BIG_SH = """#!/bin/sh
mkdir -p out
head -c "$1" /dev/urandom > out/big.bin
"""


def _records(stdout: str) -> list[dict]:
    """-f json results, messages as text."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            msg = r.get("message")
            if isinstance(msg, list) and msg:
                r["message"] = msg[0] % tuple(msg[1:])
            out.append(r)
    return out


def _timed(c, argv, **kw):
    t = time.perf_counter()
    p = c.sh(argv, **kw)
    return time.perf_counter() - t, p


def _wait_ended(c, ids, timeout=1800.0) -> None:
    """Until no task of `ids` is queued or running and accounting has
    every task (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = c.sh(["squeue", "-h", "-r", "-o", "%F"]).stdout.split()
        if not set(map(str, ids)) & set(q):
            return
        time.sleep(2)
    raise TimeoutError("jobs %s still queued after %.0f s" % (ids, timeout))


def _finish_until_done(c, ds, env, jid, deadline_s=300.0):
    """slurm-finish, again while accounting has not split the array."""
    deadline = time.monotonic() + deadline_s
    while True:
        took, p = _timed(c, [c.DATALAD, "-f", "json", "slurm-finish", jid],
                         cwd=ds, env=env)
        recs = _records(p.stdout)
        mine = [r for r in recs if str(r.get("slurm_job_id")) == str(jid)]
        if any(r.get("commit") for r in mine) or \
                time.monotonic() > deadline:
            return took, mine
        time.sleep(2)


def _dataset_with_script(c, ds: Path, name: str, script: str) -> None:
    """A new dataset `ds` with the executable code/`name`.sh saved in it
    (commit message: `name`)."""
    c.make_dataset(ds)
    (ds / "code" / (name + ".sh")).write_text(script)
    (ds / "code" / (name + ".sh")).chmod(0o755)
    c.sh([c.DATALAD, "save", "-m", name], cwd=ds, env=c.env_for(),
         check=True)


def bench_array(c, tmp: Path, cfg: dict) -> dict:
    n, nfail = cfg["array"], cfg["array_failed"]
    failed = sorted({(i * 97 + 13) % n for i in range(nfail)})
    ds = tmp / "array" / "ds"
    _dataset_with_script(c, ds, "task", TASK_SH)
    env = dict(c.env_for(), FAIL_TASKS=",".join(map(str, failed)))
    array = "--array=0-%d" % (n - 1)
    # bare sbatch of the same array (held, cancelled: submission only)
    took_bare, p = _timed(c, ["sbatch", "--parsable", "--hold", array,
                              "code/task.sh", "bare/t-%a"], cwd=ds, env=env,
                          check=True)
    bare_id = p.stdout.strip().split(";")[0]
    c.SUBMITTED.add(bare_id)
    c.cancel([bare_id])
    took_sched, p = _timed(c, [c.DATALAD, "-f", "json", "slurm-schedule",
                               "-o", "out/t-%a", "sbatch", array,
                               "code/task.sh", "{outputs}"], cwd=ds, env=env)
    jid = str(_records(p.stdout)[-1]["slurm_job_id"])
    c.SUBMITTED.add(jid)
    t = time.perf_counter()
    _wait_ended(c, [jid])
    ran = time.perf_counter() - t
    c.wait_all_visible([jid])
    took_finish, mine = _finish_until_done(c, ds, env, jid)
    res = mine[-1] if mine else {}
    committed = int(c.sh(["git", "ls-files", "out"], cwd=ds).stdout.count(
        "\n"))
    raw = _raw_finish(c, tmp / "array" / "raw", jid, n)
    # re-run the failed tasks (they succeed now)
    env_ok = dict(env, FAIL_TASKS="")
    took_resched, p = _timed(c, [c.DATALAD, "-f", "json", "slurm-reschedule",
                                 "--failed-tasks", "HEAD"], cwd=ds,
                             env=env_ok)
    again = [r for r in _records(p.stdout) if r.get("slurm_job_id")]
    again_id = str(again[-1]["slurm_job_id"]) if again else None
    took_refinish = None
    if again_id:
        c.SUBMITTED.add(again_id)
        _wait_ended(c, [again_id])
        c.wait_all_visible([again_id])
        took_refinish, _ = _finish_until_done(c, ds, env_ok, again_id)
    after = int(c.sh(["git", "ls-files", "out"], cwd=ds).stdout.count("\n"))
    return dict(
        tasks=n, failed_tasks=failed, bare_submit=took_bare,
        schedule=took_sched, ran=ran, finish=took_finish,
        finish_result=res.get("message"),
        finish_failed=res.get("failed_tasks"), committed_outputs=committed,
        raw_finish=raw, reschedule=took_resched, reschedule_job=again_id,
        refinish=took_refinish, outputs_after_rerun=after)


def _raw_finish(c, where: Path, jid: str, n: int) -> dict:
    """The raw tools doing a finish's work on as many files: one sacct of
    the array, git annex add of n outputs and n logs, one git commit."""
    c.make_dataset(where)
    for i in range(n):
        (where / ("out/t-%d" % i)).parent.mkdir(exist_ok=True)
        (where / ("out/t-%d" % i)).write_text("task %d\n" % i)
        (where / ("slurm-%s_%d.out" % (jid, i))).write_text("")
    t = time.perf_counter()
    c.sh(["sacct", "-n", "-P", "-j", jid, "-o", "JobID,State,ExitCode"],
         check=True)
    sacct = time.perf_counter() - t
    add, _ = _timed(c, ["git", "annex", "add", "--quiet", "out", "."],
                    cwd=where, env=c.env_for(), check=True)
    commit, _ = _timed(c, ["git", "commit", "-q", "-m", "raw"], cwd=where,
                       check=True)
    return dict(sacct=sacct, annex_add=add, commit=commit,
                total=sacct + add + commit)


def bench_altdir(c, tmp: Path, cfg: dict) -> dict:
    size = cfg["altdir_bytes"]
    ds = tmp / "altdir" / "ds"
    alt = tmp / "altdir" / "alt"
    _dataset_with_script(c, ds, "big", BIG_SH)
    env = c.env_for()
    backend = c.sh(["git", "check-attr", "annex.backend", "--", "out/big.bin"],
                   cwd=ds).stdout.rsplit(":", 1)[-1].strip()
    p = c.sh([c.DATALAD, "-f", "json", "slurm-schedule", "--alt-dir",
              str(alt), "-o", "out", "sbatch", "--time=30", "code/big.sh",
              str(size)], cwd=ds, env=env, check=True)
    jid = str(_records(p.stdout)[-1]["slurm_job_id"])
    c.SUBMITTED.add(jid)
    _wait_ended(c, [jid])
    c.wait_all_visible([jid])
    staged = alt / "out" / "big.bin"
    # the staged file is in the page cache for every contender alike:
    # read it once first
    with open(staged, "rb") as f:
        while f.read(1 << 24):
            pass
    took, mine = _finish_until_done(c, ds, env, jid)
    key = c.sh(["git", "annex", "lookupkey", "out/big.bin"],
               cwd=ds).stdout.strip()
    fsck = c.sh(["git", "annex", "fsck", "--fast", "out/big.bin"], cwd=ds)
    src = tmp / "altdir" / "src.bin"
    shutil.copyfile(ds / "out" / "big.bin", src)
    baselines = {}
    for tool in ("md5sum", "sha256sum"):
        dst = tmp / "altdir" / ("cp-%s.bin" % tool)
        t = time.perf_counter()
        c.sh(["cp", str(src), str(dst)], check=True)
        c.sh(["sync", str(dst)])
        c.sh([tool, str(dst)], check=True)
        baselines["cp+" + tool] = time.perf_counter() - t
        os.unlink(dst)
    ways = _annex_ways(c, tmp / "altdir" / "ways", src)
    ref = baselines["cp+md5sum" if backend.startswith("MD5")
                    else "cp+sha256sum"]
    return dict(bytes=size, backend=backend, finish=took, key=key,
                fsck_ok=fsck.returncode == 0,
                finish_result=(mine[-1].get("message") if mine else None),
                baselines=baselines, ratio=took / ref,
                ratio_vs="cp+md5sum" if backend.startswith("MD5")
                else "cp+sha256sum", annex_ways=ways)


def _annex_ways(c, where: Path, src: Path) -> dict:
    """Seconds each way of annexing a copy of `src` takes (the copy
    itself not counted)."""
    c.make_dataset(where)
    md5 = c.sh(["md5sum", str(src)], check=True).stdout.split()[0]
    key = "MD5E-s%d--%s.bin" % (src.stat().st_size, md5)
    out = {}
    for way in ("git annex add", "git annex reinject --known",
                "git annex setkey (verifying)",
                "git annex setkey, annex.verify=false",
                "slurm-finish: by key, in bulk (hash known)"):
        f = where / ("w%d.bin" % len(out))
        shutil.copyfile(src, f)
        c.sh(["git", "annex", "drop", "--force", "--key", key],
             cwd=where)
        if way.startswith("slurm-finish"):
            out[way] = _bulk_register(where, f, md5)
            continue
        if way == "git annex add":
            argv = ["git", "annex", "add", "--quiet", f.name]
        elif way.startswith("git annex reinject"):
            argv = ["git", "annex", "reinject", "--known", f.name]
        elif "verify=false" in way:
            argv = ["git", "-c", "annex.verify=false", "annex", "setkey",
                    key, f.name]
        else:
            argv = ["git", "annex", "setkey", key, f.name]
        took, p = _timed(c, argv, cwd=where, env=c.env_for())
        out[way] = took if p.returncode == 0 else None
        if f.exists() and not f.is_symlink():
            os.unlink(f)
    return out


def _bulk_register(where: Path, f: Path, md5: str) -> float:
    """What slurm-finish does with a file whose hash the copy-back
    computed: the key, the object, the location log, the index entry."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from datalad_hpcdata.dataset.annexkeys import make_keys, register
    t = time.perf_counter()
    rel = f.name
    keys = make_keys(str(where), {rel: ("MD5E", f.stat().st_size, md5)})
    register(str(where), keys, str(where / ".git" / "bench.index"))
    return time.perf_counter() - t


def report_lines(res: dict) -> list[str]:
    a, d = res.get("array"), res.get("altdir")
    lines = []
    if a:
        raw = a["raw_finish"]
        lines += [
            "", "## A %d-task array with per-task outputs" % a["tasks"], "",
            "`-o 'out/t-%%a'`, `--array=0-%d`, %d tasks fail (exit 3). "
            "Wall times of whole command lines." % (a["tasks"] - 1,
                                                    len(a["failed_tasks"])),
            "", "| step | ours (s) | bare Slurm / raw tools (s) |",
            "|---|---:|---:|",
            "| submit the array | %.2f | %.2f (`sbatch --array`) |" % (
                a["schedule"], a["bare_submit"]),
            "| finish: one commit of %d tasks' outputs and logs | **%.2f** "
            "| %.2f (`sacct` %.2f + `git annex add` %.2f + `git commit` "
            "%.2f) |" % (a["committed_outputs"], a["finish"], raw["total"],
                         raw["sacct"], raw["annex_add"], raw["commit"]),
            "| `slurm-reschedule --failed-tasks HEAD` (%d tasks) | %.2f | "
            "- |" % (len(a["failed_tasks"]), a["reschedule"]),
            "| finish of the re-run | %.2f | - |" % (a["refinish"] or 0),
            "", "Finish target <= 5 s: **%s**. The tasks ran for %.0f s on "
            "the 8-CPU node. Outputs committed after the re-run: %d of %d. "
            "Finish said: %s" % (
                "met" if a["finish"] <= 5 else "missed", a["ran"],
                a["outputs_after_rerun"], a["tasks"], a["finish_result"])]
    if d:
        gib = d["bytes"] / 2 ** 30
        lines += [
            "", "## `--alt-dir`: finish of one %.1f GiB output" % gib, "",
            "The dataset's backend is %s; the staged file is in the page "
            "cache for every contender." % d["backend"], "",
            "| how | seconds |", "|---|---:|",
            "| `slurm-finish` (copy back, hashed once, annexed by key) | "
            "**%.2f** |" % d["finish"]] + [
            "| `cp` + `%s` | %.2f |" % (k[3:], v)
            for k, v in sorted(d["baselines"].items())] + [
            "", "Ratio to `%s`: **%.2fx** (target <= 1.3x: %s). Key %s; "
            "`git annex fsck` %s." % (
                d["ratio_vs"].replace("+", "` + `"), d["ratio"],
                "met" if d["ratio"] <= 1.3 else "missed", d["key"],
                "passes" if d["fsck_ok"] else "FAILS"),
            "", "Giving git-annex a copy of the same file (the copy not "
            "counted):", "", "| way | seconds |", "|---|---:|"] + [
            "| %s | %s |" % (k, "%.2f" % v if v is not None else "failed")
            for k, v in d["annex_ways"].items()]
    return lines


def array_panel(ax, a: dict) -> None:
    raw = a["raw_finish"]
    names = ["submit\n(sbatch)", "submit\n(ours)", "finish\n(raw tools)",
             "finish\n(ours)", "reschedule\n%d failed" % len(
                 a["failed_tasks"]), "finish\nre-run"]
    vals = [a["bare_submit"], a["schedule"], raw["total"], a["finish"],
            a["reschedule"], a["refinish"] or 0]
    ax.bar(names, vals, color=["grey", "tab:blue", "grey", "tab:blue",
                               "tab:blue", "tab:blue"])
    ax.axhline(5, color="tab:red", ls="--", lw=1, label="finish target 5 s")
    ax.set_ylabel("seconds (wall)")
    ax.set_title("%d-task array, per-task outputs" % a["tasks"])
    for i, v in enumerate(vals):
        ax.text(i, v, "%.2f" % v, ha="center", va="bottom")
    ax.legend()


def altdir_panel(ax, d: dict) -> None:
    names = ["slurm-finish"] + ["cp + %s" % k[3:]
                                for k in sorted(d["baselines"])]
    vals = [d["finish"]] + [d["baselines"][k] for k in sorted(d["baselines"])]
    ax.bar(names, vals, color=["tab:blue"] + ["grey"] * len(d["baselines"]))
    ax.set_ylabel("seconds (wall)")
    ax.set_title("alt-dir finish, one %.1f GiB output (%s): %.2fx" % (
        d["bytes"] / 2 ** 30, d["backend"], d["ratio"]))
    for i, v in enumerate(vals):
        ax.text(i, v, "%.2f" % v, ha="center", va="bottom")
