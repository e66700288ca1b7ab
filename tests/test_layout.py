"""The package layout keeps its promises (docs/architecture.md).

* one import direction: commands -> jobs -> {altdir, dataset, slurm},
  altdir -> dataset (paths only), dataset -> slurm (the handle picks the
  backend); every part may use the runner; ``remote/`` imports nothing from
  the rest of the package;
* no import cycles between modules, function-level imports included;
* only the runner starts processes;
* ruff is clean; no module is over 400 lines;
* docs/architecture.md names every module.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "datalad_hpcdata"

# part -> parts it may import (besides itself)
ALLOWED = {
    "commands": {"jobs", "dataset", "runner", "__init__"},
    "jobs": {"altdir", "dataset", "slurm", "runner", "faults", "__init__"},
    "altdir": {"dataset"},
    "dataset": {"slurm", "runner"},
    "slurm": {"runner"},
    "runner": set(),
    "faults": set(),
    "remote": set(),
    # the command suite's start-up helper (commands/cmdline.py)
    "__init__": {"commands"},
}
# finer rules inside the allowed parts
ONLY = {
    ("commands", "dataset"): {"datalad_hpcdata.dataset.handle"},
    ("altdir", "dataset"): {"datalad_hpcdata.dataset.paths"},
    ("dataset", "slurm"): {"datalad_hpcdata.slurm"},
    ("__init__", "commands"): {"datalad_hpcdata.commands.cmdline"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports(path: Path) -> set[str]:
    """Every datalad_hpcdata module `path` imports, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names
                         if a.name.startswith("datalad_hpcdata"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(path).split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("datalad_hpcdata"):
                continue
            # `from . import x` may name a submodule
            for a in node.names:
                sub = "%s.%s" % (mod, a.name)
                found.add(sub if (REPO / (sub.replace(".", "/") + ".py"))
                          .exists() or (REPO / sub.replace(".", "/"))
                          .is_dir() else mod)
    return found


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
GRAPH = {name: imports(path) for name, path in MODULES.items()}


def test_the_parts_are_there():
    assert {part_of(m) for m in MODULES} == set(ALLOWED)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_import_direction(module):
    src = part_of(module)
    for target in GRAPH[module]:
        dst = part_of(target)
        if dst == src:
            continue
        assert dst in ALLOWED[src], "%s imports %s" % (module, target)
        only = ONLY.get((src, dst))
        if only is not None:
            assert target in only, "%s imports %s" % (module, target)


def test_no_import_cycles():
    def resolve(name):
        # an import of a package means its __init__
        return name if name in GRAPH else None

    state = {}

    def visit(node, stack):
        state[node] = "active"
        for dep in sorted(GRAPH[node]):
            dep = resolve(dep)
            if dep is None or dep == node:
                continue
            if state.get(dep) == "active":
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: %s" % " -> ".join(cycle))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_the_check_can_fail(tmp_path):
    """The rule checker sees relative, absolute and function-level imports."""
    assert "datalad_hpcdata.runner" in imports(PKG / "slurm" / "types.py")
    assert "datalad_hpcdata.jobs.staging" in imports(
        PKG / "jobs" / "prepare.py")
    fake = tmp_path / "m.py"
    fake.write_text("def f():\n    from datalad_hpcdata.jobs import spec\n")
    assert imports(fake) == {"datalad_hpcdata.jobs.spec"}


def test_only_the_runner_starts_processes():
    for name, path in MODULES.items():
        if name == "datalad_hpcdata.runner":
            continue
        assert "subprocess" not in path.read_text(), name
        assert "shell=True" not in path.read_text(), name


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    lines = MODULES[module].read_text().count("\n")
    assert lines <= 400, "%s has %d lines" % (module, lines)


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    proc = subprocess.run([ruff, "check", "--output-format", "concise",
                           "datalad_hpcdata", "tests", "tools"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def documented_modules(text: str) -> set[str]:
    """Module paths named in the first code block of architecture.md: a
    ``name/`` at the start of a line opens a directory until a line as
    little indented; deeper-indented lines continue the line above."""
    block = text.split("```", 2)[1]
    stack, found = [], set()
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= 6:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            first = line.split()[0]
            if first.endswith("/"):
                stack.append((indent, first))
        where = "".join(d for _, d in stack)
        found.update(where + m for m in re.findall(r"\b\w+\.py\b", line))
    return found


def test_architecture_page_names_every_module():
    """docs/architecture.md describes the layout as it is."""
    text = (REPO / "docs" / "architecture.md").read_text()
    modules = {str(p.relative_to(REPO)) for p in PKG.rglob("*.py")
               if p.name != "__init__.py" or p.parent == PKG}
    assert modules - documented_modules(text) == set()


def test_architecture_check_can_fail():
    text = "```\npkg/\n  a.py  x\n  sub/\n    b.py  y (a.py)\n  c.py\n```\n"
    assert documented_modules(text) == {
        "pkg/a.py", "pkg/sub/b.py", "pkg/sub/a.py", "pkg/c.py"}
    assert "pkg/b.py" not in documented_modules(text)
