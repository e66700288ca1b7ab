#!/usr/bin/env python
"""Run docs/tutorial.md on the local Slurm cluster; print what every step
printed; copy the two provenance graphs it draws into docs/.

    python tools/tutorial_example.py            # run, copy the PNGs
    python tools/tutorial_example.py --dir D    # run in D, keep it
    python tools/tutorial_example.py --update   # and write the outputs
                                                # into the page

The steps run exactly as tests/test_tutorial.py runs them (the docs
harness of tests/test_docs.py: every block in order in one bash session,
console outputs compared after normalising ids, hashes and times). The
output printed here is what goes into the page's ``console`` blocks;
differences from the page are listed at the end (exit status 1).
``--update`` writes this run's outputs into the page's ``console`` blocks
(progress lines left out, the parts in ``ELIDE`` replaced by ``...``), so
the page shows one real run.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import docs_example

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "tutorial.md"
# what the page draws (outside the dataset) -> where the docs show it
GRAPHS = {"campaign-before.png": "tutorial-before.png",
          "campaign-after.png": "tutorial-after.png"}


# what varies from run to run beyond the harness's normalisation
ELIDE = [(re.compile(r"; \d+ polls?, \d+ Slurm quer(y|ies)$", re.M), "; ...")]


def harness():
    """tests/test_docs.py, the docs' example harness."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import test_docs
    finally:
        sys.path.pop(0)
    return test_docs


def run(work: Path):
    """Run the page in `work`; return the harness's Run."""
    docs = harness()
    env = docs.scenario_env("slurm", work, None)
    return docs.run_steps(docs.parse_page(PAGE), work, env)


def shown(output: str) -> list[str]:
    """A step's output as the page shows it."""
    text = harness().PROGRESS.sub("", output)
    for pattern, repl in ELIDE:
        text = pattern.sub(repl, text)
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def updated(text: str, result) -> str:
    """The page with every console step's output replaced by this run's."""
    blocks: dict[int, list] = {}
    for n, (block, cmd, expected) in enumerate(result.steps):
        if expected is not None:
            blocks.setdefault(block.line, []).append((n, cmd))
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        out.append(lines[i])
        if i + 1 in blocks:                 # the fence of a console block
            fence = lines[i].split("console")[0]
            for n, cmd in blocks[i + 1]:
                out.append("$ " + cmd)
                out += shown(result.outputs.get(n, ""))
            while not lines[i + 1].startswith(fence):
                i += 1
        i += 1
    return "\n".join(out) + "\n"


def main() -> int:
    return docs_example.main(
        __doc__, "hpcdata-tutorial-", "the graphs", run_and_report,
        options=(("--update", dict(
            action="store_true",
            help="write this run's outputs into the page")),))


def run_and_report(args, work: Path) -> int:
    """Run the page in `work`, print its outputs, copy the graphs (unless
    --no-copy); write the outputs into the page (--update) or list the
    differences from it (exit status 1 if any)."""
    result = run(work)
    for n, (_block, cmd, expected) in enumerate(result.steps):
        if expected is not None:
            print("$ " + cmd)
            print(result.outputs.get(n, ""), end="")
    if not args.no_copy:
        for made, shown in GRAPHS.items():
            shutil.copyfile(work / made, REPO / "docs" / shown)
            print("copied %s to docs/%s" % (made, shown))
    if args.update:
        PAGE.write_text(updated(PAGE.read_text(), result))
        print("updated %s" % PAGE)
        return 0
    diff = harness().differences(result)
    for d in diff:
        print("\n" + d, file=sys.stderr)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
