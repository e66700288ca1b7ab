#!/usr/bin/env python
"""Run the examples of docs/pipelines.md on the local Slurm cluster.

Every ```sh block of the page is run in order in one ``bash`` session
(``set -e``) started in a fresh directory, as the docs' example tests do;
the page waits for its own jobs where a user would come back later.

    python tools/pipeline_example.py            # run, copy the graph to docs/
    python tools/pipeline_example.py --dir D    # run in D, keep it

tests/test_pipelines_docs.py runs the same blocks and checks the outcome;
the PNG in the docs (docs/pipelines-campaign.png) comes from this script.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "pipelines.md"
PNG = REPO / "docs" / "pipelines-campaign.png"
DATASET = "campaign"
MARK = "@@pipeline-example block %d@@"


def blocks(doc: Path = DOC) -> list[str]:
    """The ```sh blocks of a markdown page, in order."""
    return re.findall(r"^```sh\n(.*?)^```$", doc.read_text(), re.M | re.S)


def run_example(workdir: Path, doc: Path = DOC, echo: bool = False,
                timeout: float = 1800) -> list[str]:
    """Run every block in one session; return what each printed (stdout
    and stderr)."""
    parts = []
    for i, block in enumerate(blocks(doc)):
        parts += ["echo '%s'" % (MARK % i), block]
    proc = subprocess.run(["bash", "-e", "-c", "\n".join(parts) + "\n"],
                          cwd=workdir, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    if echo:
        print(proc.stdout, end="", flush=True)
    out = re.split(r"^@@pipeline-example block \d+@@\n", proc.stdout,
                   flags=re.M)[1:]
    if proc.returncode:
        raise RuntimeError("block %d failed (exit %d):\n%s\n%s" % (
            len(out) - 1, proc.returncode, blocks(doc)[len(out) - 1],
            out[-1] if out else proc.stdout))
    return out


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
