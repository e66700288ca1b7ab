"""The command line the docs' example runners share
(tools/pipeline_example.py, tools/tutorial_example.py): ``--dir`` (run
there and keep it; default a temporary directory, removed afterwards) and
``--no-copy`` (leave docs/ alone), plus a runner's own options."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def main(doc: str, prefix: str, copied: str,
         run: Callable[[argparse.Namespace, Path], int],
         options: tuple[tuple[str, dict], ...] = ()) -> int:
    """Parse the command line (description: `doc`'s first line; `copied`
    names what --no-copy leaves out), make the work directory (`prefix`
    for a temporary one) and return ``run(args, work)``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--dir", help="run here (kept); default: a temporary "
                    "directory, removed afterwards")
    ap.add_argument("--no-copy", action="store_true",
                    help="do not copy %s to docs/" % copied)
    for name, kwargs in options:
        ap.add_argument(name, **kwargs)
    args = ap.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(
        prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, work)
    finally:
        if not args.dir:
            rmtree(work)


def rmtree(path: Path) -> None:
    """Remove a tree holding read-only annex objects."""
    def writable(func, p, _):
        Path(p).parent.chmod(0o755)
        Path(p).chmod(0o755)
        func(p)
    shutil.rmtree(path, onerror=writable)
