"""Stage files into a scratch index that holds only them.

git and git-annex refresh and rewrite whatever index they work on; pointed
at a scratch index (``GIT_INDEX_FILE``) their cost follows the job's files,
not the dataset.  What they staged is read back (path -> (mode, sha)) and
:func:`.git.update_index` tells the real index.  Three details keep that
true for git-annex too: the real git-annex binary is run (not the PyPI
wheel's Python wrapper), git-annex's keys database is not diffed against
the scratch index (:class:`_KeysDbOnScratch`), scratch indexes are never
split (no ``sharedindex.*`` files left behind when the user has
``core.splitIndex=true``), and git-annex's location-log changes stay in its
journal when the dataset chose that (:func:`annex_commit_option`).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import sys

from ..runner import run
from .git import ZERO, GitError, git, ls_files_stage


def _config_env(key: str, value: str) -> dict:
    """Environment that sets one git config item for every git process
    started with it (git-annex's too), keeping the caller's own."""
    n = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    return {"GIT_CONFIG_COUNT": str(n + 1), "GIT_CONFIG_KEY_%d" % n: key,
            "GIT_CONFIG_VALUE_%d" % n: value}


def no_split_env() -> dict:
    """Scratch indexes are never split (no sharedindex.* files left)."""
    return _config_env("core.splitIndex", "false")


@functools.lru_cache(maxsize=None)
def annex_command() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(argv prefix, extra environment) that runs git-annex.

    The git-annex wheel from PyPI installs ``git-annex`` as a Python script
    that only sets ``MAGIC`` and execs the real binary next to its module:
    a Python start-up (~40 ms) per call.  When that script is the one on
    PATH and the module is importable here, run the binary directly, with
    the same environment; otherwise ``git annex`` as usual."""
    script = shutil.which("git-annex")
    spec = importlib.util.find_spec("git_annex") if script else None
    if spec is None or not spec.origin:
        return ("git", "annex"), ()
    try:
        with open(script, "rb") as f:
            head = f.read(512)
    except OSError:
        return ("git", "annex"), ()
    if not head.startswith(b"#!") or b"from git_annex import cli" not in head:
        return ("git", "annex"), ()
    interpreter = head[2:].split(b"\n", 1)[0].strip().decode(errors="replace")
    if os.path.realpath(interpreter) != os.path.realpath(sys.executable):
        return ("git", "annex"), ()
    pkg = os.path.dirname(spec.origin)
    binary = os.path.join(pkg, "git-annex")
    if not os.access(binary, os.X_OK):
        return ("git", "annex"), ()
    magic = os.path.join(pkg, "magic.mgc")
    return (binary,), ((("MAGIC", magic),) if os.path.exists(magic) else ())


LAST_INDEX = "refs/annex/last-index"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


class _KeysDbOnScratch:
    """Keep git-annex's keys database from being diffed against a scratch
    index.

    Before it adds anything, git-annex brings its keys database up to date
    with the index it is given (Database.Keys.reconcileStaged): it diffs the
    tree recorded in ``refs/annex/last-index`` against that index's tree
    and records the new one.  Given the (empty) scratch index, that diff
    spans the whole dataset twice -- every annexed file "removed" now, and
    "added" back at the next git-annex call on the real index: O(files)
    each time.  So while git-annex works on the scratch index, the ref
    names the empty tree (diff: nothing); afterwards it names the user's
    tree again, so the next git-annex call on the real index diffs only
    what changed.  Re-applying a diff to the database is harmless, so
    whatever happens in between (a crash, a concurrent git-annex) costs at
    most one full diff, never a wrong database."""

    def __init__(self, root):
        self.root = root
        self.saved = None

    def __enter__(self):
        saved = rev_parse_ref(self.root, LAST_INDEX)
        if saved and saved != EMPTY_TREE:
            git(self.root, "update-ref", LAST_INDEX, EMPTY_TREE, saved,
                check=False)
            self.saved = saved
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            return
        now = rev_parse_ref(self.root, LAST_INDEX)
        if now != self.saved:
            git(self.root, "update-ref", LAST_INDEX, self.saved,
                now or ZERO, check=False)


JOURNAL_CONFIG = "datalad.hpcdata.annex-journal"


def journal_committed(root) -> bool:
    """Whether location logs are committed to the git-annex branch at the
    end of each git-annex call (see :func:`annex_commit_option`)."""
    proc = git(root, "config", "--get", "--type=bool", "annex.alwayscommit",
               check=False)
    if proc.stdout.strip():
        return proc.stdout.strip() == "true"
    return annex_commit_option(root) == []


def annex_commit_option(root) -> list[str]:
    """``-c annex.alwayscommit=false`` when the dataset chose
    ``datalad.hpcdata.annex-journal=defer`` (and did not set
    ``annex.alwayscommit`` itself, which git-annex then follows).

    By default (``commit``) git-annex ends each command by committing the
    location logs of the keys it added to the git-annex branch, as after
    ``datalad save``: a clone sees at once where the content is.  That
    commit goes through ``.git/annex/index``, one entry per key of the
    dataset, and rewrites it (~3 s at 900,000 keys).  Deferred, the logs
    stay in git-annex's journal, which git-annex itself reads first; the
    next git-annex command that commits (``git annex merge``, ``sync``,
    ``datalad push``) commits them all at once, and until then clones do
    not know the content is here."""
    proc = git(root, "config", "--get", "annex.alwayscommit", check=False)
    if proc.stdout.strip():
        return []
    mode = git(root, "config", "--get", JOURNAL_CONFIG,
               check=False).stdout.strip() or "commit"
    if mode not in ("commit", "defer"):
        raise ValueError("%s must be 'commit' or 'defer', not %r"
                         % (JOURNAL_CONFIG, mode))
    return ["-c", "annex.alwayscommit=false"] if mode == "defer" else []


def rev_parse_ref(repo, ref) -> str | None:
    proc = git(repo, "rev-parse", "--verify", "-q", ref, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def annex_add(root: str, files: list[str], index: str) -> dict:
    """`git annex add` the files into a scratch index holding only them.

    git-annex refreshes and rewrites whatever index it works on; pointing it
    at a scratch index keeps that cost proportional to the job's files, not
    to the dataset (annex.largefiles is honoured; small files go to git).
    Returns path -> (mode, sha) of what it staged."""
    bad = [f for f in files if "\n" in f]
    if bad:
        raise GitError("file names with newlines cannot be annexed: %r" % bad)
    if os.path.lexists(index):
        os.unlink(index)
    prefix, extra = annex_command()
    env = dict(extra, **no_split_env())
    env["GIT_INDEX_FILE"] = index
    try:
        with _KeysDbOnScratch(root):
            proc = run(list(prefix) + ["add", *annex_commit_option(root),
                                       "--batch", "--json",
                                       "--json-error-messages"],
                       cwd=root, input="\n".join(files) + "\n", env=env,
                       check=True, error=GitError)
        for line in proc.stdout.splitlines():
            try:
                rec = json.loads(line) if line.strip() else {}
            except ValueError:
                continue
            if rec.get("success") is False:
                raise GitError("git annex add %s failed: %s" % (
                    rec.get("file"),
                    "; ".join(rec.get("error-messages") or [])))
        return ls_files_stage(root, files, env=env)
    finally:
        if os.path.lexists(index):
            os.unlink(index)


def git_add(root: str, files: list[str], index: str) -> dict:
    """`git update-index --add` the files into a scratch index holding only
    them (repositories without an annex); path -> (mode, sha) staged."""
    if os.path.lexists(index):
        os.unlink(index)
    env = dict(no_split_env(), GIT_INDEX_FILE=index)
    try:
        git(root, "update-index", "--add", "-z", "--stdin",
            input="\0".join(files) + "\0", env=env)
        return ls_files_stage(root, files, env=env)
    finally:
        if os.path.lexists(index):
            os.unlink(index)
