"""The documentation site builds, its reference matches ``--help``, and its
command examples run.

How examples are tested (see docs/contributing-docs.md):

* every fenced block marked ``sh``, ``bash`` or ``console`` in docs/ is a
  command example; the blocks of one page run in order, in one ``bash``
  session (``set -e``) in a fresh directory, on the real local cluster;
* a page names the set-up it needs with ``<!-- doctest: scenario NAME -->``
  (``slurm``, the default and so far the only one: a temporary directory,
  a git identity, this checkout's datalad-hpcdata on the path);
* in ``console`` blocks, lines starting with ``$ `` are commands
  (continued by a trailing backslash); the lines after one are the output
  it must print (stdout and stderr), compared after normalising job ids,
  hashes, UUIDs, numbers, Slurm's transient state words and whitespace;
  ``...`` stands for any text;
* the pages listed in ``SKIPPED`` below are not run, each for the reason
  given there; a block directly after ``<!-- doctest: skip REASON -->`` is
  not run either, and its page must be listed there too, so no skipped
  example slips in unnoticed.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
LANGS = ("sh", "bash", "console")
FENCE = re.compile(r"^(```+|~~~+)\s*(\S*)\s*$")
SCENARIO = re.compile(r"<!--\s*doctest:\s*scenario\s+(\S+)\s*-->")
SKIP = re.compile(r"<!--\s*doctest:\s*skip\s+(.+?)\s*-->")

# pages whose examples are shown but not run, and why
SKIPPED = {
    "test-cluster.md": "starts/stops the shared cluster as root (the test "
                       "suite needs it up; tools/slurm-cluster.sh is "
                       "exercised by .ci/run itself)",
    "benchmarks/README.md": "a full benchmark run takes ~15 min; the quick "
                            "mode runs in tests/test_bench_quick.py",
    "alt-dir.md": "its example continues a dataset of the user's and "
                  "stages to /scratch; --alt-dir itself is tested in "
                  "tests/test_altdir*.py",
    "remote/zenodo.md": "see remote/index.md",
    "remote/doi.md": "see remote/index.md",
    "remote/vdi.md": "see remote/index.md",
    "remote/s3.md": "see remote/index.md",
    "remote/irods.md": "see remote/index.md",
    "remote/slurm.md": "see remote/index.md",
    "remote/index.md": "needs the remote's loopback fakes (Zenodo, DOI, "
                       "vdi, S3, iRODS); tests/remote/ runs the same "
                       "commands against them",
}


@dataclass
class Block:
    page: str
    line: int
    lang: str
    text: str
    skip: str | None = None


@dataclass
class Page:
    path: Path
    scenario: str = "slurm"
    blocks: list[Block] = field(default_factory=list)


def pages() -> list[Page]:
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        if "_build" in path.parts:
            continue
        found.append(parse_page(path))
    return found


def parse_page(path: Path) -> Page:
    rel = path.relative_to(DOCS).as_posix()
    page = Page(path)
    lines = path.read_text().splitlines()
    m = SCENARIO.search("\n".join(lines))
    if m:
        page.scenario = m.group(1)
    i = 0
    pending_skip = None
    while i < len(lines):
        m = FENCE.match(lines[i])
        sk = SKIP.search(lines[i])
        if sk:
            pending_skip = sk.group(1)
        elif m:
            fence, lang = m.group(1), m.group(2)
            body = []
            j = i + 1
            while j < len(lines) and not lines[j].startswith(fence):
                body.append(lines[j])
                j += 1
            if lang in LANGS:
                page.blocks.append(Block(rel, i + 1, lang, "\n".join(body),
                                         pending_skip))
            pending_skip = None
            i = j
        elif lines[i].strip():
            pending_skip = None
        i += 1
    return page


# ------------------------------------------------------------ console blocks
def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """[(command, expected output lines)] of a console block."""
    steps = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if steps:
                steps[-1][1].append(line)
            elif line.strip():
                raise ValueError("output before the first command: %r"
                                 % line)
            i += 1
            continue
        cmd = line[2:]
        while cmd.endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd += "\n" + lines[i]
        steps.append((cmd, []))
        i += 1
    return steps


STATES = r"\b(PENDING|RUNNING|COMPLETING|CONFIGURING|COMPLETED)\b"
SUBMITTED = re.compile(r"submitted Slurm job (\d+)")


def normalise(text: str) -> str:
    """What may differ between runs: ids, hashes, times, Slurm's transient
    states, spacing (every other number must match)."""
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                  r"[0-9a-f]{12}\b", "UUID", text)
    text = re.sub(r"\b[0-9a-f]{7,40}\b", "HEX", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", "TIME", text)
    text = re.sub(r"\b\d\d:\d\d:\d\d\b", "DURATION", text)
    text = re.sub(STATES, "STATE", text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines()
                     if line.strip())


def with_job_ids(expected: str, ids: dict[str, str]) -> str:
    """The page's job ids replaced by this run's (in order of
    submission)."""
    for page_id, run_id in ids.items():
        expected = re.sub(r"\b%s\b" % page_id, run_id, expected)
    return expected


def matches(expected: str, actual: str) -> bool:
    exp, act = normalise(expected), normalise(actual)
    pattern = ".*?".join(re.escape(part) for part in exp.split("..."))
    return re.fullmatch(pattern, act, re.S) is not None


# ------------------------------------------------------------------ running
MARK = "@@hpcdata-doctest@@"


def page_script(page: Page) -> tuple[str, list[tuple[Block, str, list]]]:
    """One bash script for the page; markers separate the steps."""
    parts = ["set -e", "exec 2>&1"]
    steps = []
    for block in page.blocks:
        if block.skip:
            continue
        if block.lang == "console":
            for cmd, out in console_steps(block.text):
                parts.append("echo %s%d" % (MARK, len(steps)))
                parts.append(cmd)
                steps.append((block, cmd, out))
        else:
            parts.append("echo %s%d" % (MARK, len(steps)))
            parts.append(block.text)
            steps.append((block, block.text, None))
    parts.append("echo %s%d" % (MARK, len(steps)))
    return "\n".join(parts) + "\n", steps


def run_page(page: Page, cwd: Path, env: dict) -> None:
    script, steps = page_script(page)
    proc = subprocess.run(["bash", "-c", script], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL)
    chunks = re.split(r"^%s(\d+)\n" % re.escape(MARK), proc.stdout,
                      flags=re.M)
    outputs = {int(chunks[k]): chunks[k + 1]
               for k in range(1, len(chunks) - 1, 2)}
    done = max(outputs) if outputs else -1
    if done < len(steps):
        block, cmd, _ = steps[max(done, 0)]
        pytest.fail("%s line %d: step failed (exit %d):\n%s\n--- output:\n%s"
                    % (block.page, block.line, proc.returncode, cmd,
                       outputs.get(done, proc.stdout)[-4000:]))
    page_ids = SUBMITTED.findall("\n".join(
        "\n".join(out) for _, _, out in steps if out))
    run_ids = SUBMITTED.findall("".join(outputs[k] for k in sorted(outputs)))
    ids = dict(zip(page_ids, run_ids))
    for n, (block, cmd, expected) in enumerate(steps):
        if expected is None:
            continue
        actual = outputs.get(n, "")
        want = with_job_ids("\n".join(expected), ids)
        assert matches(want, actual), (
            "%s line %d: the output of\n  $ %s\ndiffers from the page:\n"
            "--- page:\n%s\n--- actual:\n%s" % (block.page, block.line, cmd,
                                               want, actual))


def scenario_env(name: str, tmp_path: Path, request) -> dict:
    env = dict(os.environ)
    env["PATH"] = "%s:%s" % (Path(sys.executable).parent, env["PATH"])
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(
            os.pathsep) if p])
    env.setdefault("USER", getpass.getuser())
    env.update(GIT_AUTHOR_NAME="hpcdata docs",
               GIT_AUTHOR_EMAIL="docs@localhost",
               GIT_COMMITTER_NAME="hpcdata docs",
               GIT_COMMITTER_EMAIL="docs@localhost")
    if name != "slurm":
        raise ValueError("unknown doctest scenario %r" % name)
    return env


PAGES = [p for p in pages() if any(not b.skip for b in p.blocks)
         and p.path.relative_to(DOCS).as_posix() not in SKIPPED]


@pytest.mark.slurm
@pytest.mark.parametrize("page", PAGES,
                         ids=[p.path.relative_to(DOCS).as_posix()
                              for p in PAGES])
def test_examples_run(slurm, page, tmp_path, request):
    env = scenario_env(page.scenario, tmp_path, request)
    work = tmp_path / "work"
    work.mkdir()
    run_page(page, work, env)


def test_skipped_examples_are_known():
    skipped = {b.page for p in pages() for b in p.blocks if b.skip}
    assert skipped <= set(SKIPPED), skipped - set(SKIPPED)


def test_console_matching_can_fail():
    assert matches("slurm-finish(ok): committed job 12 (COMPLETED) as ab12cd3",
                   "slurm-finish(ok): committed job 12 (RUNNING) as 99ffee0")
    assert not matches("committed job 12", "closed job 12")
    assert not matches("9 data/words.txt", "8 data/words.txt")
    assert with_job_ids("job 15 log-15.out 150", {"15": "7"}) == \
        "job 7 log-7.out 150"
    assert matches("a ... c", "a anything at all c")
    assert not matches("a\nb", "a")
    steps = console_steps("$ echo a \\\n  b\na b\n$ true\n")
    assert steps == [("echo a \\\n  b", ["a b"]), ("true", [])]


# ------------------------------------------------------------- site and help
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not shutil.which("bash"):
        pytest.skip("no bash")
    try:
        import myst_parser  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError:
        if os.environ.get("HPCDATA_REQUIRE_SLURM") == "1":
            pytest.fail("the docs extra (sphinx, myst-parser, furo) is "
                        "required: pip install -e .[docs]")
        pytest.skip("sphinx/myst-parser not installed")
    out = tmp_path_factory.mktemp("site") / "html"
    env = dict(os.environ, PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([str(REPO)] + [
                   p for p in os.environ.get("PYTHONPATH", "").split(
                       os.pathsep) if p]))
    proc = subprocess.run(["bash", str(REPO / "tools" / "docs.sh"),
                           str(out)], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


class Terms(HTMLParser):
    """The option names in the generated reference (``<dt>`` literals)."""

    def __init__(self):
        super().__init__()
        self.in_dt = 0
        self.texts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "dt":
            self.in_dt += 1

    def handle_endtag(self, tag):
        if tag == "dt":
            self.in_dt -= 1

    def handle_data(self, data):
        if self.in_dt:
            self.texts.append(data)


def help_options(cmd: str) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [str(Path(sys.executable).parent / "datalad"), cmd, "--help"],
        capture_output=True, text=True, env=env, check=True).stdout
    opts = out[out.lower().index("\noptions:"):]
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", opts))


def test_site_builds_and_links_are_whole(site):
    assert (site / "index.html").exists()
    for page in ("getting-started", "reference/commands", "reference/remote",
                 "guides/containers", "migrating", "admin",
                 "architecture", "benchmarks/README"):
        assert (site / (page + ".html")).exists(), page
    # the link checker reads what it checks: a broken link is found
    bad = site.parent / "bad"
    shutil.copytree(site, bad)
    (bad / "index.html").write_text(
        (bad / "index.html").read_text() + '<a href="nope.html#x">x</a>')
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import docs_links
    finally:
        sys.path.pop(0)
    assert docs_links.broken_links(site) == []
    assert any("nope.html" in b for b in docs_links.broken_links(bad))


COMMANDS = ("slurm-schedule", "slurm-finish", "slurm-reschedule",
            "slurm-graph")


@pytest.mark.parametrize("cmd", COMMANDS)
def test_reference_lists_every_option_of_help(site, cmd):
    html = (site / "reference" / "commands.html").read_text()
    start = html.index('id="cmd-%s"' % cmd)
    nxt = [html.find('id="cmd-%s"' % c, start + 1) for c in COMMANDS]
    end = min([n for n in nxt if n > start] + [len(html)])
    terms = Terms()
    terms.feed(html[start:end])
    documented = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)",
                                " ".join(terms.texts)))
    assert help_options(cmd) == documented


def test_remote_reference_lists_every_parameter(site):
    from datalad_hpcdata.remote.config import CONFIGS
    html = (site / "reference" / "remote.html").read_text()
    for name in CONFIGS:
        assert "<code" in html and ">%s<" % name in html, name
