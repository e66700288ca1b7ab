"""Every git and git-annex call, through the package's one runner.

Committing one job's few output files must not cost a whole-dataset status
scan.  `TreeEditor` applies a set of path changes to a tree by reading only
the trees on the changed paths (``git cat-file --batch``) and writing only
the trees that changed (``git mktree --batch``): cost follows the number and
depth of changed paths and the size of the directories they are in, not the
size of the dataset.  Files are staged into a scratch index holding only
them (:mod:`.scratch`), for the same reason, and :func:`update_index` then
tells the real index about exactly those paths: in a split index (see
:mod:`.gitindex`) without reading or rewriting the shared part.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

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


def head_commit(repo, git_dir) -> str | None:
    """HEAD's commit read from the ref files, as git reads them (no
    process: it is read once per submitted job); anything unusual
    (reftable, a symbolic ref to a symbolic ref, ...) asks git."""
    git_dir = Path(git_dir)
    try:
        head = (git_dir / "HEAD").read_text().strip()
        common = git_dir
        if (git_dir / "commondir").is_file():
            common = git_dir / (git_dir / "commondir").read_text().strip()
        sha = head
        if head.startswith("ref: refs/"):
            ref, sha = head[5:], None
            for base in (git_dir, common):
                if (base / ref).is_file():
                    sha = (base / ref).read_text().strip()
                    break
            else:
                for line in (common / "packed-refs").read_text(
                        ).splitlines():
                    if line.endswith(" " + ref):
                        sha = line.split(" ", 1)[0]
                        break
        if sha and re.fullmatch(r"[0-9a-f]{40}", sha):
            return sha
    except OSError:
        pass
    return rev_parse(repo, "HEAD")


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


def config(root) -> dict:
    """The repository's git configuration (last value of each key)."""
    out = git(root, "config", "-z", "--list", check=False).stdout
    found = {}
    for rec in out.split("\0"):
        key, _, value = rec.partition("\n")
        if key:
            found[key.lower()] = value
    return found


def _type_changes(root, paths) -> bool:
    """Would one of `paths` replace a file by a directory (an ancestor is a
    file in HEAD) or a directory by a file?"""
    if any("\n" in p for p in paths):
        return True             # not for a line-based query: let git do it
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


def update_index(root: str, entries: dict, deleted=(),
                 undo: list | None = None) -> str:
    """Bring the index up to date for exactly these paths: `entries` (path
    -> (mode, sha)) staged as given, `deleted` removed.

    In a split index, additions go into the split file alone (no read or
    rewrite of the shared part, see :mod:`.gitindex`).  Anything else --
    deletions, an index git must rewrite, the user's ``core.splitIndex=
    false``, a ``post-index-change`` hook -- goes to one ``git
    update-index --index-info``, which also splits a large index once when
    ``core.splitIndex`` is unset.  `undo` gets what :func:`restore_index`
    needs to give these paths their old entries back: the old split file
    (a few kB; nothing else is read), or the paths' old entries when git
    does the update (it reads the whole index anyway).  Returns "split" or
    "git"."""
    if not entries and not deleted:
        return "none"
    settings = config(root)
    split = settings.get("core.splitindex", "").lower()
    index, hook, git_dir = git(
        root, "rev-parse", "--git-path", "index", "--git-path",
        "hooks/post-index-change", "--git-dir").stdout.splitlines()
    index, hook, git_dir = (os.path.join(root, p) for p in
                            (index, hook, git_dir))
    paths = sorted(set(entries) | set(deleted))
    if not deleted and split not in ("false", "no", "off", "0") \
            and _has_shared_index(git_dir) and not os.path.exists(hook) \
            and not _type_changes(root, entries):
        try:
            old, written = gitindex.add_entries(
                index, git_dir, root, entries,
                settings.get("splitindex.maxpercentchange"))
            if undo is not None:
                undo.append(("split", index, git_dir, old, written, paths))
            return "split"
        except gitindex.Unsupported:
            pass
        except gitindex.Locked as e:
            raise GitError(str(e)) from e
    if undo is not None:
        undo.append(("git", index_info(ls_files_stage(root, paths), paths)))
    opts = []
    sparse = any(settings.get(k, "").lower() == "true"
                 for k in ("index.sparse", "core.sparsecheckout"))
    if not split and not sparse and \
            _index_entries(index) >= SPLIT_INDEX_MIN_ENTRIES:
        opts = ["-c", "core.splitIndex=true"]
    git(root, *opts, "update-index", "-z", "--index-info",
        input=index_info(entries, paths))
    return "git"


def index_info(entries: dict, paths) -> str:
    """``--index-info`` input that sets `paths` to `entries` (path ->
    (mode, sha)); paths without an entry are removed from the index."""
    return "".join("%s %s\t%s\0" % (entries[p][0], entries[p][1], p)
                   if p in entries else "0 %s\t%s\0" % (ZERO, p)
                   for p in paths)


def restore_index(root: str, undo: list) -> None:
    """Give the index back the entries noted by :func:`update_index`.

    A split file nobody rewrote since is put back as it was; otherwise the
    paths' old entries are read from a copy of the old split file (its
    shared part is still in the git dir; HEAD's entries if it is gone) and
    git sets them (this failure path may read the whole index)."""
    for rec in reversed(undo):
        if rec[0] == "git":
            info = rec[1]
        else:
            _, index, git_dir, old, written, paths = rec
            if gitindex.restore(index, old, written):
                continue
            info = index_info(_old_entries(root, git_dir, old, paths), paths)
        if info:
            git(root, "update-index", "-z", "--index-info", input=info)
    undo.clear()


def _old_entries(root: str, git_dir: str, old: bytes, paths) -> dict:
    copy = os.path.join(git_dir, "hpcdata-undo-%d.index" % os.getpid())
    try:
        with open(copy, "wb") as f:
            f.write(old)
        return ls_files_stage(root, paths, env={"GIT_INDEX_FILE": copy})
    except (GitError, OSError):
        return ls_tree(root, "HEAD", paths)
    finally:
        if os.path.lexists(copy):
            os.unlink(copy)


def _has_shared_index(git_dir: str) -> bool:
    """Could the index be split?  (Not without a shared index file: then
    the index is not parsed just to find that out.)"""
    try:
        with os.scandir(git_dir) as it:
            return any(e.name.startswith("sharedindex.") for e in it)
    except OSError:
        return True


def _index_entries(index: str) -> int:
    """Entries in a (not split) index file, from its header."""
    try:
        with open(index, "rb") as f:
            sig, _, count = gitindex.HEADER.unpack(
                f.read(gitindex.HEADER.size))
    except (OSError, ValueError):
        return 0
    return count if sig == gitindex.SIGNATURE else 0
