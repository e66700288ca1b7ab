#!/usr/bin/env python
"""Run the examples of docs/pipelines.md on the local Slurm cluster.

Every ```sh block of the page is run with ``bash -e``, in order: the first
in a fresh directory, the others in the dataset it creates (``campaign``).
Before each block the script waits until the dataset's open jobs have left
Slurm's queue (the page says "later" where a user would wait).

    python tools/pipeline_example.py            # run, copy the graph to docs/
    python tools/pipeline_example.py --dir D    # run in D, keep it

tests/test_pipelines_docs.py runs the same blocks and checks the outcome;
the PNG in the docs (docs/pipelines-campaign.png) comes from this script.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "pipelines.md"
PNG = REPO / "docs" / "pipelines-campaign.png"
DATASET = "campaign"
ACTIVE = "PD,R,CG,CF,S,RQ,RS,SO,ST,SI"


def blocks(doc: Path = DOC) -> list[str]:
    """The ```sh blocks of a markdown page, in order."""
    return re.findall(r"^```sh\n(.*?)^```$", doc.read_text(), re.M | re.S)


def open_jobs(ds: Path) -> list[str]:
    db = ds / ".git" / "datalad-hpcdata" / "jobs.sqlite"
    if not db.exists():
        return []
    con = sqlite3.connect(str(db))
    try:
        return [r[0] for r in con.execute(
            "SELECT job_id FROM jobs WHERE status = 'open'")]
    finally:
        con.close()


def wait_idle(ds: Path, timeout: float = 300.0) -> None:
    """Wait until none of the dataset's open jobs is active in Slurm."""
    deadline = time.monotonic() + timeout
    ids = set(open_jobs(ds))
    while ids and time.monotonic() < deadline:
        active = subprocess.run(
            ["squeue", "-h", "-r", "-t", ACTIVE, "-o", "%F"],
            capture_output=True, text=True).stdout.split()
        if not ids & set(active):
            acc = subprocess.run(
                ["sacct", "-n", "-X", "-P", "-j", ",".join(sorted(ids)),
                 "-o", "JobID,State"], capture_output=True, text=True).stdout
            if acc and not any(s in acc for s in ("PENDING", "RUNNING",
                                                  "COMPLETING")):
                return
        time.sleep(0.5)
    if ids and time.monotonic() >= deadline:
        raise TimeoutError("jobs %s still active" % sorted(ids))


def run_example(workdir: Path, doc: Path = DOC, echo: bool = False
                ) -> list[subprocess.CompletedProcess]:
    """Run every block; return their completed processes."""
    done = []
    ds = workdir / DATASET
    for i, block in enumerate(blocks(doc)):
        cwd = ds if i else workdir
        if i:
            wait_idle(ds)
        proc = subprocess.run(["bash", "-e", "-c", block], cwd=cwd,
                              capture_output=True, text=True)
        if echo:
            print("$ " + block.rstrip().replace("\n", "\n$ "))
            print(proc.stdout + proc.stderr, end="", flush=True)
        if proc.returncode:
            raise RuntimeError("block %d failed (exit %d):\n%s\n%s%s" % (
                i, proc.returncode, block, proc.stdout, proc.stderr))
        done.append(proc)
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="run here (kept); default: a temporary "
                    "directory, removed afterwards")
    ap.add_argument("--no-copy", action="store_true",
                    help="do not copy the rendered graph to docs/")
    args = ap.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(
        prefix="hpcdata-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run_example(work, echo=True)
        if not args.no_copy:
            shutil.copyfile(work / DATASET / "campaign.png", PNG)
            print("copied the graph to %s" % PNG)
    finally:
        if not args.dir:
            rmtree(work)
    return 0


def rmtree(path: Path) -> None:
    """Remove a tree holding read-only annex objects."""
    def writable(func, p, _):
        Path(p).parent.chmod(0o755)
        Path(p).chmod(0o755)
        func(p)
    shutil.rmtree(path, onerror=writable)


if __name__ == "__main__":
    sys.exit(main())
