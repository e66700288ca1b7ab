#!/usr/bin/env python
"""Throughput of the hpcdata special remote against its anchors.

Everything on this machine, on loopback, files and server data on tmpfs:

* ``large``: one 1 GiB file up and down through S3 (SeaweedFS ``weed
  mini``): raw boto3 ``upload_file``/``download_file`` (default transfer
  settings, time of the call), this remote (``git annex copy --to`` /
  ``git annex get``, default settings) and git-annex's built-in S3 remote
  (``type=S3`` on the same server); downloads also with git-annex's own
  hash check off (``annex.verify=false`` plus, for external remotes,
  ``annex-security-allow-unverified-downloads=ACKTHPPT``: git-annex
  ignores ``annex.verify`` for them otherwise; this remote still checks
  the ETag), and git-annex's hash of the file alone (``fsck``);
* ``zenodo``: ``git annex get`` of a 1 GiB Zenodo file from a loopback
  server that sends it with ``sendfile``, against ``curl`` from that server
  (and ``curl | md5sum``, the same check the remote makes); also the
  remote's download code alone (Python API, no git-annex);
* ``small``: 2,000 files of 4 KiB, ``git annex copy -J1`` and ``-J8`` and
  ``get -J8``: this remote against the built-in S3 remote;
* ``memory``: peak RSS of every remote process (a wrapper records
  ``VmHWM``), for the 1 GiB file and a 256 MiB one;
* ``sweep``: part size x concurrency of this remote's S3 engine (Python
  API, a process per setting): where the defaults come from.

Every figure is the median of repeated runs, the variants interleaved in
each round; CPU seconds of the client (``wait4``) and of the server are
recorded with each sample.  Results: ``remote-results.json``, ``.md`` and
``.png`` in ``--out`` (default docs/benchmarks/).

    python tools/bench_remote.py               # full run (~35 min)
    python tools/bench_remote.py --quick       # tiny sizes, ~2 min
    python tools/bench_remote.py --report docs/benchmarks/remote-results.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_remote_env as envmod  # noqa: E402
from bench_remote_env import MIB, run, run_timed, take_rss  # noqa: E402

FULL = dict(large=1024 * MIB, reps=3, files=2000, file_size=4096,
            small_reps=3, mem_sizes=[256 * MIB], units=[8, 16, 32, 64],
            concurrencies=[2, 4, 8], sweep_reps=2)
QUICK = dict(large=24 * MIB, reps=1, files=40, file_size=4096,
             small_reps=1, mem_sizes=[8 * MIB], units=[8], concurrencies=[2],
             sweep_reps=1)
ZENODO_RECORD = "4242"


class Bench:
    def __init__(self, cfg: dict, root: Path, s3: envmod.Seaweed) -> None:
        self.cfg = cfg
        self.root = root
        self.s3 = s3
        self.bindir, self.rssdir = root / "bin", root / "rss"
        envmod.remote_wrapper(self.bindir, self.rssdir)
        self.env = envmod.git_env({"PYTHONPATH": str(envmod.REPO)},
                                  self.bindir)
        self.allowed = "127.0.0.1 %s" % self.s3.ip
        self.results: dict = {"samples": {}}

    # -- helpers ----------------------------------------------------------
    def sample(self, name: str, record: dict) -> dict:
        record.pop("stdout", None)
        (record["remote_rss"], record["remote_cpu"],
         record["remotes"]) = take_rss(self.rssdir)
        self.results["samples"].setdefault(name, []).append(record)
        print("  %-34s %7.2f s  cpu %6.2f s  remote %s  server %s  rss %s"
              % (name, record["wall"], record["cpu"],
                 "%.2f s" % record["remote_cpu"]
                 if record["remote_cpu"] is not None else "-",
                 "%.2f s" % record["server_cpu"]
                 if record.get("server_cpu") is not None else "-",
                 "%d MiB" % (record["remote_rss"] // MIB)
                 if record["remote_rss"] else "-"), flush=True)
        return record

    def git(self, repo: Path, *args: str) -> str:
        take_rss(self.rssdir)
        return run(["git", *args], repo, self.env)

    def timed(self, name: str, repo: Path, *args: str,
              server: object = None) -> dict:
        take_rss(self.rssdir)
        return self.sample(name, run_timed(list(args), repo, self.env,
                                           server or self.s3))

    def phase(self, name: str, repo: Path, *args: str) -> None:
        take_rss(self.rssdir)
        got = envmod.phases(["git", "annex", *args, "big.bin"], repo,
                            self.env)
        take_rss(self.rssdir)
        self.results.setdefault("phases", {})[name] = got
        print("  phases of %-24s %s" % (name, ", ".join(
            "%s %.2f s" % kv for kv in got.items())), flush=True)

    def init_s3_remotes(self, repo: Path, ours: str, builtin: str) -> None:
        self.git(repo, "annex", "initremote", ours, "type=external",
                 "externaltype=hpcdata", "encryption=none", "store=s3",
                 "bucket=" + ours, "endpoint=" + self.s3.endpoint,
                 "region=us-east-1", "addressing=path")
        # the settings git-annex's S3 remote needs for a local endpoint
        self.git(repo, "annex", "initremote", builtin, "type=S3",
                 "host=" + self.s3.ip, "protocol=http", "requeststyle=path",
                 "signature=v4", "region=us-east-1", "bucket=" + builtin,
                 "encryption=none")

    def boto3(self, name: str, op: str, path: Path, bucket: str,
              key: str) -> dict:
        argv = [sys.executable, str(HERE / "bench_remote.py"), "--boto3", op,
                str(path), bucket, key, self.s3.endpoint]
        record = run_timed(argv, self.root, self.env, self.s3)
        got = json.loads(record["stdout"])
        record.update(process_wall=record["wall"], wall=got["call"],
                      maxrss=got["peak"])
        return self.sample(name, record)

    # -- phases -------------------------------------------------------------
    def large(self) -> None:
        size = self.cfg["large"]
        repo = envmod.make_repo(self.root / "large", self.env, self.allowed)
        self.init_s3_remotes(repo, "ours", "builtin")
        self.s3.client().create_bucket(Bucket="boto3")
        envmod.write_random(repo / "big.bin", size)
        self.git(repo, "annex", "add", "big.bin")
        self.git(repo, "commit", "-qm", "big")
        key = self.git(repo, "annex", "lookupkey", "big.bin").strip()
        obj = repo / self.git(repo, "annex", "contentlocation", key).strip()
        self.large_obj = obj
        out = self.root / "boto3.out"
        for rep in range(self.cfg["reps"]):
            print("large, round %d" % (rep + 1), flush=True)
            self.boto3("large upload boto3", "upload", obj, "boto3", key)
            for r in ("ours", "builtin"):
                self.timed("large upload " + r, repo, "git", "annex", "copy",
                           "--to=" + r, "big.bin")
            self.boto3("large download boto3", "download", out, "boto3", key)
            out.unlink()
            for verify in ("", " noverify"):
                for r in ("ours", "builtin"):
                    self.git(repo, "annex", "drop", "big.bin")
                    extra = unverified(r) if verify else []
                    self.timed("large download %s%s" % (r, verify), repo,
                               "git", *extra, "annex", "get", "--from=" + r,
                               "big.bin")
            # what git-annex's own hash of the file costs (it checks
            # every download from an external remote)
            self.timed("large git-annex hash", repo, "git", "annex", "fsck",
                       "big.bin")
            if rep == 0:  # once: where the time of a transfer goes
                self.git(repo, "annex", "drop", "big.bin")
                self.phase("large download ours", repo, "get",
                           "--from=ours")
                self.git(repo, "annex", "drop", "--force", "--from=ours",
                         "big.bin")
                self.phase("large upload ours", repo, "copy", "--to=ours")
            for r in ("ours", "builtin"):
                self.git(repo, "annex", "drop", "--force", "--from=" + r,
                         "big.bin")
            for bucket in ("ours", "builtin", "boto3"):
                self.s3.empty(bucket)
        self.memory_sizes(repo)

    def memory_sizes(self, repo: Path) -> None:
        """The remote's peak memory for smaller files (vs the large one)."""
        for size in self.cfg["mem_sizes"]:
            name = "mem%d.bin" % (size // MIB)
            envmod.write_random(repo / name, size)
            self.git(repo, "annex", "add", name)
            label = "memory %d MiB" % (size // MIB)
            self.timed(label + " upload ours", repo, "git", "annex", "copy",
                       "--to=ours", name)
            self.git(repo, "annex", "drop", name)
            self.timed(label + " download ours", repo, "git", "annex", "get",
                       "--from=ours", name)
            self.git(repo, "annex", "drop", "--force", name)
            self.git(repo, "annex", "drop", "--force", "--from=ours", name)
        self.s3.empty("ours")

    def zenodo(self) -> None:
        src = self.root / "zenodo" / "big.bin"
        src.parent.mkdir()
        envmod.write_random(src, self.cfg["large"])
        md5 = hashlib.md5()
        with open(src, "rb") as handle:
            for chunk in iter(lambda: handle.read(8 * MIB), b""):
                md5.update(chunk)
        server = envmod.ZenodoServer(src, ZENODO_RECORD,
                                     md5.hexdigest()).start()
        try:
            repo = envmod.make_repo(self.root / "zrepo", self.env,
                                    self.allowed)
            self.git(repo, "annex", "initremote", "zen", "type=external",
                     "externaltype=hpcdata", "encryption=none",
                     "zenodo-url=" + server.url)
            self.git(repo, "annex", "addurl", "--file=big.bin",
                     "zenodo://%s/big.bin" % ZENODO_RECORD)
            out = self.root / "curl.out"
            for rep in range(self.cfg["reps"]):
                print("zenodo, round %d" % (rep + 1), flush=True)
                self.timed("zenodo curl", repo, "curl", "-sSf", "-o",
                           str(out), server.content, server=server)
                out.unlink()
                self.timed("zenodo curl | md5sum", repo, "sh", "-c",
                           "curl -sSf '%s' | md5sum" % server.content,
                           server=server)
                for verify in ("", " noverify"):
                    self.git(repo, "annex", "drop", "--force", "big.bin")
                    extra = unverified("zen") if verify else []
                    self.timed("zenodo get ours" + verify, repo, "git",
                               *extra, "annex", "get", "big.bin",
                               server=server)
                if rep == 0:
                    self.git(repo, "annex", "drop", "--force", "big.bin")
                    self.phase("zenodo get ours", repo, "get")
                # the remote's download code alone (no git-annex)
                record = run_timed(
                    [sys.executable, str(HERE / "bench_remote.py"),
                     "--http-one", server.content, str(out),
                     md5.hexdigest(), str(self.cfg["large"])],
                    self.root, self.env, server)
                got = json.loads(record["stdout"])
                record.update(process_wall=record["wall"], wall=got["call"],
                              maxrss=got["peak"])
                self.sample("zenodo engine ours", record)
                out.unlink()
        finally:
            server.stop()
            src.unlink()

    def small(self) -> None:
        repo = envmod.make_repo(self.root / "small", self.env, self.allowed)
        (repo / "d").mkdir()
        for i in range(self.cfg["files"]):
            (repo / "d" / ("f%05d" % i)).write_bytes(
                os.urandom(self.cfg["file_size"]))
        self.git(repo, "annex", "add", "-q", "-J2", "d")
        self.git(repo, "commit", "-qm", "small files")
        self.init_s3_remotes(repo, "ours-small", "builtin-small")
        for rep in range(self.cfg["small_reps"]):
            print("small files, round %d" % (rep + 1), flush=True)
            for r in ("ours-small", "builtin-small"):
                label = "small %s " % r.split("-")[0]
                self.timed(label + "copy -J1", repo, "git", "annex", "copy",
                           "-q", "-J1", "--to=" + r, "d")
                self.git(repo, "annex", "drop", "-q", "-J8", "--force",
                         "--from=" + r, "d")
                self.timed(label + "copy -J8", repo, "git", "annex", "copy",
                           "-q", "-J8", "--to=" + r, "d")
                self.git(repo, "annex", "drop", "-q", "--force", "d")
                self.timed(label + "get -J8", repo, "git", "annex", "get",
                           "-q", "-J8", "--from=" + r, "d")
                self.git(repo, "annex", "drop", "-q", "-J8", "--force",
                         "--from=" + r, "d")
            for bucket in ("ours-small", "builtin-small"):
                self.s3.empty(bucket)

    def sweep(self) -> None:
        self.s3.client().create_bucket(Bucket="sweep")
        if not hasattr(self, "large_obj"):
            self.large_obj = self.root / "sweep.bin"
            envmod.write_random(self.large_obj, self.cfg["large"])
        out = self.root / "sweep.out"
        for rep in range(self.cfg["sweep_reps"]):
            print("sweep, round %d" % (rep + 1), flush=True)
            for unit in self.cfg["units"]:
                for conc in self.cfg["concurrencies"]:
                    argv = [sys.executable, str(HERE / "bench_remote.py"),
                            "--sweep-one", str(unit), str(conc),
                            str(self.large_obj), str(out), self.s3.endpoint]
                    try:
                        record = run_timed(argv, self.root, self.env,
                                           self.s3)
                    except RuntimeError as exc:  # e.g. a server error
                        self.results.setdefault("failed", []).append(
                            "sweep %d MiB x %d: %s" % (unit, conc,
                                                       str(exc)[-300:]))
                        print("  sweep %d MiB x %d failed" % (unit, conc))
                        continue
                    got = json.loads(record["stdout"])
                    for what in ("upload", "download"):
                        name = "sweep %s %d MiB x %d" % (what, unit, conc)
                        self.sample(name, dict(
                            wall=got[what], cpu=got[what + "_cpu"],
                            server_cpu=None, maxrss=got[what + "_rss"],
                            load=record["load"]))
            self.s3.empty("sweep")


def unverified(remote: str) -> list[str]:
    """git options that turn git-annex's hash of a download off.

    ``annex.verify=false`` alone is not enough for an external special
    remote: git-annex then still hashes every download of a key with a
    hash (its retrieval security policy), only afterwards instead of while
    the file is written.  The per-remote security override (value
    ``ACKTHPPT``) lifts that; the built-in S3 remote ignores it.
    """
    return ["-c", "annex.verify=false", "-c",
            "remote.%s.annex-security-allow-unverified-downloads=ACKTHPPT"
            % remote]


# -- child-process modes -----------------------------------------------------
def boto3_mode(op: str, path: str, bucket: str, key: str,
               endpoint: str) -> None:
    """Raw boto3 with default transfer settings; prints the call's time."""
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint,
                          region_name="us-east-1",
                          aws_access_key_id=envmod.KEY,
                          aws_secret_access_key=envmod.SECRET,
                          config=Config(s3={"addressing_style": "path"}))
    start = time.perf_counter()
    if op == "upload":
        client.upload_file(path, bucket, key)
    else:
        client.download_file(bucket, key, path)
    print(json.dumps({"call": time.perf_counter() - start,
                      "peak": peak_memory()}))


def peak_memory() -> int:
    """VmHWM: this process's own peak RSS (not its parent's pre-exec)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status
                    if line.startswith("VmHWM:"))


def http_mode(url: str, out: str, md5: str, size: int) -> None:
    """This remote's verified HTTP download (Python API) of one file."""
    sys.path.insert(0, str(envmod.REPO))
    from datalad_hpcdata.remote.http import HttpClient

    start = time.perf_counter()
    HttpClient().download(url, out, size=size, checksum=("md5", md5))
    print(json.dumps({"call": time.perf_counter() - start,
                      "peak": peak_memory()}))


def sweep_mode(unit: int, conc: int, path: str, out: str,
               endpoint: str) -> None:
    """This remote's S3 engine with one part size x concurrency."""
    sys.path.insert(0, str(envmod.REPO))
    from datalad_hpcdata.remote.stores import s3_download
    from datalad_hpcdata.remote.stores.s3 import S3

    s3_download.DOWNLOAD_CHUNK = unit * MIB
    s3 = S3(endpoint=endpoint, region="us-east-1", addressing="path",
            credentials=(envmod.KEY, envmod.SECRET), partsize=unit * MIB,
            concurrency=conc)
    got = {}
    key = "sweep-%d-%d" % (unit, conc)
    for what in ("upload", "download"):
        cpu0, start = sum(os.times()[:2]), time.perf_counter()
        if what == "upload":
            s3.upload(path, "sweep", key)
        else:
            s3.download("sweep", key, out)
        got[what] = time.perf_counter() - start
        got[what + "_cpu"] = sum(os.times()[:2]) - cpu0
        got[what + "_rss"] = peak_memory()
    os.unlink(out)
    s3.delete("sweep", key)
    print(json.dumps(got))


# -- driver -----------------------------------------------------------------
def versions(weed: str) -> dict:
    import annexremote
    import boto3
    import botocore

    annex = run(["git", "annex", "version", "--raw"], Path("."), os.environ)
    curl = run(["curl", "--version"], Path("."), os.environ)
    weed_version = run([weed, "version"], Path("."), os.environ)
    return {"python": platform.python_version(), "boto3": boto3.__version__,
            "botocore": botocore.__version__,
            "annexremote": annexremote.__version__
            if hasattr(annexremote, "__version__") else "1.6.6",
            "git-annex": annex.strip(), "curl": curl.split("\n")[0],
            "seaweedfs": weed_version.strip().splitlines()[-1]}


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "cpu": next((line.split(":", 1)[1].strip() for line in
                         open("/proc/cpuinfo") if "model name" in line), "?"),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") *
                             os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)}


def summarize(results: dict) -> None:
    def median_of(samples: list, key: str) -> float | None:
        values = [s.get(key) for s in samples]
        if any(v is None for v in values):
            return None
        return statistics.median(values)

    medians = {}
    for name, samples in results["samples"].items():
        entry = {key: median_of(samples, key)
                 for key in ("wall", "cpu", "server_cpu", "remote_cpu")}
        entry.update(
            remote_rss=max((s["remote_rss"] for s in samples
                            if s.get("remote_rss")), default=None),
            maxrss=max(s["maxrss"] for s in samples), n=len(samples))
        medians[name] = entry
    results["medians"] = medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(envmod.REPO / "docs" /
                                             "benchmarks"))
    parser.add_argument("--work", default="/dev/shm"
                        if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--only", nargs="*",
                        default=["large", "zenodo", "small", "sweep"])
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--large-mib", type=int, metavar="N",
                        help="size of the large file (MiB), e.g. to fit a "
                        "time budget; the report names the size")
    parser.add_argument("--reps", type=int, metavar="N",
                        help="rounds of the large and Zenodo phases")
    parser.add_argument("--files", type=int, metavar="N",
                        help="number of small files")
    parser.add_argument("--sweep-units", type=int, nargs="+", metavar="MIB",
                        help="part sizes of the sweep")
    parser.add_argument("--sweep-reps", type=int, metavar="N",
                        help="rounds of the sweep")
    parser.add_argument("--report", metavar="JSON")
    parser.add_argument("--zenodo-server", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--boto3", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--sweep-one", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--http-one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.zenodo_server:
        envmod.serve_zenodo(*args.zenodo_server)
        return 0
    if args.boto3:
        boto3_mode(*args.boto3)
        return 0
    if args.http_one:
        url, path, md5, size = args.http_one
        http_mode(url, path, md5, int(size))
        return 0
    if args.sweep_one:
        unit, conc, path, out, endpoint = args.sweep_one
        sweep_mode(int(unit), int(conc), path, out, endpoint)
        return 0
    import bench_remote_report as report

    out = Path(args.out)
    if args.report:
        results = json.loads(Path(args.report).read_text())
        report.write(results, out, not args.no_plot)
        return 0
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    cfg = dict(QUICK if args.quick else FULL)
    if args.large_mib:
        cfg["large"] = args.large_mib * MIB
    if args.reps:
        cfg["reps"] = args.reps
    if args.files:
        cfg["files"] = args.files
    if args.sweep_units:
        cfg["units"] = args.sweep_units
    if args.sweep_reps:
        cfg["sweep_reps"] = args.sweep_reps
    root = Path(tempfile.mkdtemp(prefix="hpcdata-bench-remote-",
                                 dir=args.work))
    s3 = envmod.Seaweed(root, weed)
    try:
        bench = Bench(cfg, root, s3.start())
        bench.results.update(config=cfg | {"quick": args.quick,
                                           "phases": args.only},
                             machine=machine(), versions=versions(weed),
                             started=time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                   time.gmtime()),
                             load_start=os.getloadavg())
        for phase in ("large", "zenodo", "small", "sweep"):
            if phase in args.only:
                getattr(bench, phase)()
                # a later failure keeps what was measured so far
                out.mkdir(parents=True, exist_ok=True)
                (out / "remote-results.partial.json").write_text(
                    json.dumps(bench.results, indent=1) + "\n")
        bench.results.update(load_end=os.getloadavg(),
                             ended=time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                 time.gmtime()))
        summarize(bench.results)
        out.mkdir(parents=True, exist_ok=True)
        report.write(bench.results, out, not args.no_plot)
        (out / "remote-results.partial.json").unlink()
    finally:
        s3.stop()
        for path, dirs, _ in os.walk(root):  # annex objects are read-only
            for name in dirs:
                os.chmod(os.path.join(path, name), 0o755)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
