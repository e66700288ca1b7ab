"""Every git and git-annex call, through the package's one runner.

Committing one job's few output files must not cost a whole-dataset status
scan.  `TreeEditor` applies a set of path changes to a tree by reading only
the trees on the changed paths (``git cat-file --batch``) and writing only
the trees that changed (``git mktree --batch``): cost follows the number and
depth of changed paths and the size of the directories they are in, not the
size of the dataset.  :func:`annex_add` stages files into a scratch index
holding only them, for the same reason, and :func:`update_index` then tells
the real index about exactly those paths: in a split index (see
:mod:`.gitindex`) without reading or rewriting the shared part.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import sys

from ..runner import CommandError, popen, run
from . import gitindex

TREE_MODE = "40000"
# an index this large that is not split yet (and core.splitIndex unset) is
# split by the next update: from then on updates leave the shared part alone
SPLIT_INDEX_MIN_ENTRIES = 100_000
GITLINK_MODE = "160000"
ZERO = "0" * 40
# pathspecs are always literal: a file named "a*" is not a pattern
GIT_ENV = {"GIT_LITERAL_PATHSPECS": "1"}


def _config_env(key: str, value: str) -> dict:
    """Environment that sets one git config item for every git process
    started with it (git-annex's too), keeping the caller's own."""
    n = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    return {"GIT_CONFIG_COUNT": str(n + 1), "GIT_CONFIG_KEY_%d" % n: key,
            "GIT_CONFIG_VALUE_%d" % n: value}


def no_split_env() -> dict:
    """Scratch indexes are never split (no sharedindex.* files left)."""
    return _config_env("core.splitIndex", "false")


class GitError(CommandError):
    """A git or git-annex call failed."""


def git(repo, *args: str, input: str | bytes | None = None,
        env: dict | None = None, check: bool = True, text: bool = True,
        literal: bool = True):
    """Run ``git ARGS`` in `repo`; `env` adds variables.  `literal` makes
    every pathspec literal (git-annex refuses that magic: pass False)."""
    env = dict(GIT_ENV if literal else {}, **(env or {}))
    return run(["git", *args], cwd=repo, input=input, env=env, check=check,
               text=text, error=GitError)


def rev_parse(repo, rev):
    proc = git(repo, "rev-parse", "--verify", "-q", rev + "^{commit}",
               check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _obj_type(mode: str) -> str:
    if mode == TREE_MODE:
        return "tree"
    if mode == GITLINK_MODE:
        return "commit"
    return "blob"


class TreeEditor:
    """Apply {path: (mode, sha) | None} edits to trees, index-free."""

    def __init__(self, repo):
        self.repo = str(repo)
        self._cat = None
        self._mktree = None
        self._cache = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for p in (self._cat, self._mktree):
            if p is not None:
                try:
                    p.stdin.close()
                except OSError:
                    pass
                p.wait()
        self._cat = self._mktree = None

    def _popen(self, *args):
        return popen(["git", *args], cwd=self.repo, env=GIT_ENV)

    def read_tree(self, sha: str) -> dict:
        """name -> (mode, sha) of one tree object."""
        if sha in self._cache:
            return dict(self._cache[sha])
        if self._cat is None:
            self._cat = self._popen("cat-file", "--batch")
        self._cat.stdin.write(sha.encode() + b"\n")
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().split()
        if len(header) != 3 or header[1] != b"tree":
            raise GitError("not a tree: %s (%r)" % (sha, header))
        size = int(header[2])
        data = self._cat.stdout.read(size)
        self._cat.stdout.read(1)  # trailing LF
        entries = {}
        pos = 0
        hashlen = len(bytes.fromhex(sha))
        while pos < size:
            sp = data.index(b" ", pos)
            nul = data.index(b"\0", sp)
            mode = data[pos:sp].decode()
            name = data[sp + 1:nul].decode("utf-8", "surrogateescape")
            entries[name] = (mode, data[nul + 1:nul + 1 + hashlen].hex())
            pos = nul + 1 + hashlen
        self._cache[sha] = entries
        return dict(entries)

    def write_tree(self, entries: dict) -> str:
        if self._mktree is None:
            self._mktree = self._popen("mktree", "-z", "--batch", "--missing")
        buf = bytearray()
        for name, (mode, sha) in entries.items():
            buf += ("%s %s %s\t" % (mode, _obj_type(mode), sha)).encode()
            buf += name.encode("utf-8", "surrogateescape") + b"\0"
        buf += b"\0"
        self._mktree.stdin.write(bytes(buf))
        self._mktree.stdin.flush()
        sha = self._mktree.stdout.readline().strip().decode()
        if not sha:
            raise GitError("git mktree gave no tree")
        self._cache[sha] = dict(entries)
        return sha

    def apply(self, tree: str | None, changes: dict) -> str:
        """Return the tree `tree` with `changes` applied.

        `changes` maps dataset-relative POSIX paths to (mode, sha), or None
        to delete the path (and anything below it)."""
        trie = {}
        for path, entry in changes.items():
            node = trie
            parts = path.split("/")
            for part in parts[:-1]:
                nxt = node.get(part)
                if isinstance(nxt, tuple) and nxt[1] is not None \
                        and entry is None:
                    break   # a file replaces this directory: moot
                if not isinstance(nxt, dict):
                    nxt = node[part] = {}
                node = nxt
            else:
                node[parts[-1]] = ("leaf", entry)
        sha = self._edit(tree, trie)
        return sha if sha is not None else self.write_tree({})

    def _edit(self, tree, trie):
        entries = self.read_tree(tree) if tree else {}
        for name, node in trie.items():
            if isinstance(node, tuple):
                entry = node[1]
                if entry is None:
                    entries.pop(name, None)
                else:
                    entries[name] = (entry[0].lstrip("0") or "0", entry[1])
                continue
            current = entries.get(name)
            sub = current[1] if current and current[0] == TREE_MODE else None
            new = self._edit(sub, node)
            if new is None:
                entries.pop(name, None)
            else:
                entries[name] = (TREE_MODE, new)
        if not entries:
            return None
        return self.write_tree(entries)


def commit_tree(repo, tree, parents, message, env=None) -> str:
    args = ["commit-tree", tree]
    for p in parents:
        args += ["-p", p]
    return git(repo, *args, input=message, env=env).stdout.strip()


def update_ref(repo, new, old, reason):
    """Move HEAD (through its branch) from `old` to `new`, atomically."""
    git(repo, "update-ref", "-m", reason, "HEAD", new, old or ZERO)


def is_ancestor(repo, commit, of="HEAD") -> bool:
    return git(repo, "merge-base", "--is-ancestor", commit, of,
               check=False).returncode == 0


def head_tree(repo, head):
    if not head:
        return None
    return git(repo, "rev-parse", head + "^{tree}").stdout.strip()


def _entries(out: str, sha_field: int) -> dict:
    """Parse `ls-tree -z` ("mode type sha") or `ls-files -s -z` ("mode sha
    stage") records into path -> (mode, sha)."""
    found = {}
    for rec in out.split("\0"):
        if rec:
            meta, path = rec.split("\t", 1)
            fields = meta.split(" ")
            found[path] = (fields[0], fields[sha_field])
    return found


def ls_tree(repo, rev, paths) -> dict:
    """path -> (mode, sha) of tracked files at/below `paths` in `rev`."""
    if not rev or not paths:
        return {}
    return _entries(git(repo, "ls-tree", "-r", "-z", "--full-tree", rev,
                        "--", *paths).stdout, sha_field=2)


def ls_files_stage(repo, paths, env=None) -> dict:
    """path -> (mode, sha) staged in the index for exactly these paths."""
    if not paths:
        return {}
    return _entries(git(repo, "ls-files", "-s", "-z", "--full-name", "--",
                        *paths, env=env).stdout, sha_field=1)


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


def config(root) -> dict:
    """The repository's git configuration (last value of each key)."""
    out = git(root, "config", "-z", "--list", check=False).stdout
    found = {}
    for rec in out.split("\0"):
        key, _, value = rec.partition("\n")
        if key:
            found[key.lower()] = value
    return found


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
            proc = run(list(prefix) + ["add", "--batch", "--json",
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


def _type_changes(root, paths) -> bool:
    """Would one of `paths` replace a file by a directory (an ancestor is a
    file in HEAD) or a directory by a file?"""
    dirs = sorted({d for p in paths for d in _dirs_above(p)})
    query = "".join("HEAD:%s\n" % p for p in dirs + sorted(paths))
    out = git(root, "cat-file", "--batch-check=%(objecttype)",
              input=query).stdout.split("\n")
    kinds = {p: "missing" if k.endswith(" missing") else k
             for p, k in zip(dirs + sorted(paths), out)}
    return any(kinds[d] not in ("tree", "missing") for d in dirs) or \
        any(kinds[p] == "tree" for p in paths)


def _dirs_above(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def update_index(root: str, entries: dict, deleted=()) -> str:
    """Bring the index up to date for exactly these paths: `entries` (path
    -> (mode, sha)) staged as given, `deleted` removed.

    In a split index, additions go into the split file alone (no read or
    rewrite of the shared part, see :mod:`.gitindex`).  Anything else --
    deletions, an index git must rewrite, the user's ``core.splitIndex=
    false``, a ``post-index-change`` hook -- goes to one ``git
    update-index --index-info``, which also splits a large index once when
    ``core.splitIndex`` is unset.  Returns "split" or "git"."""
    if not entries and not deleted:
        return "none"
    settings = config(root)
    split = settings.get("core.splitindex", "").lower()
    index, hook, git_dir = git(
        root, "rev-parse", "--git-path", "index", "--git-path",
        "hooks/post-index-change", "--git-dir").stdout.splitlines()
    index, hook, git_dir = (os.path.join(root, p) for p in
                            (index, hook, git_dir))
    if not deleted and split not in ("false", "no", "off", "0") \
            and not os.path.exists(hook) and not _type_changes(root, entries):
        try:
            gitindex.add_entries(index, git_dir, root, entries,
                                 settings.get("splitindex.maxpercentchange"))
            return "split"
        except gitindex.Unsupported:
            pass
        except gitindex.Locked as e:
            raise GitError(str(e)) from e
    info = "".join("%s %s\t%s\0" % (mode, sha, path)
                   for path, (mode, sha) in entries.items())
    info += "".join("0 %s\t%s\0" % (ZERO, path) for path in deleted)
    opts = []
    sparse = any(settings.get(k, "").lower() == "true"
                 for k in ("index.sparse", "core.sparsecheckout"))
    if not split and not sparse and \
            _index_entries(index) >= SPLIT_INDEX_MIN_ENTRIES:
        opts = ["-c", "core.splitIndex=true"]
    git(root, *opts, "update-index", "-z", "--index-info", input=info)
    return "git"


def _index_entries(index: str) -> int:
    """Entries in a (not split) index file, from its header."""
    try:
        with open(index, "rb") as f:
            sig, _, count = gitindex.HEADER.unpack(
                f.read(gitindex.HEADER.size))
    except (OSError, ValueError):
        return 0
    return count if sig == gitindex.SIGNATURE else 0
