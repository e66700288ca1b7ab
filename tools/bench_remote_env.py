"""Servers, repositories and timed commands for tools/bench_remote.py.

* ``Seaweed``: ``weed mini`` (a real S3 server) with an identity file, all
  data on tmpfs, on its own loopback address 127.0.0.N with S3 on port 80:
  git-annex's built-in S3 remote signs the ``Host`` header without a port
  (``host:127.0.0.N``), so on any other port SeaweedFS rejects every request
  with ``SignatureDoesNotMatch``.
* ``ZenodoServer``: this script in ``--zenodo-server`` mode in a process of
  its own, serving one record (the documented JSON) and its file with
  ``sendfile`` and ``Range`` (the loopback server at full speed).
* ``run_timed``: one command, its wall time, its CPU time and peak memory
  (``wait4``: the process and the descendants it waited for) and the S3
  server's CPU time meanwhile.
* ``remote_wrapper``: a ``git-annex-remote-hpcdata`` that records the peak
  memory of every remote process git-annex starts.

Everything listens on loopback only and is stopped by its process id.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import remote_peak

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KEY, SECRET = "bench-key", "bench-secret"
MIB = 1 << 20


def free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Seaweed:
    def __init__(self, root: Path, weed: str) -> None:
        self.root = root
        self.weed = weed
        self.ip = next((f"127.0.0.{n}" for n in range(101, 250)
                        if free(f"127.0.0.{n}", 80)), None)
        if self.ip is None:
            raise RuntimeError("no loopback address with port 80 free")
        self.endpoint = "http://%s" % self.ip
        self.proc: subprocess.Popen | None = None

    def start(self) -> Seaweed:
        data = self.root / "weed-data"
        data.mkdir(parents=True)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "bench", "credentials": [
                {"accessKey": KEY, "secretKey": SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        self.master_port = free_port(self.ip)
        argv = [self.weed, "mini", "-dir=%s" % data, "-ip=%s" % self.ip,
                "-ip.bind=%s" % self.ip, "-s3.port=80",
                "-s3.config=%s" % config,
                "-master.port=%d" % self.master_port]
        for flag in ("filer.port", "volume.port", "admin.port",
                     "webdav.port"):
            argv.append("-%s=%d" % (flag, free_port(self.ip)))
        self.log = open(self.root / "weed.log", "w")
        self.proc = subprocess.Popen(argv, stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     cwd=str(self.root))
        client = self.client()
        for _ in range(300):  # bounded: 60 s
            try:
                client.list_buckets()
                return self
            except Exception:
                time.sleep(0.2)
        self.log.flush()
        raise RuntimeError("SeaweedFS did not start (it also binds "
                           "127.0.0.1:80: is another one running?): %s"
                           % (self.root / "weed.log").read_text()[-1500:])

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint,
                            region_name="us-east-1", aws_access_key_id=KEY,
                            aws_secret_access_key=SECRET)

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def rss(self) -> int:
        with open("/proc/%d/status" % self.proc.pid) as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def empty(self, bucket: str) -> None:
        """Delete every object of ``bucket`` and reclaim the space."""
        import urllib.request

        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            for i in range(0, len(keys), 1000):
                client.delete_objects(Bucket=bucket,
                                      Delete={"Objects": keys[i:i + 1000]})
        for upload in client.list_multipart_uploads(Bucket=bucket).get(
                "Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                          UploadId=upload["UploadId"])
        urllib.request.urlopen(
            "http://%s:%d/vol/vacuum?garbageThreshold=0.0001"
            % (self.ip, self.master_port), timeout=120).read()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if self.proc is not None:
            self.log.close()


class ZenodoServer:
    """``bench_remote.py --zenodo-server`` in a process of its own."""

    def __init__(self, path: Path, record: str, md5: str) -> None:
        self.path, self.record, self.md5 = path, record, md5
        self.proc: subprocess.Popen | None = None

    def start(self) -> ZenodoServer:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "bench_remote.py"), "--zenodo-server",
             str(self.path), self.record, self.md5],
            stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.url = "http://127.0.0.1:%d" % self.port
        self.content = "%s/api/records/%s/files/%s/content" % (
            self.url, self.record, self.path.name)
        return self

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def serve_zenodo(path: str, record: str, md5: str) -> None:
    """The --zenodo-server mode: print the port, serve until terminated."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    name = os.path.basename(path)
    size = os.path.getsize(path)
    meta = json.dumps({
        "id": int(record), "recid": record, "conceptrecid": record,
        "files": [{"key": name, "size": size, "checksum": "md5:" + md5}],
    }).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/api/records/%s" % record:
                return self._reply(200, meta, "application/json")
            if self.path != "/api/records/%s/files/%s/content" % (record,
                                                                   name):
                return self._reply(404, b"{}", "application/json")
            start, status = 0, 200
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit():
                start, status = int(rng[6:].split("-")[0]), 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size - start))
            self.send_header("ETag", '"md5:%s"' % md5)
            if status == 206:
                self.send_header("Content-Range", "bytes %d-%d/%d"
                                 % (start, size - 1, size))
            self.end_headers()
            if self.command == "GET":
                with open(path, "rb") as handle:
                    self.connection.sendfile(handle, start, size - start)

        def _reply(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


# the remote, run by tools/remote_peak.py (which imports only os and sys)
REMOTE_WRAPPER = '''#!%(python)s
import sys
sys.path.insert(0, %(tools)r)
import remote_peak
remote_peak.run(%(rss)r)
'''


def remote_wrapper(bindir: Path, rssdir: Path) -> None:
    """A ``git-annex-remote-hpcdata`` (this checkout) recording its memory."""
    bindir.mkdir(parents=True, exist_ok=True)
    rssdir.mkdir(parents=True, exist_ok=True)
    program = bindir / "git-annex-remote-hpcdata"
    program.write_text(REMOTE_WRAPPER % {"python": sys.executable,
                                         "tools": str(HERE),
                                         "rss": str(rssdir)})
    program.chmod(0o755)


def take_rss(rssdir: Path) -> tuple[int | None, float | None, int]:
    """(peak memory of the largest, CPU seconds of all, number of) remote
    processes that ended since the last call."""
    peaks, cpu = [], 0.0
    for entry in rssdir.iterdir():
        peak, seconds = remote_peak.read(entry)
        peaks.append(peak)
        cpu += seconds
        entry.unlink()
    return (max(peaks) if peaks else None, cpu if peaks else None,
            len(peaks))


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=str(cwd), env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        raise RuntimeError("%s failed (%s): %s" % (
            " ".join(argv), proc.returncode, proc.stderr[-2000:]))
    return proc.stdout


def run_timed(argv: list[str], cwd: Path, env: dict[str, str],
              server: object = None) -> dict:
    """Run ``argv``; wall/CPU seconds, peak RSS, server CPU meanwhile."""
    with tempfile.TemporaryFile() as err:
        cpu0 = server.cpu() if server is not None else 0.0
        load = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=str(cwd), env=env,
                                stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        if proc.returncode:
            err.seek(0)
            raise RuntimeError("%s failed (%s): %s" % (
                " ".join(argv), proc.returncode,
                err.read().decode(errors="replace")[-2000:]))
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "maxrss": usage.ru_maxrss * 1024, "load": load,
            "server_cpu": (server.cpu() - cpu0) if server is not None
            else None, "stdout": out.decode(errors="replace")}


_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\]")


def phases(argv: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """Where the time of one ``git annex`` transfer through an external
    remote goes, from its ``--debug`` protocol log: before git-annex sends
    ``TRANSFER``, inside the remote (``TRANSFER`` to ``TRANSFER-SUCCESS``),
    and after the reply (git-annex finishing its hash, moving the file,
    updating the location log)."""
    start = time.time()
    proc = subprocess.run(argv + ["--debug"], cwd=str(cwd), env=env,
                          capture_output=True, text=True)
    end = time.time()
    if proc.returncode:
        raise RuntimeError("%s failed: %s" % (" ".join(argv),
                                              proc.stderr[-2000:]))
    sent = done = None
    for line in proc.stderr.splitlines():
        match = _STAMP.match(line)
        if not match:
            continue
        if "<-- TRANSFER " in line and sent is None:
            sent = _epoch(match.group(1))
        elif "--> TRANSFER-SUCCESS " in line:
            done = _epoch(match.group(1))
    if sent is None or done is None:
        return {}
    return {"before": sent - start, "remote": done - sent,
            "after": end - done, "wall": end - start}


def _epoch(stamp: str) -> float:
    """git-annex's debug time stamp (local time) as seconds since 1970."""
    day, _, frac = stamp.partition(".")
    return time.mktime(time.strptime(day, "%Y-%m-%d %H:%M:%S")) + float(
        "0." + frac)


def git_env(extra: dict[str, str], bindir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("AWS_PROFILE", "DATALAD_HPCDATA_S3_PARTSIZE",
                 "DATALAD_HPCDATA_S3_CONCURRENCY"):
        env.pop(name, None)
    env.update({"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@e.org",
                "GIT_COMMITTER_NAME": "bench",
                "GIT_COMMITTER_EMAIL": "b@e.org",
                "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
                "PATH": "%s%s%s" % (bindir, os.pathsep, env["PATH"])})
    env.update(extra)
    return env


def make_repo(path: Path, env: dict[str, str], allowed: str) -> Path:
    path.mkdir(parents=True)
    run(["git", "init", "-q"], path, env)
    run(["git", "config", "annex.security.allowed-ip-addresses", allowed],
        path, env)
    run(["git", "annex", "init", "-q", "bench"], path, env)
    return path


def write_random(path, size: int, chunk: int = 64 * MIB) -> None:
    """`size` random bytes into `path`, `chunk` bytes at a time."""
    with open(path, "wb") as handle:
        left = size
        while left:
            n = min(left, chunk)
            handle.write(os.urandom(n))
            left -= n
