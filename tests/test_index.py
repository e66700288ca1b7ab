"""Finishing brings the index up to date for exactly the committed paths.

The commits are built the way ``slurm-finish`` builds them
(:func:`datalad_hpcdata.jobs.commit.build_commits`, then the same
compare-and-swap ref update), in real DataLad datasets with real git and
git-annex, with the index split and not split and with the user's own
index settings.  After every finish the index must equal HEAD (``git
write-tree``), and ``git status``, ``datalad status`` and git-annex must
see a clean worktree.  In a split index the shared part must not be
touched at all: not rewritten (same file, same inode, same bytes) and not
even read by git (git refreshes its mtime on every read).

The last test runs the whole thing through ``datalad slurm-finish`` on the
local Slurm cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import datalad.api as dl
import pytest
from slurmtest import KW

from datalad_hpcdata.dataset import git as gitmod
from datalad_hpcdata.dataset import gitindex, scratch
from datalad_hpcdata.jobs.commit import JobCommit, build_commits


def git(path, *args, check=True, **kw):
    return subprocess.run(["git", *args], cwd=str(path), capture_output=True,
                          text=True, check=check, **kw).stdout


def make_dataset(path: Path, n_files: int = 300, annex: bool = True):
    """A dataset tracking `n_files` small files in 10 directories."""
    ds = dl.create(str(path), annex=annex, result_renderer="disabled")
    for i in range(n_files):
        d = path / "data" / ("d%d" % (i % 10))
        d.mkdir(parents=True, exist_ok=True)
        (d / ("f%04d.txt" % i)).write_text("file %d\n" % i)
    ds.save(message="fixture", result_renderer="disabled")
    return ds


def write_outputs(root: Path, job: str, n: int = 3) -> list[str]:
    out = root / "out" / job
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (out / ("r%d.txt" % i)).write_text("%s result %d\n" % (job, i))
    log = root / ("slurm-%s.out" % job)
    log.write_text("log of %s\n" % job)
    return ["out/%s" % job]


def finish_jobs(ds, jobs: list[str]) -> str:
    """Commit the jobs' outputs like slurm-finish: one commit each, HEAD
    moved once."""
    root = ds.path
    head = git(root, "rev-parse", "HEAD").strip()
    commits = [JobCommit(key=i, message="job %s" % j,
                         outputs=["out/%s" % j],
                         extra_files=["slurm-%s.out" % j])
               for i, j in enumerate(jobs)]
    annex = os.path.isdir(os.path.join(root, ".git", "annex"))
    scratch_index = os.path.join(root, ".git", "test-scratch.index")
    tip = build_commits(root, head, commits, annex, scratch_index)
    gitmod.update_ref(root, tip, head, "test finish")
    return tip


def shared_state(root) -> dict:
    """sharedindex.* files: name -> (inode, sha256 of bytes).  Not the
    mtime: git "freshens" (touches) the shared index whenever any git
    command writes the split part, which is not a rewrite."""
    gd = Path(root) / ".git"
    return {p.name: (p.stat().st_ino,
                     hashlib.sha256(p.read_bytes()).hexdigest())
            for p in gd.glob("sharedindex.*")}


def link_target(root) -> str | None:
    """The shared index the split index file names (None: not split)."""
    version, entries, exts = gitindex.parse(
        (Path(root) / ".git" / "index").read_bytes())
    link = dict(exts).get(b"link")
    return link[:20].hex() if link else None


def assert_clean(ds, annexed: list[str] = (), stat_clean: bool = True):
    root = ds.path
    assert git(root, "write-tree").strip() == \
        git(root, "rev-parse", "HEAD^{tree}").strip()
    assert git(root, "status", "--porcelain", "--untracked-files=all") == ""
    st = [r for r in ds.status(annex="basic", **KW)
          if r.get("state") != "clean"]
    assert st == [], st
    if annexed:
        assert git(root, "annex", "status") == ""
        found = git(root, "annex", "find", "--", *annexed).split()
        assert sorted(found) == sorted(annexed)
    if stat_clean:
        # the index agrees with the worktree without a refresh (entries
        # written by `git update-index --index-info` carry no stat data
        # until the next `git status` refreshes them)
        assert git(root, "diff-files", "--name-only") == ""


def test_roundtrip_of_gits_own_index_files(tmp_path):
    """parse + serialize reproduce git's files byte for byte (v2, v3 with
    an intent-to-add entry, v4, split and shared)."""
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    for i in range(30):
        (repo / ("f%d" % i)).write_text("%d\n" % i)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "x")
    (repo / "new").write_text("n\n")
    git(repo, "add", "-N", "new")
    seen = set()
    for step in ([], ["--index-version", "4"], ["--split-index"]):
        if step:
            git(repo, "update-index", *step)
        for p in [repo / ".git" / "index",
                  *(repo / ".git").glob("sharedindex.*")]:
            data = p.read_bytes()
            version, entries, exts = gitindex.parse(data)
            seen.add(version)
            assert gitindex.serialize(version, entries, exts) == data, p
            for sig, payload in exts:
                if sig == b"TREE":
                    assert gitindex.invalidate_tree(payload, set()) == \
                        payload
    assert seen == {3, 4}


def test_varint_roundtrip():
    for n in (0, 1, 127, 128, 255, 16511, 16512, 2**21, 10**9):
        enc = gitindex._encode_varint(n)
        assert gitindex._varint(enc + b"x", 0) == (n, len(enc))


@pytest.mark.parametrize("settings", [
    {},                                             # small: git does it
    {"core.splitIndex": "true"},
    {"core.splitIndex": "true", "index.version": "4"},
    {"core.splitIndex": "true", "splitIndex.maxPercentChange": "100"},
], ids=["plain", "split", "split-v4", "split-never-reshare"])
def test_finish_leaves_index_and_worktree_clean(tmp_path, settings):
    ds = make_dataset(tmp_path / "ds")
    root = ds.path
    for k, v in settings.items():
        git(root, "config", k, v)
    split = "core.splitIndex" in settings
    if settings.get("index.version"):
        git(root, "update-index", "--index-version",
            settings["index.version"])
    if split:
        git(root, "update-index", "--split-index")
    base = link_target(root)
    for batch in (["j1"], ["j2", "j3", "j4"], ["j5"]):
        for j in batch:
            write_outputs(Path(root), j)
        before = shared_state(root)
        finish_jobs(ds, batch)
        if split:
            # the shared index: same file, not rewritten, not even read
            assert shared_state(root) == before
            assert link_target(root) == base
        files = [p for j in batch for p in
                 ["out/%s/r%d.txt" % (j, i) for i in range(3)]
                 + ["slurm-%s.out" % j]]
        assert_clean(ds, annexed=files, stat_clean=split)
    if settings.get("index.version"):
        assert gitindex.parse(
            (Path(root) / ".git" / "index").read_bytes())[0] == 4


def test_split_index_update_reads_only_the_split_file(tmp_path,
                                                      monkeypatch):
    """The fast path is what runs (not git), and it opens the shared index
    for its header only."""
    ds = make_dataset(tmp_path / "ds")
    root = ds.path
    git(root, "config", "core.splitIndex", "true")
    git(root, "update-index", "--split-index")
    calls = []
    real = gitmod.gitindex.add_entries

    def spy(*a, **kw):
        calls.append(a[0])
        return real(*a, **kw)
    monkeypatch.setattr(gitmod.gitindex, "add_entries", spy)
    reads = []
    real_open = open

    class Counted:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def read(self, n=-1):
            data = self.f.read(n)
            reads.append(len(data))
            return data

    def watch(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        return Counted(f) if "sharedindex." in str(path) else f
    monkeypatch.setattr("builtins.open", watch)
    write_outputs(Path(root), "j1")
    finish_jobs(ds, ["j1"])
    monkeypatch.undo()
    assert calls, "the split-index writer did not run"
    assert reads == [gitindex.HEADER.size]
    assert_clean(ds, annexed=["out/j1/r0.txt"])


def test_user_said_no_split_index(tmp_path, monkeypatch):
    """core.splitIndex=false is respected, even above the auto threshold."""
    monkeypatch.setattr(gitmod, "SPLIT_INDEX_MIN_ENTRIES", 10)
    ds = make_dataset(tmp_path / "ds")
    git(ds.path, "config", "core.splitIndex", "false")
    write_outputs(Path(ds.path), "j1")
    finish_jobs(ds, ["j1"])
    assert link_target(ds.path) is None
    assert not shared_state(ds.path)
    assert_clean(ds, annexed=["out/j1/r0.txt"], stat_clean=False)


def test_large_index_is_split_once_then_left_alone(tmp_path, monkeypatch):
    """core.splitIndex unset and a large index: the first update splits it
    (git writes the shared part once), later ones leave it alone; the
    setting is not written to the user's config."""
    monkeypatch.setattr(gitmod, "SPLIT_INDEX_MIN_ENTRIES", 100)
    ds = make_dataset(tmp_path / "ds")
    root = ds.path
    write_outputs(Path(root), "j1")
    finish_jobs(ds, ["j1"])
    base = link_target(root)
    assert base is not None
    assert list(shared_state(root)) == ["sharedindex." + base]
    for j in ("j2", "j3"):
        write_outputs(Path(root), j)
        before = shared_state(root)
        finish_jobs(ds, [j])
        assert shared_state(root) == before
    assert git(root, "config", "--get", "core.splitIndex",
               check=False) == ""
    assert_clean(ds, annexed=["out/j3/r0.txt"])
    # git itself keeps the index split afterwards
    (Path(root) / "extra.txt").write_text("x\n")
    ds.save(message="user commit", result_renderer="disabled")
    assert link_target(root) is not None


@pytest.mark.parametrize("setup", ["untracked-cache", "hook", "dir-to-file",
                                   "file-to-dir", "deletion", "locked"])
def test_cases_left_to_git(tmp_path, setup):
    """What the split-index writer declines, git does, with the same
    result."""
    ds = make_dataset(tmp_path / "ds")
    root = Path(ds.path)
    git(root, "config", "core.splitIndex", "true")
    git(root, "update-index", "--split-index")
    job = "j1"
    if setup == "untracked-cache":
        git(root, "config", "core.untrackedCache", "true")
        git(root, "update-index", "--untracked-cache")
        git(root, "status", "--porcelain")
    elif setup == "hook":
        hook = root / ".git" / "hooks" / "post-index-change"
        # git runs the hook without GIT_DIR set: ask git where it is
        hook.write_text("#!/bin/sh\necho ran >> \"$(git rev-parse "
                        "--absolute-git-dir)/hook-ran\"\n")
        hook.chmod(0o755)
    elif setup in ("dir-to-file", "file-to-dir", "deletion"):
        # a committed output to change
        write_outputs(root, "j0")
        finish_jobs(ds, ["j0"])
        job = "j0"
        out = root / "out" / "j0"
        if setup == "dir-to-file":
            for p in out.iterdir():
                p.unlink()
            out.rmdir()
            out.write_text("now a file\n")
        elif setup == "file-to-dir":
            (out / "r0.txt").unlink()
            (out / "r0.txt").mkdir()
            (out / "r0.txt" / "inner").write_text("inner\n")
        else:
            (out / "r1.txt").unlink()
    if setup == "locked":
        write_outputs(root, job)
        lock = root / ".git" / "index.lock"
        lock.write_text("")
        head = git(root, "rev-parse", "HEAD")
        with pytest.raises(gitmod.GitError, match="index.lock"):
            finish_jobs(ds, [job])
        assert git(root, "rev-parse", "HEAD") == head
        lock.unlink()
    elif setup not in ("dir-to-file", "file-to-dir", "deletion"):
        write_outputs(root, job)
    tip = finish_jobs(ds, [job])
    assert git(root, "rev-parse", "HEAD").strip() == tip
    assert_clean(ds, stat_clean=False)
    if setup == "hook":
        assert (root / ".git" / "hook-ran").exists()


def test_git_only_dataset(tmp_path):
    """No annex: files go to git through a scratch index too."""
    ds = make_dataset(tmp_path / "ds", n_files=50, annex=False)
    git(ds.path, "config", "core.splitIndex", "true")
    git(ds.path, "update-index", "--split-index")
    write_outputs(Path(ds.path), "j1")
    before = shared_state(ds.path)
    finish_jobs(ds, ["j1"])
    assert shared_state(ds.path) == before
    assert git(ds.path, "cat-file", "-p", "HEAD:out/j1/r0.txt") == \
        "j1 result 0\n"
    assert_clean(ds)


def test_annex_keys_database_not_diffed_against_scratch_index(tmp_path):
    """git-annex keeps its keys database in step with the index it is
    given; the finish's scratch index must not make it forget (and later
    re-learn) every annexed file of the dataset."""
    ds = make_dataset(tmp_path / "ds")
    root = Path(ds.path)
    # a user command that brings the keys database up to date
    git(root, "annex", "unlock", "data/d0/f0000.txt")
    git(root, "annex", "lock", "data/d0/f0000.txt")
    last = git(root, "rev-parse", "refs/annex/last-index").strip()
    write_outputs(root, "j1")
    finish_jobs(ds, ["j1"])
    assert git(root, "rev-parse", "refs/annex/last-index").strip() == last
    # the next git-annex call on the real index diffs from there, and the
    # database knows the new file
    trace = subprocess.run(
        ["git", "annex", "unlock", "out/j1/r0.txt"], cwd=root,
        env=dict(os.environ, GIT_TRACE="1"), capture_output=True,
        text=True, check=True).stderr
    diffs = [line for line in trace.splitlines()
             if "built-in: git diff" in line and "-G" in line]
    assert diffs and " diff %s " % last in diffs[0], diffs
    assert not os.path.islink(root / "out" / "j1" / "r0.txt")
    assert (root / "out" / "j1" / "r0.txt").read_text() == \
        "j1 result 0\n"
    git(root, "annex", "lock", "out/j1/r0.txt")
    # without the precaution a scratch-index add records the scratch tree
    last = git(root, "rev-parse", "refs/annex/last-index").strip()
    (root / "x.txt").write_text("x\n")
    env = dict(os.environ,
               GIT_INDEX_FILE=str(root / ".git" / "plain-scratch.index"))
    subprocess.run(["git", "annex", "add", "x.txt"], cwd=root, env=env,
                   capture_output=True, check=True)
    assert git(root, "rev-parse", "refs/annex/last-index").strip() != last


def test_annex_command_skips_the_pypi_wrapper():
    argv, env = scratch.annex_command()
    proc = subprocess.run(list(argv) + ["version", "--raw"],
                          env=dict(os.environ, **dict(env)),
                          capture_output=True, text=True, check=True)
    wrapped = subprocess.run(["git", "annex", "version", "--raw"],
                             capture_output=True, text=True, check=True)
    assert proc.stdout == wrapped.stdout
    script = subprocess.run(["sh", "-c", "command -v git-annex"],
                            capture_output=True, text=True).stdout.strip()
    if b"from git_annex import cli" in Path(script).read_bytes()[:512]:
        assert argv[0].endswith(os.path.join("git_annex", "git-annex"))
        assert dict(env).get("MAGIC", "").endswith("magic.mgc")


@pytest.mark.slurm
def test_slurm_finish_with_split_index(tmp_path, slurm):
    """End to end: schedule, finish; the shared index stays untouched and
    the worktree is clean for git, DataLad and git-annex."""
    from slurmtest import one, wait_jobs
    ds = make_dataset(tmp_path / "ds")
    root = Path(ds.path)
    (root / "code").mkdir()
    (root / "code" / "job.sh").write_text(
        "#!/bin/sh\nmkdir -p \"$1\"\necho one > \"$1/a.txt\"\n"
        "echo two > \"$1/b.txt\"\n")
    (root / "code" / "job.sh").chmod(0o755)
    ds.save(message="job script", result_renderer="disabled")
    git(root, "config", "core.splitIndex", "true")
    git(root, "update-index", "--split-index")
    before = shared_state(root)
    jids = []
    for n in (1, 2):
        res = dl.slurm_schedule("sbatch code/job.sh out/run%d" % n,
                                dataset=ds, outputs=["out/run%d" % n], **KW)
        jids.append(one(res, action="slurm-schedule",
                        status="ok")["slurm_job_id"])
    wait_jobs(jids)
    res = dl.slurm_finish(dataset=ds, **KW)
    done = [r for r in res if r.get("status") == "ok" and r.get("commit")]
    assert len(done) == 2, res
    assert shared_state(root) == before
    annexed = ["out/run%d/%s.txt" % (n, f) for n in (1, 2) for f in "ab"]
    assert_clean(ds, annexed=annexed)
    rec = json.loads(git(root, "annex", "find", "--json", "out/run1/a.txt"))
    assert rec["file"] == "out/run1/a.txt"


def test_fresh_clone_scan(tmp_path):
    """docs/large-datasets.md: in a fresh clone the finish's git-annex
    call does not build the keys database (no scan of the dataset), and
    ``git annex smudge --update`` builds it up front."""
    ds = make_dataset(tmp_path / "ds", n_files=40)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", ds.path, str(clone))
    git(clone, "annex", "init", "-q")
    out = clone / "out" / "j1"
    out.mkdir(parents=True)
    (out / "a.txt").write_text("a\n")
    staged = scratch.annex_add(str(clone), ["out/j1/a.txt"],
                              str(clone / ".git" / "scratch.index"))
    assert staged["out/j1/a.txt"][0] == "120000"
    assert git(clone, "rev-parse", "-q", "--verify",
               "refs/annex/last-index", check=False) == ""
    git(clone, "annex", "smudge", "--update")
    assert git(clone, "rev-parse", "refs/annex/last-index").strip() == \
        git(clone, "write-tree").strip()


def split_dataset(path: Path):
    ds = make_dataset(path)
    git(ds.path, "config", "core.splitIndex", "true")
    git(ds.path, "update-index", "--split-index")
    return ds


def test_undo_puts_the_split_file_back(tmp_path):
    """A failed publish gives the index back exactly: the old split file
    (its bytes, hence every entry and its stat data), the shared part
    untouched -- without the undo reading the whole index."""
    from datalad_hpcdata.jobs.commit import stage
    ds = split_dataset(tmp_path / "ds")
    root = Path(ds.path)
    index = root / ".git" / "index"
    write_outputs(root, "j1")
    files = ["out/j1/r%d.txt" % i for i in range(3)] + ["slurm-j1.out"]
    before, shared = index.read_bytes(), shared_state(root)
    calls = []
    real = gitmod.ls_files_stage

    def spy(*a, **kw):
        calls.append(kw.get("env"))
        return real(*a, **kw)
    undo = []
    gitmod.ls_files_stage, saved = spy, gitmod.ls_files_stage
    try:
        stage(str(root), files, [], True,
              str(root / ".git" / "t.index"), undo)
    finally:
        gitmod.ls_files_stage = saved
    # no ls-files on the real index (the scratch index's is in scratch.py)
    assert calls == [] and [r[0] for r in undo] == ["split"]
    added = {n.decode() for _, n in gitindex.parse(index.read_bytes())[1]}
    assert set(files) <= added
    gitmod.restore_index(str(root), undo)
    assert undo == []
    assert index.read_bytes() == before
    assert shared_state(root) == shared
    assert git(root, "ls-files", "--", *files) == ""


def test_undo_after_the_index_changed(tmp_path):
    """Someone rewrote the index between the finish's update and its undo:
    the finish's paths get their old entries back (from a copy of the old
    split file), the other change stays."""
    ds = split_dataset(tmp_path / "ds")
    root = Path(ds.path)
    # one path the finish replaces (it was tracked), one it adds
    tracked = "data/d0/f0000.txt"
    old = git(root, "ls-files", "-s", "--", tracked)
    (root / "new.txt").write_text("new\n")
    blob = git(root, "hash-object", "-w", "new.txt").strip()
    undo = []
    assert gitmod.update_index(str(root), {tracked: ("100644", blob),
                                           "new.txt": ("100644", blob)},
                               undo=undo) == "split"
    (root / "other.txt").write_text("other\n")
    git(root, "add", "other.txt")
    gitmod.restore_index(str(root), undo)
    assert git(root, "ls-files", "-s", "--", tracked) == old
    assert git(root, "ls-files", "--", "new.txt", "other.txt") == \
        "other.txt\n"


def test_git_route_undo(tmp_path):
    """Not split: git updates the index, the undo holds the old entries."""
    ds = make_dataset(tmp_path / "ds")
    root = Path(ds.path)
    before = git(root, "ls-files", "-s")
    (root / "new.txt").write_text("new\n")
    blob = git(root, "hash-object", "-w", "new.txt").strip()
    undo = []
    assert gitmod.update_index(str(root), {"new.txt": ("100644", blob)},
                               ["data/d0/f0000.txt"], undo) == "git"
    assert git(root, "ls-files", "-s") != before
    gitmod.restore_index(str(root), undo)
    assert git(root, "ls-files", "-s") == before


def test_location_logs_stay_in_the_journal(tmp_path):
    """By default a finish commits git-annex's location logs (as datalad
    save); with datalad.hpcdata.annex-journal=defer they are journalled,
    not committed to the git-annex branch (that commit rewrites
    .git/annex/index, one entry per key); git-annex sees them, its next
    committing command commits them; a user's annex.alwayscommit is
    followed."""
    ds = make_dataset(tmp_path / "ds")
    root = Path(ds.path)
    journal = root / ".git" / "annex" / "journal"
    # by default (as after datalad save) the logs are committed
    write_outputs(root, "j0")
    branch = git(root, "rev-parse", "git-annex").strip()
    finish_jobs(ds, ["j0"])
    assert not journal.exists() or list(journal.iterdir()) == []
    assert git(root, "rev-parse", "git-annex").strip() != branch
    git(root, "config", "datalad.hpcdata.annex-journal", "defer")
    branch = git(root, "rev-parse", "git-annex").strip()
    write_outputs(root, "j1")
    finish_jobs(ds, ["j1"])
    assert git(root, "rev-parse", "git-annex").strip() == branch
    assert len(list(journal.iterdir())) == 4
    assert git(root, "annex", "find", "--in", "here", "--", "out/j1"
               ).split() == ["out/j1/r%d.txt" % i for i in range(3)]
    git(root, "annex", "merge")
    assert list(journal.iterdir()) == []
    key = git(root, "annex", "lookupkey", "out/j1/r0.txt").strip()
    assert git(root, "log", "-1", "--format=%H", "git-annex", "--",
               "*%s.log" % key).strip() == \
        git(root, "rev-parse", "git-annex").strip()
    git(root, "config", "annex.alwayscommit", "true")
    write_outputs(root, "j2")
    finish_jobs(ds, ["j2"])
    assert list(journal.iterdir()) == []
