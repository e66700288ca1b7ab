#!/usr/bin/env python
"""Login-node cost of datalad-hpcdata vs bare sbatch vs datalad-slurm 0.2.8.

One run measures, side by side, on the local Slurm cluster and on the same
cached datasets (1k/10k/100k tracked files, built with git plumbing by
tools/bench_fixtures.py):

* ``floor``  bare ``sbatch`` per job, and one index-free plumbing commit of one
  file (hash-object + mktree + commit-tree + update-ref) in the dataset;
* ``api``    this extension through ``datalad.api`` in this one process;
* ``cli``    this extension through the ``datalad`` command line;
* ``peer``   datalad-slurm 0.2.8 through ``<peer-venv>/bin/datalad`` (a venv
  this script creates from PyPI; it cannot see our package).

Figures: per-job schedule cost; per-job finish cost when K jobs finish
together (one finish call) and when one finishes at a time; list-open-jobs
with 100/1,000/5,000 open (held) jobs; peak memory (wait4 ru_maxrss of the
measured process).  Every figure is the median of repeated runs; every ratio
is computed from figures of this same run.  Results go to
``docs/benchmarks/`` as results.json, results.md and results.png.

    python tools/bench.py              # full run (~25-30 min, peer included)
    python tools/bench.py --quick      # tiny sizes, no peer, < 1 min
    python tools/bench.py --quick --with-peer --out /tmp/b

Only jobs this script submitted are ever cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_fixtures as fx  # noqa: E402

REPO = HERE.parent
PEER_VERSION = "0.2.8"
ACTIVE_STATES = {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING",
                 "REQUEUED", "RESIZING", "SUSPENDED"}

FULL = dict(sizes=[1000, 10000, 100000, 1000000], rounds=3, batch_api=20,
            batch_cli=10, batch_peer=10, singles_api=5, singles_cli=3,
            singles_peer=3, open_jobs=[100, 1000, 5000], list_reps=5,
            list_reps_cli=3, peer_list_reps={100: 3, 1000: 1, 5000: 1},
            floor_reps=20, mem_batch=20, peer_max_files=100000)
QUICK = dict(sizes=[100, 400], rounds=2, batch_api=3, batch_cli=2,
             batch_peer=2, singles_api=1, singles_cli=1, singles_peer=1,
             open_jobs=[10, 30], list_reps=2, list_reps_cli=1,
             peer_list_reps={10: 1, 30: 1}, floor_reps=3, mem_batch=2,
             peer_max_files=100000)

class JobIds(set):
    """Job ids still to clean up; ``ever`` keeps every id submitted."""

    def __init__(self):
        super().__init__()
        self.ever: set[str] = set()

    def add(self, jid):
        self.ever.add(str(jid))
        super().add(jid)


# every job id this process submitted, for the final clean-up
SUBMITTED = JobIds()


def log(*a):
    print("[bench %7.1fs]" % (time.monotonic() - T0), *a, flush=True)


T0 = time.monotonic()


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summary(samples, per=1):
    """median (and spread) of per-job values."""
    vals = [s / per for s in samples]
    if not vals:
        return None
    return {"median": median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals), "samples": [round(v, 6) for v in vals]}


# ------------------------------------------------------------------ processes

def run_measured(argv, cwd=None, env=None, timeout=3600):
    """Run argv; return (wall s, peak RSS MiB of it and its children, rc,
    stdout, stderr).  Peak memory comes from wait4() on exactly this child."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # read both pipes without waiting for the process (wait4 reaps it)
    import threading
    bufs = {}

    def drain(name, f):
        bufs[name] = f.read()
    ts = [threading.Thread(target=drain, args=(n, f))
          for n, f in (("out", p.stdout), ("err", p.stderr))]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.002)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in ts:
        t.join()
    return (wall, ru.ru_maxrss / 1024.0, p.returncode,
            bufs["out"].decode(errors="replace"),
            bufs["err"].decode(errors="replace"))


def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


# ------------------------------------------------------------------ cluster

def slurm_usable() -> tuple[bool, str]:
    if not shutil.which("sbatch") or not shutil.which("sacct"):
        return False, "sbatch/sacct not on PATH"
    try:
        p = sh(["sinfo", "-h", "-o", "%T"], timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    states = [s.rstrip("*~#") for s in p.stdout.split()]
    if p.returncode or not any(s in ("idle", "mixed", "allocated")
                               for s in states):
        return False, "no usable node: %r %r" % (p.stdout, p.stderr)
    p = sh(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"], timeout=30)
    if p.returncode:
        return False, "sacct unusable: %s" % p.stderr.strip()
    return True, ""


def sacct_states(ids) -> dict[str, str]:
    ids = [str(i) for i in ids]
    out = {}
    for i in range(0, len(ids), 2000):
        chunk = ids[i:i + 2000]
        p = sh(["sacct", "-n", "-X", "-P", "-j", ",".join(chunk),
                "-o", "JobIDRaw,State"], timeout=600)
        for line in p.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 2:
                out[parts[0]] = parts[1].split()[0]
    return out


def wait_done(ids, timeout=180.0):
    """Until every job is terminal in accounting (bounded)."""
    ids = [str(i) for i in ids]
    deadline = time.monotonic() + timeout
    while True:
        st = sacct_states(ids)
        if all(j in st and st[j] not in ACTIVE_STATES for j in ids):
            bad = {j: st[j] for j in ids if st[j] != "COMPLETED"}
            if bad:
                log("WARNING: jobs did not complete:", bad)
            return
        if time.monotonic() > deadline:
            raise TimeoutError("jobs not done after %.0f s: %s" % (
                timeout, {j: st.get(j) for j in ids if st.get(j) is None
                          or st.get(j) in ACTIVE_STATES}))
        time.sleep(0.25)


def wait_visible(ids, timeout=300.0):
    """Until accounting knows every job (held jobs take ~5 s)."""
    ids = [str(i) for i in ids]
    deadline = time.monotonic() + timeout
    while True:
        st = sacct_states(ids)
        missing = [j for j in ids if j not in st]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("%d jobs not in sacct after %.0f s"
                               % (len(missing), timeout))
        time.sleep(0.5)


def cancel(ids):
    """scancel exactly these job ids (ours), then wait until they are gone."""
    ids = sorted({str(i) for i in ids}, key=int)
    if not ids:
        return
    for i in range(0, len(ids), 500):
        sh(["scancel"] + ids[i:i + 500], timeout=600)
    deadline = time.monotonic() + 120
    want = set(ids)
    while time.monotonic() < deadline:
        q = sh(["squeue", "-h", "-r", "-t", "PD,R,CG,CF,S", "-o", "%i"],
               timeout=120).stdout.split()
        if not want & set(q):
            break
        time.sleep(0.5)
    SUBMITTED.difference_update(ids)


def cleanup_all():
    left = sorted(SUBMITTED, key=int)
    if left:
        log("cancelling %d job(s) this run submitted" % len(left))
        try:
            cancel(left)
        except Exception as e:   # noqa: BLE001
            log("WARNING: clean-up failed: %s" % e)


# ------------------------------------------------------------------ peer venv

def ensure_peer(venv: Path) -> dict:
    py = venv / "bin" / "python"
    dl = venv / "bin" / "datalad"

    def version():
        p = sh([str(py), "-c", "import importlib.metadata as m;"
                "print(m.version('datalad-slurm'), m.version('datalad'))"])
        return p.stdout.split() if p.returncode == 0 else None

    v = version() if py.exists() else None
    if not v or v[0] != PEER_VERSION:
        log("creating peer venv %s (datalad-slurm==%s from PyPI)"
            % (venv, PEER_VERSION))
        t = time.monotonic()
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)],
                           check=True)
        # datalad-slurm does not declare datalad: install it too
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                        "datalad-slurm==%s" % PEER_VERSION, "datalad"],
                       check=True, env=peer_env(venv))
        log("  peer venv ready in %.0f s" % (time.monotonic() - t))
        v = version()
    # (cwd=/ so that a checkout in the cwd does not count)
    leak = sh([str(py), "-c", "import datalad_hpcdata"], env=peer_env(venv),
              cwd="/")
    if leak.returncode == 0:
        raise SystemExit("the peer venv can import datalad_hpcdata; "
                         "refusing to benchmark a mixed installation")
    return {"datalad_slurm": v[0], "datalad": v[1], "venv": str(venv),
            "datalad_cmd": str(dl)}


# Both CLIs run with cached bytecode, as a pip-installed package has it: an
# editable checkout under PYTHONDONTWRITEBYTECODE=1 would recompile our
# modules on every command (~10-15 ms), an artifact of the dev environment.
# The cache lives outside the repository (PYTHONPYCACHEPREFIX).
PYCACHE = {"dir": None}


def _bytecode(env: dict) -> dict:
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if PYCACHE["dir"]:
        env["PYTHONPYCACHEPREFIX"] = PYCACHE["dir"]
    return env


def peer_env(venv: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    return _bytecode(env)


def main_env() -> dict:
    return _bytecode(dict(os.environ))


# ------------------------------------------------------------------ variants

class Variant:
    name = ""
    counter = 0

    def __init__(self, ds: Path):
        self.ds = ds

    def next_out(self, tag):
        Variant.counter += 1
        return "out/%s%d" % (tag, Variant.counter)


class Api(Variant):
    """datalad-hpcdata via datalad.api in this process."""
    name = "api"

    def __init__(self, ds):
        super().__init__(ds)
        import datalad.api as dl
        self.dl = dl

    def schedule(self, out, hold=False):
        cmd = "sbatch %scode/job.sh %s" % ("--hold " if hold else "", out)
        t0 = time.perf_counter()
        res = self.dl.slurm_schedule(cmd, dataset=str(self.ds),
                                     outputs=[out], result_renderer="disabled",
                                     return_type="list", on_failure="ignore")
        dt = time.perf_counter() - t0
        ok = [r for r in res if r.get("status") == "ok"
              and r.get("slurm_job_id")]
        if len(ok) != 1:
            raise RuntimeError("api schedule failed: %r" % res)
        return dt, str(ok[0]["slurm_job_id"]), None

    def finish(self):
        t0 = time.perf_counter()
        res = self.dl.slurm_finish(dataset=str(self.ds),
                                   result_renderer="disabled",
                                   return_type="list", on_failure="ignore")
        dt = time.perf_counter() - t0
        committed = sum(1 for r in res if r.get("status") == "ok"
                        and r.get("commit"))
        return dt, None, committed

    def list_open(self):
        t0 = time.perf_counter()
        res = self.dl.slurm_finish(dataset=str(self.ds), list_open_jobs=True,
                                   result_renderer="disabled",
                                   return_type="list", on_failure="ignore")
        dt = time.perf_counter() - t0
        return dt, None, sum(1 for r in res if r.get("status") == "ok")


API_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import datalad.api as dl
t1 = time.perf_counter()
kw = dict(dataset=sys.argv[1], result_renderer="disabled",
          return_type="list", on_failure="ignore")
if sys.argv[2] == "list":
    kw["list_open_jobs"] = True
res = dl.slurm_finish(**kw)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "call_s": t2 - t1,
                  "results": len(res),
                  "committed": sum(1 for r in res if r.get("commit")),
                  "maxrss_mib": resource.getrusage(
                      resource.RUSAGE_SELF).ru_maxrss / 1024.0}))
"""


def api_child(ds: Path, what: str):
    """finish/list through the API in a fresh child (for peak memory)."""
    wall, rss, rc, out, err = run_measured(
        [sys.executable, "-c", API_CHILD, str(ds), what], env=main_env())
    if rc:
        raise RuntimeError("api child failed: %s" % err[-2000:])
    rec = json.loads(out.strip().splitlines()[-1])
    rec["peak_rss_mib"] = rss
    rec["wall_s"] = wall
    return rec


class Cli(Variant):
    """datalad-hpcdata via the datalad command line."""
    name = "cli"
    JOB = re.compile(r"submitted Slurm job (\d+)")

    def __init__(self, ds):
        super().__init__(ds)
        self.env = main_env()

    def schedule(self, out, hold=False):
        argv = ["datalad", "slurm-schedule", "-o", out, "sbatch"] + \
            (["--hold"] if hold else []) + ["code/job.sh", out]
        wall, rss, rc, so, se = run_measured(argv, cwd=self.ds, env=self.env)
        m = self.JOB.search(so + se)
        if rc or not m:
            raise RuntimeError("cli schedule failed (%d): %s %s"
                               % (rc, so, se))
        return wall, m.group(1), rss

    def finish(self):
        wall, rss, rc, so, se = run_measured(["datalad", "slurm-finish"],
                                             cwd=self.ds, env=self.env)
        return wall, rss, so.count("slurm-finish(ok): committed job")

    def list_open(self):
        wall, rss, rc, so, se = run_measured(
            ["datalad", "-f", "json", "slurm-finish", "--list-open-jobs"],
            cwd=self.ds, env=self.env)
        n = sum(1 for l in so.splitlines() if '"status": "ok"' in l)
        return wall, rss, n


class Peer(Variant):
    """datalad-slurm 0.2.8 via its own venv's datalad command."""
    name = "peer"

    def __init__(self, ds, peer):
        super().__init__(ds)
        self.cmd = peer["datalad_cmd"]
        self.env = peer_env(Path(peer["venv"]))

    @property
    def db(self):
        dsid = sh(["git", "config", "-f", ".datalad/config",
                   "datalad.dataset.id"], cwd=self.ds).stdout.strip()
        return self.ds / ".git" / ("%s.db" % (dsid or "datalad-slurm"))

    def open_ids(self):
        if not self.db.exists():
            return set()
        con = sqlite3.connect(str(self.db))
        try:
            return {str(r[0]) for r in con.execute(
                "SELECT slurm_job_id FROM open_jobs")}
        except sqlite3.OperationalError:
            return set()
        finally:
            con.close()

    def schedule(self, out, hold=False):
        before = self.open_ids()
        argv = [self.cmd, "slurm-schedule", "-o", out, "sbatch"] + \
            (["--hold"] if hold else []) + ["code/job.sh", out]
        wall, rss, rc, so, se = run_measured(argv, cwd=self.ds, env=self.env)
        new = self.open_ids() - before
        if rc or len(new) != 1:
            raise RuntimeError("peer schedule failed (%d): %s %s"
                               % (rc, so, se))
        return wall, new.pop(), rss

    def finish(self):
        before = commits(self.ds)
        wall, rss, rc, so, se = run_measured([self.cmd, "slurm-finish"],
                                             cwd=self.ds, env=self.env)
        return wall, rss, commits(self.ds) - before

    def list_open(self):
        wall, rss, rc, so, se = run_measured(
            [self.cmd, "slurm-finish", "--list-open-jobs"],
            cwd=self.ds, env=self.env)
        if rc:
            raise RuntimeError("peer list failed: %s" % se[-2000:])
        return wall, rss, len(self.open_ids())

    def seed(self, jobs):
        """Insert open_jobs rows (schema of datalad-slurm 0.2.8) for real
        held jobs, exactly as its schedule would have."""
        dsid = sh(["git", "config", "-f", ".datalad/config",
                   "datalad.dataset.id"], cwd=self.ds).stdout.strip()
        con = sqlite3.connect(str(self.db))
        con.executescript("""
        CREATE TABLE IF NOT EXISTS open_jobs (slurm_job_id INTEGER,
          message TEXT, chain TEXT CHECK (json_valid(chain)), cmd TEXT,
          dsid TEXT, inputs TEXT CHECK (json_valid(inputs)),
          extra_inputs TEXT CHECK (json_valid(extra_inputs)),
          outputs TEXT CHECK (json_valid(outputs)),
          slurm_outputs TEXT CHECK (json_valid(slurm_outputs)),
          pwd TEXT, alt_dir TEXT);
        CREATE TABLE IF NOT EXISTS locked_prefixes (slurm_job_id INTEGER,
          prefix TEXT);
        CREATE TABLE IF NOT EXISTS locked_names (slurm_job_id INTEGER,
          name TEXT);
        """)
        for jid, out in jobs:
            con.execute(
                "INSERT INTO open_jobs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (int(jid), None, "[]", "sbatch --hold code/job.sh %s" % out,
                 dsid, "[]", "[]", json.dumps(["./" + out]),
                 json.dumps(["slurm-%s.out" % jid,
                             "slurm-job-%s.env.json" % jid]), ".", ""))
            con.execute("INSERT INTO locked_names VALUES (?,?)",
                        (int(jid), "./" + out))
            for pre in (".", "./out"):
                con.execute("INSERT INTO locked_prefixes VALUES (?,?)",
                            (int(jid), pre))
        con.commit()
        con.close()


def commits(ds: Path) -> int:
    return int(sh(["git", "rev-list", "--count", "HEAD"],
                  cwd=ds).stdout.strip() or 0)


# ------------------------------------------------------------------ floors

def floor_sbatch(ds: Path, reps: int, scratch: Path, ids=None):
    """Bare sbatch of the same job script (outputs into a scratch dir);
    the job ids go to `ids`."""
    scratch.mkdir(parents=True, exist_ok=True)
    times = []
    ids = [] if ids is None else ids
    for i in range(reps):
        t0 = time.perf_counter()
        p = sh(["sbatch", "--parsable", "--chdir", str(scratch),
                str(ds / "code" / "job.sh"), "out/floor%d" % i])
        times.append(time.perf_counter() - t0)
        if p.returncode:
            raise RuntimeError("sbatch failed: %s" % p.stderr)
        jid = p.stdout.strip().split(";")[0]
        SUBMITTED.add(jid)
        ids.append(jid)
    wait_done(ids)
    SUBMITTED.difference_update(ids)
    return times


def floor_commit(ds: Path, reps: int):
    """One file committed with index-free plumbing on refs/bench/floor:
    hash-object -w, mktree (root tree + 1 entry), commit-tree, update-ref."""
    head = sh(["git", "rev-parse", "HEAD"], cwd=ds).stdout.strip()
    root_tree = sh(["git", "ls-tree", "HEAD"], cwd=ds).stdout
    parent = head
    times = []
    for i in range(reps):
        content = "floor %d %f\n" % (i, time.time())
        t0 = time.perf_counter()
        blob = sh(["git", "hash-object", "-w", "--stdin"], cwd=ds,
                  input=content).stdout.strip()
        tree = sh(["git", "mktree"], cwd=ds, input=root_tree +
                  "100644 blob %s\tbench-floor.txt\n" % blob).stdout.strip()
        commit = sh(["git", "commit-tree", tree, "-p", parent, "-m",
                     "floor %d" % i], cwd=ds).stdout.strip()
        sh(["git", "update-ref", "refs/bench/floor", commit], cwd=ds)
        times.append(time.perf_counter() - t0)
        parent = commit
    sh(["git", "update-ref", "-d", "refs/bench/floor"], cwd=ds)
    return times


def floor_annex_add(ds: Path, reps: int, n_files: int, commit=False):
    """`git annex add` of n_files small new files into a scratch index, the
    way slurm-finish stages a call's outputs (package code: the git-annex
    binary, the keys-database guard, location logs left in the journal);
    per call.  With `commit`, as a user's ``annex.alwayscommit=true`` has
    it: git-annex commits its journal to the git-annex branch (through
    ``.git/annex/index``, one entry per key) at the end of the call."""
    from datalad_hpcdata.dataset.scratch import _config_env
    saved = dict(os.environ)
    if commit:
        os.environ.update(_config_env("annex.alwayscommit", "true"))
    try:
        return _floor_annex_add(ds, reps, n_files)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _floor_annex_add(ds: Path, reps: int, n_files: int):
    from datalad_hpcdata.dataset.scratch import annex_add
    times = []
    base = ds / "out" / "floor-annex"
    for i in range(reps):
        d = base / str(i)
        d.mkdir(parents=True)
        files = []
        for k in range(n_files):
            (d / ("f%d.txt" % k)).write_text("floor %d %d %f\n"
                                            % (i, k, time.time()))
            files.append("out/floor-annex/%d/f%d.txt" % (i, k))
        t0 = time.perf_counter()
        annex_add(str(ds), files, str(ds / ".git" / "bench-floor.index"))
        times.append(time.perf_counter() - t0)
    shutil.rmtree(base, ignore_errors=True)
    return times


def floor_sacct(ids, reps: int):
    """One sacct call for one finished job (the state query of a finish)."""
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        sacct_states([ids[i % len(ids)]])
        times.append(time.perf_counter() - t0)
    return times


# ------------------------------------------------------------------ phases

def one_job(v, what):
    """Schedule one job of variant `v`, wait for it, finish it: (schedule
    seconds, finish seconds, finish peak RSS); an error unless that finish
    committed exactly one job (`what` names the step in it)."""
    dt, jid, _ = v.schedule(v.next_out(v.name[0]))
    SUBMITTED.add(jid)
    wait_done([jid])
    dt_finish, rss, n = v.finish()
    if n != 1:
        raise RuntimeError("%s %s finish committed %s" % (v.name, what, n))
    SUBMITTED.discard(jid)
    return dt, dt_finish, rss


def measure_variant(v, rounds, batch, singles, res, first=False):
    """schedule K jobs (each timed), wait, list the K open jobs (timed), ONE
    finish (timed); repeat.  Then `singles` times: schedule 1, wait, finish.

    With `first`, the warm-up finish commits one job, so that one-time
    costs of the dataset (splitting a large index) land there, reported as
    ``first_finish_s``, not in the steady-state figures."""
    sched, sched_rss, fin_many, fin_rss, fin_single = [], [], [], [], []
    listing = []
    if first:
        _, res["first_finish_s"], _ = one_job(v, "first")
    else:
        v.finish()      # warm-up (imports, bytecode cache); nothing open
    for r in range(rounds):
        ids = []
        for _ in range(batch):
            dt, jid, rss = v.schedule(v.next_out(v.name[0]))
            SUBMITTED.add(jid)
            ids.append(jid)
            sched.append(dt)
            if rss:
                sched_rss.append(rss)
        wait_done(ids)
        dt, _, k = v.list_open()
        if k != batch:
            raise RuntimeError("%s listed %s of %d open jobs"
                               % (v.name, k, batch))
        listing.append(dt)
        dt, rss, n = v.finish()
        if n != batch:
            raise RuntimeError("%s finish committed %s of %d jobs"
                               % (v.name, n, batch))
        SUBMITTED.difference_update(ids)
        fin_many.append(dt / batch)
        if rss:
            fin_rss.append(rss)
    for _ in range(singles):
        dt, dt_finish, rss = one_job(v, "single")
        sched.append(dt)
        fin_single.append(dt_finish)
        if rss:
            fin_rss.append(rss)
    res["schedule_s"] = summary(sched)
    res["finish_many_per_job_s"] = summary(fin_many)
    res["finish_many_batch"] = batch
    res["finish_single_s"] = summary(fin_single)
    res["list_batch_s"] = summary(listing)
    if sched_rss:
        res["schedule_peak_rss_mib"] = max(sched_rss)
    if fin_rss:
        res["finish_peak_rss_mib"] = max(fin_rss)


def size_phase(cfg, n, cache, peer, scratch, out):
    ds, built = fx.get_dataset(cache, n, log=log)
    rec = {"files_tracked": fx.tracked_files(ds), "dataset": str(ds),
           "fixture_build_s": built, "index": fx.index_info(ds),
           "load_start": os.getloadavg()}
    log("size %d: %s (%s)" % (n, ds, "built in %.1f s" % built if built
                               else "cached"))
    ids = []
    reps = cfg["floor_reps"]
    rec["floor"] = {
        "sbatch_s": summary(floor_sbatch(ds, reps, scratch, ids)),
        "commit_plumbing_s": summary(floor_commit(ds, reps)),
        "sacct_1_s": summary(floor_sacct(ids, reps)),
        "annex_add_4_s": summary(floor_annex_add(ds, max(3, reps // 4), 4)),
        "annex_add_80_s": summary(floor_annex_add(ds, 3, 80)),
        "annex_add_4_commit_s": summary(floor_annex_add(ds, 3, 4, True)),
    }
    f = {k: v["median"] for k, v in rec["floor"].items()}
    log("  floor: sbatch %.4f s, plumbing commit %.4f s, sacct %.4f s, "
        "annex add 4/80 files %.4f/%.4f s (4, branch committed %.4f s)" % (
            f["sbatch_s"], f["commit_plumbing_s"], f["sacct_1_s"],
            f["annex_add_4_s"], f["annex_add_80_s"],
            f["annex_add_4_commit_s"]))
    variants = [(Api(ds), "api"), (Cli(ds), "cli")]
    if peer and n <= cfg["peer_max_files"]:
        variants.append((Peer(ds, peer), "peer"))
    for v, key in variants:
        r = {}
        t = time.monotonic()
        measure_variant(v, cfg["rounds"], cfg["batch_" + key],
                        cfg["singles_" + key], r, first=key == "api")
        rec[key] = r
        log("  %-4s schedule %.4f s/job, list %d %.4f s, finish many "
            "%.4f s/job, single %.4f s  (%.0f s)" % (
                key, r["schedule_s"]["median"], cfg["batch_" + key],
                r["list_batch_s"]["median"],
                r["finish_many_per_job_s"]["median"],
                r["finish_single_s"]["median"], time.monotonic() - t))
    rec["files_tracked_after"] = fx.tracked_files(ds)
    rec["index_after"] = fx.index_info(ds)
    rec["load_end"] = os.getloadavg()
    fx.reset_dataset(ds)
    out[str(n)] = rec


def list_phase(cfg, cache, peer, out):
    n_ds = cfg["sizes"][0]
    ds, _ = fx.get_dataset(cache, n_ds, log=log)
    api = Api(ds)
    cli = Cli(ds)
    pv = Peer(ds, peer) if peer else None
    held = []          # (job id, output)
    sched_held = []
    res = {"dataset_files": n_ds, "points": {}}
    try:
        for target in cfg["open_jobs"]:
            t = time.monotonic()
            new = []
            while len(held) < target:
                o = api.next_out("h")
                dt, jid, _ = api.schedule(o, hold=True)
                SUBMITTED.add(jid)
                held.append((jid, o))
                new.append((jid, o))
                sched_held.append(dt)
            log("open jobs %d: scheduled %d held jobs via the API in %.1f s;"
                " waiting for accounting" % (target, len(new),
                                             time.monotonic() - t))
            ids = [j for j, _ in held]
            wait_visible(ids)
            if pv:
                pv.seed(new)
            p = {}
            # floor: one batched sacct for all ids
            fl = []
            for _ in range(3):
                t0 = time.perf_counter()
                sacct_states(ids)
                fl.append(time.perf_counter() - t0)
            p["floor_sacct_batched_s"] = summary(fl)
            al = []
            for _ in range(cfg["list_reps"]):
                dt, _, k = api.list_open()
                if k != target:
                    raise RuntimeError("api listed %d of %d" % (k, target))
                al.append(dt)
            p["api_s"] = summary(al)
            cl, crss = [], []
            for _ in range(cfg["list_reps_cli"]):
                dt, rss, k = cli.list_open()
                if k != target:
                    raise RuntimeError("cli listed %d of %d" % (k, target))
                cl.append(dt)
                crss.append(rss)
            p["cli_s"] = summary(cl)
            p["cli_peak_rss_mib"] = max(crss)
            ch = api_child(ds, "list")
            p["api_child_list"] = ch
            if pv:
                reps = cfg["peer_list_reps"].get(target, 1)
                pl, prss = [], []
                for _ in range(reps):
                    dt, rss, k = pv.list_open()
                    pl.append(dt)
                    prss.append(rss)
                p["peer_s"] = summary(pl)
                p["peer_peak_rss_mib"] = max(prss)
                p["peer_note"] = ("peer rows seeded into its SQLite store for "
                                  "the same held jobs (its schedule costs "
                                  "~0.3 s/job); %d run(s)" % reps)
            res["points"][str(target)] = p
            log("  list %d: api %.3f s, cli %.3f s (%.0f MiB)%s, sacct "
                "floor %.3f s" % (
                    target, p["api_s"]["median"], p["cli_s"]["median"],
                    p["cli_peak_rss_mib"],
                    ", peer %.1f s" % p["peer_s"]["median"] if pv else "",
                    p["floor_sacct_batched_s"]["median"]))
        res["schedule_held_s"] = summary(sched_held)
        # finish with the largest number of open jobs (peak memory target):
        # mem_batch completed jobs to commit + all the held ones
        top = cfg["open_jobs"][-1]
        fm = {"open_jobs": top, "completed": cfg["mem_batch"]}
        for how in ("api_child", "cli"):
            ids = []
            for _ in range(cfg["mem_batch"]):
                dt, jid, _ = api.schedule(api.next_out("m"))
                SUBMITTED.add(jid)
                ids.append(jid)
            wait_done(ids)
            if how == "cli":
                dt, rss, k = cli.finish()
                fm["cli"] = {"wall_s": dt, "peak_rss_mib": rss,
                             "committed": k}
            else:
                fm["api_child"] = api_child(ds, "finish")
                k = fm["api_child"]["committed"]
            if k != cfg["mem_batch"]:
                raise RuntimeError("finish with %d open committed %d of %d"
                                   % (top, k, cfg["mem_batch"]))
            SUBMITTED.difference_update(ids)
        res["finish_with_open_jobs"] = fm
        log("  finish with %d open + %d completed: cli %.2f s %.0f MiB, "
            "api child %.2f s %.0f MiB" % (
                top, cfg["mem_batch"], fm["cli"]["wall_s"],
                fm["cli"]["peak_rss_mib"], fm["api_child"]["call_s"],
                fm["api_child"]["peak_rss_mib"]))
    finally:
        t = time.monotonic()
        cancel([j for j, _ in held])
        log("cancelled %d held jobs in %.1f s" % (len(held),
                                                   time.monotonic() - t))
        fx.reset_dataset(ds)
    out.update(res)


# ------------------------------------------------------------------ report

def machine_info(peer):
    import datalad

    import datalad_hpcdata
    def first(argv):
        try:
            return sh(argv).stdout.strip().splitlines()[0]
        except Exception:      # noqa: BLE001
            return None
    cpu = None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    head = sh(["git", "rev-parse", "--short", "HEAD"], cwd=REPO).stdout.strip()
    dirty = bool(sh(["git", "status", "--porcelain", "-uno", "--",
                     "datalad_hpcdata"], cwd=REPO).stdout.strip())
    return {
        "host": socket.gethostname(), "cpus": os.cpu_count(), "cpu": cpu,
        "mem_gib": mem, "platform": platform.platform(),
        "python": platform.python_version(),
        "datalad": datalad.__version__,
        "datalad_hpcdata": datalad_hpcdata.__version__,
        "datalad_hpcdata_commit": head + ("+dirty" if dirty else ""),
        "git": first(["git", "--version"]),
        "git_annex": first(["git", "annex", "version", "--raw"]),
        "slurm": first(["sinfo", "--version"]),
        "slurm_cpus_advertised": first(["sinfo", "-h", "-o", "%c"]),
        "peer": peer,
    }


def check_targets(R):
    """Evaluate the issue's targets from this run's figures."""
    t = []
    sizes = R["config"]["sizes"]
    # the first performance targets were set for 100k files
    big = "100000" if 100000 in sizes else str(sizes[-1])
    small = str(sizes[0])
    S = R["sizes"]

    def m(rec, key):
        x = rec.get(key) if rec else None
        return x["median"] if x else None

    def add(name, value, limit, ok, unit="s"):
        t.append({"target": name, "value": value, "limit": limit,
                  "met": None if value is None else bool(ok), "unit": unit})

    fb = m(S[big].get("api"), "finish_many_per_job_s")
    fs = m(S[small].get("api"), "finish_many_per_job_s")
    add("finish many (API), per job at %s files <= 0.050 s" % big, fb, 0.050,
        fb is not None and fb <= 0.050)
    add("finish many (API), %s-file / %s-file per-job ratio <= 1.5"
        % (big, small), fb / fs if fb and fs else None, 1.5,
        fb and fs and fb / fs <= 1.5, "x")
    for key in ("api", "cli"):
        for n in sizes:
            if n < 10000 or "peer" not in S[str(n)]:
                continue
            ours = m(S[str(n)].get(key), "finish_many_per_job_s")
            theirs = m(S[str(n)]["peer"], "finish_many_per_job_s")
            add("finish many (%s) >= 10x faster per job than peer at %d "
                "files" % (key.upper(), n),
                theirs / ours if ours and theirs else None, 10,
                ours and theirs and theirs / ours >= 10, "x")
    sb = m(S[big]["api"], "schedule_s")
    fl = m(S[big]["floor"], "sbatch_s")
    add("schedule (API) over bare sbatch at %s files <= 0.025 s" % big,
        sb - fl if sb is not None and fl is not None else None, 0.025,
        sb is not None and sb - fl <= 0.025)
    for n in sizes:
        if "peer" not in S[str(n)]:
            continue
        ours = m(S[str(n)]["cli"], "schedule_s")
        theirs = m(S[str(n)]["peer"], "schedule_s")
        add("schedule (CLI) not slower than peer at %d files (ours/peer)" % n,
            ours / theirs if ours and theirs else None, 1.0,
            ours and theirs and ours <= theirs, "x")
    flat_targets(R, m, add)
    L = R.get("list", {}).get("points", {})
    top = str(R["config"]["open_jobs"][-1])
    if top in L:
        for key in ("api", "cli"):
            v = L[top][key + "_s"]["median"]
            add("list open jobs (%s) with %s open <= 2 s" % (key.upper(), top),
                v, 2.0, v <= 2.0)
    fo = R.get("list", {}).get("finish_with_open_jobs")
    if fo:
        for key in ("cli", "api_child"):
            v = fo[key]["peak_rss_mib"]
            add("peak memory of finish (%s) with %s open jobs <= 300 MB"
                % (key.replace("_child", "").upper(), fo["open_jobs"]), v,
                300 / 1.048576, v <= 300 / 1.048576, "MiB")
    return t


FLAT_RATIO = 1.3
FLAT_KEYS = (("schedule", "schedule_s"),
             ("finish many", "finish_many_per_job_s"),
             ("finish one at a time", "finish_single_s"),
             ("list open jobs", "list_batch_s"))


def flat_targets(R, m, add):
    """Issue 16: at 1M files finish costs <= 10 ms/job (API, 20 per call)
    and <= 0.2 s for one job per call, and every 1M figure is within 1.3x
    of the 10k one."""
    S = R["sizes"]
    huge = max((n for n in R["config"]["sizes"] if n >= 1000000),
               default=None)
    if huge is None or "10000" not in S:
        return []
    h, ref = S[str(huge)], S["10000"]
    fm = m(h.get("api"), "finish_many_per_job_s")
    add("finish many (API), per job at %d files <= 0.010 s" % huge, fm,
        0.010, fm is not None and fm <= 0.010)
    fs = m(h.get("api"), "finish_single_s")
    add("finish one at a time (API) at %d files <= 0.2 s" % huge, fs, 0.2,
        fs is not None and fs <= 0.2)
    for var in ("api", "cli"):
        for label, key in FLAT_KEYS:
            a, b = m(h.get(var), key), m(ref.get(var), key)
            r = a / b if a and b else None
            add("%s (%s), %d-file / 10000-file ratio <= %.1f"
                % (label, var.upper(), huge, FLAT_RATIO), r, FLAT_RATIO,
                r is not None and r <= FLAT_RATIO, "x")


def fmt(x, unit="s"):
    if x is None:
        return "–"
    if unit == "s":
        if x >= 10:
            return "%.1f s" % x
        if x >= 1:
            return "%.2f s" % x
        return "%.1f ms" % (x * 1000)
    if unit == "x":
        return "%.2f×" % x if x < 10 else "%.0f×" % x
    return "%.0f %s" % (x, unit)


def ratio(a, b):
    return a / b if a and b else None


def write_markdown(R, path: Path):
    S, sizes = R["sizes"], R["config"]["sizes"]
    M = R["machine"]
    has_peer = any("peer" in S[str(n)] for n in sizes)
    L = []
    w = L.append
    w("# Login-node cost: datalad-hpcdata vs datalad-slurm %s vs bare sbatch"
      % PEER_VERSION)
    w("")
    w("Generated by `python tools/bench.py%s` on %s (%s UTC), one run; "
      "every figure is the median of the repeated measurements listed in "
      "`results.json`, every ratio is between figures of this same run."
      % (" --quick" if R["config"]["quick"] else "",
         M["host"], R["finished"]))
    w("")
    w("Machine: %s CPUs (%s), %s GiB RAM, %s. Python %s, DataLad %s, "
      "datalad-hpcdata %s (commit %s), %s, git-annex %s, %s (node advertises "
      "%s CPUs)%s." % (
          M["cpus"], M["cpu"], M["mem_gib"], M["platform"], M["python"],
          M["datalad"], M["datalad_hpcdata"], M["datalad_hpcdata_commit"],
          M["git"], M["git_annex"], M["slurm"], M["slurm_cpus_advertised"],
          "; peer: datalad-slurm %s with DataLad %s in its own venv"
          % (M["peer"]["datalad_slurm"], M["peer"]["datalad"])
          if M.get("peer") else ""))
    w("")
    w("Variants: **floor** = bare `sbatch` of the same job script / one "
      "index-free plumbing commit of one file (hash-object, mktree, "
      "commit-tree, update-ref); **API** = `datalad.api.slurm_*` in one "
      "Python process; **CLI** = `datalad slurm-schedule` / `datalad "
      "slurm-finish` commands; **peer** = datalad-slurm %s commands. Each job "
      "writes 3 small files into `out/<n>/` (declared `-o out/<n>`); the "
      "Slurm log is committed too." % PEER_VERSION)
    w("")
    w("## Per-job cost vs dataset size")
    w("")
    hdr = "| measure | variant | " + " | ".join(
        "%s files" % format(n, ",") for n in sizes) + " |"
    w(hdr)
    w("|" + "---|" * (2 + len(sizes)))

    def row(label, var, key, sub=None):
        if not any(var in S[str(n)] for n in sizes):
            return
        cells = []
        for n in sizes:
            rec = S[str(n)].get(var)
            x = rec.get(key) if rec else None
            cells.append(fmt(x["median"]) if x else "–")
        w("| %s | %s | %s |" % (label, var, " | ".join(cells)))
    row("schedule, per job", "floor", "sbatch_s")
    for var in ("api", "cli", "peer"):
        row("schedule, per job", var, "schedule_s")
    w("| plumbing commit of 1 file | floor | %s |" % " | ".join(
        fmt(S[str(n)]["floor"]["commit_plumbing_s"]["median"])
        for n in sizes))
    for var in ("api", "cli", "peer"):
        batch = next((S[str(n)][var]["finish_many_batch"] for n in sizes
                      if var in S[str(n)]), None)
        if batch is None:
            continue
        row("finish, %s jobs in one call, per job" % batch, var,
            "finish_many_per_job_s")
    for var in ("api", "cli", "peer"):
        row("finish, one job at a time", var, "finish_single_s")
    for var in ("api", "cli", "peer"):
        batch = next((S[str(n)][var]["finish_many_batch"] for n in sizes
                      if var in S[str(n)]), None)
        if batch is not None:
            row("list %d open jobs, per call" % batch, var, "list_batch_s")
    w("| first finish after a fresh build (one job; one-time costs) | api "
      "| %s |" % " | ".join(fmt(S[str(n)]["api"].get("first_finish_s"))
                            for n in sizes))
    for label, key in (("one sacct call (1 job)", "sacct_1_s"),
                       ("git annex add, 4 files (one job)", "annex_add_4_s"),
                       ("git annex add, 80 files (20 jobs)",
                        "annex_add_80_s"),
                       ("git annex add, 4 files, git-annex branch committed "
                        "(annex.alwayscommit=true)", "annex_add_4_commit_s")):
        row("floor: %s, per call" % label, "floor", key)
    w("| peak RSS, CLI finish | cli | %s |" % " | ".join(
        fmt(S[str(n)]["cli"].get("finish_peak_rss_mib"), "MiB")
        for n in sizes))
    if has_peer:
        w("| peak RSS, CLI finish | peer | %s |" % " | ".join(
            fmt(S[str(n)].get("peer", {}).get("finish_peak_rss_mib"), "MiB")
            for n in sizes))
    w("| files tracked (fixture) | | %s |" % " | ".join(
        format(S[str(n)]["files_tracked"], ",") for n in sizes))
    w("| load average (1 min) at start / end of the size | | %s |"
      % " | ".join("%.1f / %.1f" % (S[str(n)]["load_start"][0],
                                    S[str(n)]["load_end"][0])
                   if "load_start" in S[str(n)] else "–" for n in sizes))

    def mib(b):
        return "%.1f MiB" % (b / 2**20) if b is not None else "–"
    w("| index file / shared index after the run | | %s |" % " | ".join(
        "%s / %s" % (mib(S[str(n)]["index_after"]["index_bytes"]),
                     mib(S[str(n)]["index_after"]["shared_bytes"]))
        if "index_after" in S[str(n)] else "–" for n in sizes))
    w("")
    w("### Ratios (same run)")
    w("")
    w("| ratio | " + " | ".join("%s files" % format(n, ",") for n in sizes)
      + " |")
    w("|" + "---|" * (1 + len(sizes)))

    def rrow(label, fn):
        w("| %s | %s |" % (label, " | ".join(fmt(fn(S[str(n)]), "x")
                                            for n in sizes)))

    def med(rec, var, key):
        x = rec.get(var, {}).get(key)
        return x["median"] if x else None
    ratios = [
        ("API schedule / bare sbatch", "api", "schedule_s",
         "floor", "sbatch_s"),
        ("CLI schedule / bare sbatch", "cli", "schedule_s",
         "floor", "sbatch_s"),
        ("API finish many per job / plumbing commit", "api",
         "finish_many_per_job_s", "floor", "commit_plumbing_s")]
    if has_peer:
        ratios = [
            ("peer / API, finish many per job", "peer",
             "finish_many_per_job_s", "api", "finish_many_per_job_s"),
            ("peer / CLI, finish many per job", "peer",
             "finish_many_per_job_s", "cli", "finish_many_per_job_s"),
            ("peer / CLI, finish one at a time", "peer", "finish_single_s",
             "cli", "finish_single_s"),
            ("peer / API, schedule", "peer", "schedule_s", "api",
             "schedule_s"),
            ("peer / CLI, schedule", "peer", "schedule_s", "cli",
             "schedule_s")] + ratios
    for label, nvar, nkey, dvar, dkey in ratios:
        rrow(label, lambda r, nvar=nvar, nkey=nkey, dvar=dvar, dkey=dkey:
             ratio(med(r, nvar, nkey), med(r, dvar, dkey)))
    w("")
    w("Overhead of the API schedule over bare sbatch: %s." % ", ".join(
        "%s at %s files" % (fmt(med(S[str(n)], "api", "schedule_s") -
                                med(S[str(n)], "floor", "sbatch_s")),
                            format(n, ",")) for n in sizes))
    Lst = R.get("list")
    if Lst:
        w("")
        w("## List open jobs vs number of open jobs")
        w("")
        w("Held jobs (`sbatch --hold`) scheduled through our API in a "
          "%s-file dataset; per-job API schedule cost while the open-job "
          "count grew: %s (median of %d)." % (
              format(Lst["dataset_files"], ","),
              fmt(Lst["schedule_held_s"]["median"]),
              Lst["schedule_held_s"]["n"]))
        if has_peer:
            w("The peer's SQLite store was seeded with rows for the same "
              "held jobs (its schedule would cost ~0.3 s per job); its "
              "list makes one `sacct` call per job.")
        w("")
        pts = Lst["points"]
        keys = list(pts)
        w("| variant | " + " | ".join("%s open" % format(int(k), ",")
                                     for k in keys) + " |")
        w("|" + "---|" * (1 + len(keys)))
        w("| floor: one batched `sacct` | %s |" % " | ".join(
            fmt(pts[k]["floor_sacct_batched_s"]["median"]) for k in keys))
        w("| API | %s |" % " | ".join(fmt(pts[k]["api_s"]["median"])
                                     for k in keys))
        w("| CLI | %s |" % " | ".join(fmt(pts[k]["cli_s"]["median"])
                                     for k in keys))
        w("| CLI peak RSS | %s |" % " | ".join(
            fmt(pts[k]["cli_peak_rss_mib"], "MiB") for k in keys))
        if has_peer:
            w("| peer (runs) | %s |" % " | ".join(
                "%s (%d)" % (fmt(pts[k]["peer_s"]["median"]),
                             pts[k]["peer_s"]["n"]) if "peer_s" in pts[k]
                else "–" for k in keys))
            w("| peer per open job | %s |" % " | ".join(
                fmt(pts[k]["peer_s"]["median"] / int(k))
                if "peer_s" in pts[k] else "–" for k in keys))
            w("| peer / CLI | %s |" % " | ".join(
                fmt(ratio(pts[k]["peer_s"]["median"],
                          pts[k]["cli_s"]["median"]), "x")
                if "peer_s" in pts[k] else "–" for k in keys))
        fo = Lst.get("finish_with_open_jobs")
        if fo:
            w("")
            w("`slurm-finish` with %s open held jobs plus %d completed ones "
              "(commits the %d, leaves the rest): CLI %s, peak RSS %s; API "
              "in a fresh process %s for the call (+%s import), peak RSS %s."
              % (format(fo["open_jobs"], ","), fo["completed"],
                 fo["completed"], fmt(fo["cli"]["wall_s"]),
                 fmt(fo["cli"]["peak_rss_mib"], "MiB"),
                 fmt(fo["api_child"]["call_s"]),
                 fmt(fo["api_child"]["import_s"]),
                 fmt(fo["api_child"]["peak_rss_mib"], "MiB")))
            if has_peer:
                w("The peer is not run on this case: it would make one "
                  "`sacct` call per open job (~0.1 s each).")
    w("")
    w("## Targets (from this run)")
    w("")
    w("| target | value | met |")
    w("|---|---|---|")
    for t in R["targets"]:
        w("| %s | %s | %s |" % (t["target"], fmt(t["value"], t["unit"]),
                               {True: "yes", False: "**no**",
                                None: "n/a"}[t["met"]]))
    w("")
    w("## Physical floor")
    w("")
    for n in sizes:
        f = S[str(n)]["floor"]

        def fm(key, f=f):
            return fmt(f[key]["median"]) if key in f else "–"
        w("* %s files: bare `sbatch` %s per job; one-file plumbing commit "
          "%s; one `sacct` %s; `git annex add` of 4 / 80 new files %s / %s "
          "per call (4 files with git-annex's branch commit, which a "
          "finish leaves to the next git-annex command: %s)."
          % (format(n, ","), fm("sbatch_s"), fm("commit_plumbing_s"),
             fm("sacct_1_s"), fm("annex_add_4_s"), fm("annex_add_80_s"),
             fm("annex_add_4_commit_s")))
    w("")
    w("Load average (1/5/15 min) at the start of the run: %s; at the end: "
      "%s." % tuple(" / ".join("%.2f" % x for x in R.get(k) or ())
                   or "–" for k in ("load_start", "load_end")))
    if R.get("notes"):
        w("")
        w("## Notes")
        w("")
        for n in R["notes"]:
            w("* " + n)
    path.write_text("\n".join(L) + "\n")


# ------------------------------------------------------------------ main

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes and few repetitions, no peer unless "
                    "--with-peer (proves the benchmark works)")
    ap.add_argument("--with-peer", action="store_true",
                    help="include the peer in --quick mode")
    ap.add_argument("--no-peer", action="store_true",
                    help="skip the peer in the full run")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks"),
                    help="output directory (default docs/benchmarks)")
    ap.add_argument("--cache", default=None,
                    help="dataset cache directory (default: %s on tmpfs "
                    "when it has room for the sizes, else %s)"
                    % (fx.TMPFS_CACHE, fx.DISK_CACHE))
    ap.add_argument("--keep-cache", action="store_true",
                    help="keep datasets of %s files and more on tmpfs "
                    "after the run (they are removed by default: memory)"
                    % format(fx.BIG, ","))
    ap.add_argument("--peer-max-files", type=int,
                    help="largest dataset the peer is run on (default "
                    "100000: its finish costs seconds per job at 1M)")
    ap.add_argument("--peer-venv", default="/tmp/peer-venv")
    ap.add_argument("--sizes", help="comma-separated dataset sizes")
    ap.add_argument("--open-jobs", help="comma-separated open-job counts")
    ap.add_argument("--skip-list", action="store_true",
                    help="skip the list-open-jobs phase")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--record-jobs", metavar="FILE",
                    help="write every job id this run submitted to FILE")
    ap.add_argument("--report", metavar="JSON",
                    help="measure nothing: rewrite results.md/png in --out "
                    "from an existing results.json")
    return ap.parse_args(argv)


def write_reports(R, out: Path, plot=True):
    R["targets"] = check_targets(R)
    (out / "results.json").write_text(json.dumps(R, indent=1) + "\n")
    write_markdown(R, out / "results.md")
    if plot:
        try:
            import bench_plot
            bench_plot.plot(R, out / "results.png")
        except ImportError as e:
            log("no plot (%s); pip install matplotlib" % e)


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        R = json.loads(Path(args.report).read_text())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_reports(R, out, not args.no_plot)
        return 0
    ok, why = slurm_usable()
    if not ok:
        print("Slurm cluster unusable: %s (run tools/slurm-cluster.sh up)"
              % why, file=sys.stderr)
        return 2
    cfg = dict(QUICK if args.quick else FULL)
    cfg["peer_list_reps"] = dict(cfg["peer_list_reps"])
    if args.sizes:
        cfg["sizes"] = [int(x) for x in args.sizes.split(",")]
    if args.open_jobs:
        cfg["open_jobs"] = [int(x) for x in args.open_jobs.split(",")]
    if args.peer_max_files is not None:
        cfg["peer_max_files"] = args.peer_max_files
    cfg["quick"] = args.quick
    use_peer = args.with_peer if args.quick else not args.no_peer
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else fx.choose_cache(cfg["sizes"])
    for n in cfg["sizes"]:
        fx.check_room(cache, n)
    cfg["cache"] = str(cache)
    scratch = cache / "scratch-floor"
    PYCACHE["dir"] = str(cache / "pycache")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *a: sys.exit(130))
    R = {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
         "config": cfg, "sizes": {}, "notes": [],
         "load_start": os.getloadavg()}
    try:
        peer = ensure_peer(Path(args.peer_venv)) if use_peer else None
        R["machine"] = machine_info(peer)
        log("machine:", json.dumps({k: v for k, v in R["machine"].items()
                                    if k != "peer"}))
        for n in cfg["sizes"]:
            size_phase(cfg, n, cache, peer, scratch, R["sizes"])
            # what is measured so far survives a failure later in the run
            (out / "results.partial.json").write_text(json.dumps(R))
        if not args.skip_list:
            R["list"] = {}
            list_phase(cfg, cache, peer, R["list"])
    finally:
        cleanup_all()
        if args.record_jobs:
            Path(args.record_jobs).write_text("".join(
                "%s\n" % j for j in sorted(SUBMITTED.ever, key=int)))
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.keep_cache:
            for p in fx.drop_big(cache, cfg["sizes"]):
                log("removed %s (tmpfs memory; --keep-cache keeps it)" % p)
    R["load_end"] = os.getloadavg()
    R["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    R["duration_s"] = round(time.monotonic() - T0, 1)
    R["notes"].append(
        "Both command lines (ours and the peer's) run with cached bytecode "
        "(PYTHONPYCACHEPREFIX under the cache dir, PYTHONDONTWRITEBYTECODE "
        "unset), as after a pip install; each variant makes one warm-up "
        "finish call first.")
    R["notes"].append(
        "Fixtures (tools/bench_fixtures.py, version %d): 90%% annexed "
        "symlinks, 10%% small files in git, and a location log for every "
        "annexed key in the git-annex branch (so .git/annex/index has one "
        "entry per key, as in a real dataset). slurm-finish leaves the "
        "location logs of its git annex add in git-annex's journal "
        "(annex.alwayscommit=false); the floor 'git annex add, 4 files, "
        "git-annex branch committed' is what each finish would cost "
        "otherwise." % fx.FIXTURE_VERSION)
    R["notes"].append(
        "Bare-sbatch floor jobs run in a scratch directory; all other jobs "
        "run in the dataset. Timings include Slurm round trips (sbatch, "
        "scontrol, sacct ~0.1 s per call on this cluster).")
    write_reports(R, out, not args.no_plot)
    log("wrote %s/results.{json,md%s} in %.0f s" % (
        out, "" if args.no_plot else ",png", R["duration_s"]))
    for t in R["targets"]:
        log("target %-4s %s: %s" % ({True: "MET", False: "MISS",
                                     None: "n/a"}[t["met"]], t["target"],
                                    fmt(t["value"], t["unit"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
