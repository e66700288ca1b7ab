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
* an array whose tasks are in different transient states
  (``ARRAY ACTIVE (COMPLETED, PENDING)``) counts as one transient state;
* progress messages (DataLad's ``[INFO] ...`` lines when the output is
  not a terminal, git-annex's transfer meter) are left out of the
  comparison, and the page's cluster name
  (``on cluster hpcdata``, ``"cluster": "hpcdata"``) stands for the one the
  run submitted to;
* the pages listed in ``SKIPPED`` below are not run, each for the reason
  given there; a block directly after ``<!-- doctest: skip REASON -->`` is
  not run either, and its page must be listed there too, so no skipped
  example slips in unnoticed;
* a ``console`` block directly after ``<!-- doctest: any-order -->`` may
  print its lines in another order (jobs that end at the same time are
  committed in the order their polls saw them end);
* the pages listed in ``ELSEWHERE`` are run by the test named there, with
  this harness (``run_steps``/``check_steps``), because they need more
  set-up (``<!-- doctest: scenario remote -->``: the special remote's
  loopback servers) or more checks of what their commands did.
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
# on a line of its own (a page may mention the marker in its text)
SCENARIO = re.compile(r"^<!--\s*doctest:\s*scenario\s+(\S+)\s*-->\s*$", re.M)
SKIP = re.compile(r"<!--\s*doctest:\s*skip\s+(.+?)\s*-->")
ANY_ORDER = re.compile(r"<!--\s*doctest:\s*any-order\s*-->")

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
    "remote/index.md": "its one block installs from PyPI and shows the "
                       "initremote line every other remote page runs",
    "remote/irods.md": "iinit needs an iRODS server and the icommands "
                       "(none installable here); the rest of the page runs "
                       "against the python-irodsclient stand-in",
}

# pages run by another test file with this harness (scenario or checks)
ELSEWHERE = {
    "tutorial.md": "tests/test_tutorial.py",
    "remote/zenodo.md": "tests/remote/test_remote_docs.py",
    "remote/doi.md": "tests/remote/test_remote_docs.py",
    "remote/vdi.md": "tests/remote/test_remote_docs.py",
    "remote/s3.md": "tests/remote/test_remote_docs.py",
    "remote/irods.md": "tests/remote/test_remote_docs.py",
    "remote/slurm.md": "tests/remote/test_remote_docs.py",
}


@dataclass
class Block:
    page: str
    line: int
    lang: str
    text: str
    skip: str | None = None
    any_order: bool = False


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
    rel = (path.relative_to(DOCS).as_posix() if path.is_relative_to(DOCS)
           else path.name)
    page = Page(path)
    lines = path.read_text().splitlines()
    m = SCENARIO.search("\n".join(lines))
    if m:
        page.scenario = m.group(1)
    i = 0
    pending_skip = None
    any_order = False
    while i < len(lines):
        m = FENCE.match(lines[i])
        sk = SKIP.search(lines[i])
        if sk:
            pending_skip = sk.group(1)
        elif ANY_ORDER.search(lines[i]):
            any_order = True
        elif m:
            fence, lang = m.group(1), m.group(2)
            body = []
            j = i + 1
            while j < len(lines) and not lines[j].startswith(fence):
                body.append(lines[j])
                j += 1
            if lang in LANGS:
                page.blocks.append(Block(rel, i + 1, lang, "\n".join(body),
                                         pending_skip, any_order))
            pending_skip, any_order = None, False
            i = j
        elif lines[i].strip():
            pending_skip, any_order = None, False
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


# DataLad's log lines and git-annex's transfer meter (``100%  36 B  3 KiB/s``)
PROGRESS = re.compile(r"^(\[INFO\] .*|\s*\d{1,3}%\s+[\d.]+ \w?i?B\b.*)$",
                      re.M)
CLUSTER = re.compile(r"\bon cluster ([\w.-]+)")


def normalise(text: str) -> str:
    """What may differ between runs: ids, hashes, times, Slurm's transient
    states, progress messages, spacing (every other number must match)."""
    text = PROGRESS.sub("", text)
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                  r"[0-9a-f]{12}\b", "UUID", text)
    text = re.sub(r"\b[0-9a-f]{7,40}\b", "HEX", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", "TIME", text)
    text = re.sub(r"\b\d\d:\d\d:\d\d\b", "DURATION", text)
    text = re.sub(STATES, "STATE", text)
    # an array with tasks in different transient states
    text = re.sub(r"\bARRAY ACTIVE \(STATE(, STATE)*\)", "STATE", text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines()
                     if line.strip())


def with_job_ids(expected: str, ids: dict[str, str]) -> str:
    """The page's job ids replaced by this run's (in order of
    submission)."""
    for page_id, run_id in ids.items():
        expected = re.sub(r"\b%s\b" % page_id, run_id, expected)
    return expected


def with_cluster(expected: str, page: str | None, run: str | None) -> str:
    """The page's cluster name replaced by the one of this run."""
    if not page or not run or page == run:
        return expected
    expected = re.sub(r"\bcluster %s\b" % re.escape(page),
                      "cluster %s" % run, expected)
    return expected.replace('"cluster": "%s"' % page, '"cluster": "%s"' % run)


def matches(expected: str, actual: str, any_order: bool = False) -> bool:
    exp, act = normalise(expected), normalise(actual)
    if any_order:
        # the same lines in any order (`...` only within a line)
        exp_lines, act_lines = (sorted(exp.splitlines()),
                                sorted(act.splitlines()))
        return len(exp_lines) == len(act_lines) and all(
            matches(e, a) for e, a in zip(exp_lines, act_lines))
    pattern = ".*?".join(re.escape(part) for part in exp.split("..."))
    return re.fullmatch(pattern, act, re.S) is not None


# ------------------------------------------------------------------ running
MARK = "@@hpcdata-doctest@@"


def page_script(page: Page, substitute=()) -> tuple[str, list]:
    """One bash script for the page; markers separate the steps.
    `substitute`: (old, new) replacements made in every command (a test's
    stand-ins for the hosts and secrets a page shows)."""
    parts = ["set -e", "exec 2>&1"]
    steps = []

    def edited(cmd):
        for old, new in substitute:
            cmd = cmd.replace(old, new)
        return cmd

    for block in page.blocks:
        if block.skip:
            continue
        if block.lang == "console":
            for cmd, out in console_steps(block.text):
                parts.append("echo %s%d" % (MARK, len(steps)))
                parts.append(edited(cmd))
                steps.append((block, cmd, out))
        else:
            parts.append("echo %s%d" % (MARK, len(steps)))
            parts.append(edited(block.text))
            steps.append((block, block.text, None))
    parts.append("echo %s%d" % (MARK, len(steps)))
    return "\n".join(parts) + "\n", steps


@dataclass
class Run:
    """What the steps of a page printed, and the job ids they submitted."""
    steps: list
    outputs: dict[int, str]
    ids: dict[str, str]
    clusters: tuple[str | None, str | None] = (None, None)


def run_steps(page: Page, cwd: Path, env: dict, substitute=(),
              timeout: float = 900) -> Run:
    """Run every step of the page in one bash session; fail the test at
    the first step that fails."""
    script, steps = page_script(page, substitute)
    proc = subprocess.run(["bash", "-c", script], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=timeout,
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
    shown = "\n".join("\n".join(out) for _, _, out in steps if out)
    printed = "".join(outputs[k] for k in sorted(outputs))
    ids = dict(zip(SUBMITTED.findall(shown), SUBMITTED.findall(printed)))
    page_cluster, run_cluster = (CLUSTER.search(shown),
                                 CLUSTER.search(printed))
    return Run(steps, outputs, ids, (
        page_cluster.group(1) if page_cluster else None,
        run_cluster.group(1) if run_cluster else None))


def differences(run: Run) -> list[str]:
    """Every step whose output differs from the page, described."""
    found = []
    for n, (block, cmd, expected) in enumerate(run.steps):
        if expected is None:
            continue
        actual = run.outputs.get(n, "")
        want = with_cluster(with_job_ids("\n".join(expected), run.ids),
                            *run.clusters)
        if not matches(want, actual, block.any_order):
            found.append("%s line %d: the output of\n  $ %s\ndiffers from "
                         "the page:\n--- page:\n%s\n--- actual:\n%s" % (
                             block.page, block.line, cmd, want, actual))
    return found


def check_steps(run: Run) -> None:
    diff = differences(run)
    assert not diff, "\n\n".join(diff)


def run_page(page: Page, cwd: Path, env: dict) -> None:
    check_steps(run_steps(page, cwd, env))


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
         and p.path.relative_to(DOCS).as_posix() not in SKIPPED
         and p.path.relative_to(DOCS).as_posix() not in ELSEWHERE]


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


def test_pages_run_elsewhere_are_run_there():
    """Each page of ELSEWHERE exists and its test names it; a page with
    another scenario than ``slurm`` is one of them."""
    found = {p.path.relative_to(DOCS).as_posix(): p for p in pages()}
    for page, test in ELSEWHERE.items():
        assert page in found, page
        assert page in (REPO / test).read_text(), (page, test)
    other = {rel for rel, p in found.items() if p.scenario != "slurm"}
    assert other <= set(ELSEWHERE), other - set(ELSEWHERE)


def test_console_matching_can_fail():
    assert matches("slurm-finish(ok): committed job 12 (COMPLETED) as ab12cd3",
                   "slurm-finish(ok): committed job 12 (RUNNING) as 99ffee0")
    assert not matches("committed job 12", "closed job 12")
    assert not matches("9 data/words.txt", "8 data/words.txt")
    assert with_job_ids("job 15 log-15.out 150", {"15": "7"}) == \
        "job 7 log-7.out 150"
    assert with_cluster('job 1 on cluster hpcdata "cluster": "hpcdata" '
                        'datalad-hpcdata', "hpcdata", "ci") == \
        'job 1 on cluster ci "cluster": "ci" datalad-hpcdata'
    assert not matches("on cluster hpcdata", "on cluster ci")
    assert matches("a\nb", "[INFO] Waiting for 2 Slurm jobs\na\n[INFO] x\nb")
    assert not matches("[INFO] a\nb", "c\nb")
    assert matches("get x (from hpc...)\nok", "get x (from hpc...)\n\n"
                   "100%  36 B      643 B/s 0s\n   \nok")
    assert not matches("get x\nok", "get x\n100 files\nok")
    assert matches("job 1\njob 2\nend ...", "job 2\njob 1\nend 3 polls", True)
    assert not matches("job 1\njob 2", "job 2\njob 1")
    assert not matches("job 1\njob 2", "job 2\njob 3", True)
    assert not matches("job 1\njob 2", "job 1\njob 2\njob 3", True)
    assert matches("7 PENDING sims", "7 ARRAY ACTIVE (COMPLETED, PENDING) sims")
    assert not matches("7 PENDING sims", "7 ARRAY FAILED (COMPLETED, FAILED) "
                       "sims")
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
    found = set()
    for line in opts.splitlines():
        # an option's own line ("  -d DATASET, --dataset DATASET  text"),
        # not options named in another option's description
        if re.match(r"^ {1,6}-", line):
            head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
            found.update(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", head))
    return found


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
