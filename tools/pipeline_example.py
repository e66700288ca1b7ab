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

import re
import shutil
import subprocess
import sys
from pathlib import Path

import docs_example

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
    return docs_example.main(__doc__, "hpcdata-pipeline-",
                             "the rendered graph", run_and_copy)


def run_and_copy(args, work: Path) -> int:
    """Run the page in `work`; copy its graph to docs/ unless --no-copy."""
    run_example(work, echo=True)
    if not args.no_copy:
        shutil.copyfile(work / DATASET / "campaign.png", PNG)
        print("copied the graph to %s" % PNG)
    return 0


if __name__ == "__main__":
    sys.exit(main())
