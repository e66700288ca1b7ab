"""Annex many files at once by keys computed here, without `git annex add`.

``git annex add`` costs about 4 ms per file here whatever its size (a
finish of a 1,000-task array: 2,000 files, 8 s), and it hashes every file
again -- for a large output copied back from an alt-dir, a second full
read.  For the files that qualify, slurm-finish annexes them itself, in
bulk, with git-annex's plumbing:

1. :func:`plan_keys`: which files may take this way and with which hash:
   regular files the dataset's configuration would annex anyway (no
   ``annex.largefiles`` applies to them, in ``.gitattributes`` or the git
   config), locked (no ``annex.addunlocked``, not on an adjusted branch, no
   shared-repository permissions, no freeze hook), with the backend it
   configures (``annex.backend`` attribute, then config, then git-annex's
   default SHA256E) when that is a plain hash backend (MD5, SHA1, SHA256,
   SHA512, with or without E).  Everything else goes through ``git annex
   add`` as before;
2. the hash: taken from the alt-dir copy-back, which hashed the copy while
   it was made, or computed here (:func:`hash_files`);
3. :func:`make_keys`: the key git-annex would make of (size, hash, name),
   with its own extension rules (one ``git annex examinekey --batch
   --migrate-to-backend``);
4. :func:`register`: each file is moved into the annex object directory
   under its key and frozen (read-only, as git-annex leaves its objects;
   content already present is kept and the file dropped), replaced by the
   annex symlink, recorded present here (one ``git annex setpresentkey
   --batch``) and staged into a scratch index (``git update-index``).

``git annex fsck`` checks these files as any other annexed file.
"""

from __future__ import annotations

import hashlib
import os
import stat

from ..runner import run
from .git import GitError, git
from .scratch import (
    _KeysDbOnScratch,
    annex_command,
    git_add,
    journal_committed,
    no_split_env,
)

#: backend -> hashlib name; anything else goes through ``git annex add``
HASHES = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256",
          "SHA512": "sha512"}
DEFAULT_BACKEND = "SHA256E"
CHUNK = 4 << 20
FALSE = ("false", "no", "0", "off")
#: key -> git-annex's hash directory for it (a function of the key alone)
_HASHDIRS: dict = {}


def _attrs(root: str, paths: list[str]) -> dict:
    """path -> {attribute: value} for annex.backend and annex.largefiles."""
    out: dict = {p: {} for p in paths}
    if not paths:
        return out
    # the worktree's .gitattributes, as git annex add on a scratch index
    # reads them; the real index is not read (nor its shared part)
    proc = git(root, "check-attr", "-z", "--stdin", "annex.backend",
               "annex.largefiles", input="\0".join(paths) + "\0",
               env={"GIT_INDEX_FILE": _no_index(root)})
    fields = proc.stdout.split("\0")
    for i in range(0, len(fields) - 2, 3):
        path, attr, value = fields[i:i + 3]
        if value not in ("unspecified", "unset") and path in out:
            out[path][attr] = value
    return out


def _no_index(root: str) -> str:
    """An index file that does not exist (git reads no index then)."""
    return os.path.join(root, ".git", "datalad-hpcdata", "no.index")


def _config(root: str) -> dict:
    proc = git(root, "config", "-z", "--list", check=False)
    out = {}
    for item in proc.stdout.split("\0"):
        key, _, value = item.partition("\n")
        if key:
            out[key.lower()] = value
    return out


def plan_keys(root: str, sizes: dict) -> dict:
    """path -> (backend, hashlib name) for the files of `sizes` (path ->
    bytes) that may be annexed by a key computed here; the others (git
    annex add them) are absent."""
    if not sizes or not os.path.isdir(os.path.join(root, ".git", "annex")):
        return {}
    cfg = _config(root)
    if cfg.get("annex.addunlocked", "false").lower() not in FALSE or \
            cfg.get("core.sharedrepository", "false").lower() not in FALSE \
            or cfg.get("annex.freezecontent-command") or \
            cfg.get("annex.crippledfilesystem", "false").lower() \
            not in FALSE or not cfg.get("annex.uuid"):
        return {}
    head = git(root, "symbolic-ref", "-q", "HEAD", check=False).stdout
    if head.startswith("refs/heads/adjusted/"):
        return {}
    largefiles = cfg.get("annex.largefiles")
    backend = cfg.get("annex.backend") or DEFAULT_BACKEND
    # git annex add puts dotfiles (and files in dot-directories) into git
    # unless annex.dotfiles is set: leave those to it
    dotfiles = cfg.get("annex.dotfiles", "false").lower() not in FALSE
    out = {}
    for path, attrs in _attrs(root, sorted(sizes)).items():
        if "\n" in path or not dotfiles and any(
                part.startswith(".") for part in path.split("/")):
            continue
        rule = attrs.get("annex.largefiles", largefiles)
        if rule not in (None, "anything"):
            continue
        name = attrs.get("annex.backend", backend)
        algo = HASHES.get(name[:-1] if name.endswith("E") else name)
        if algo:
            out[path] = (name, algo)
    return out


def hash_files(root: str, paths: list[str]) -> dict:
    """path -> (backend, size, hex digest) for the regular files among
    `paths` that :func:`plan_keys` admits (read once each)."""
    sizes = {}
    for p in paths:
        try:
            st = os.lstat(os.path.join(root, p))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            sizes[p] = st.st_size
    out = {}
    for path, (backend, algo) in plan_keys(root, sizes).items():
        h = hashlib.new(algo)
        n = 0
        with open(os.path.join(root, path), "rb") as f:
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
        out[path] = (backend, n, h.hexdigest())
    return out


def make_keys(root: str, hashed: dict) -> dict:
    """path -> key for `hashed` (path -> (backend, size, hex digest)): the
    key git-annex gives such a file at that path."""
    out, by_backend = {}, {}
    for path, (backend, size, digest) in hashed.items():
        plain = backend[:-1] if backend.endswith("E") else backend
        key = "%s-s%d--%s" % (plain, size, digest)
        if plain == backend:
            out[path] = key
        else:
            by_backend.setdefault(backend, []).append((path, key))
    for backend, items in by_backend.items():
        proc = _annex(root, ["examinekey", "--batch", "--migrate-to-backend",
                             backend, "--format", "${key} ${hashdirmixed}\n"],
                      "".join("%s %s\n" % (k, p) for p, k in items))
        lines = [line.split(" ") for line in proc.stdout.splitlines()]
        if len(lines) != len(items) or any(len(x) != 2 for x in lines):
            raise GitError("git annex examinekey gave %d keys for %d files"
                           % (len(lines), len(items)))
        for (path, _), (key, hashdir) in zip(items, lines):
            out[path] = key
            _HASHDIRS[key] = hashdir
    return out


def _annex(root: str, args: list[str], input: str):
    """Run git-annex plumbing on a scratch index that does not exist: git
    and git-annex then neither refresh nor rewrite the real index (nor
    touch its shared part), and the keys database is not diffed against
    it (see :mod:`.scratch`)."""
    prefix, extra = annex_command()
    env = dict(extra, **no_split_env())
    env["GIT_INDEX_FILE"] = _no_index(root)
    with _KeysDbOnScratch(root):
        return run(list(prefix) + args, cwd=root, env=env, check=True,
                   error=GitError, input=input)


def _object_dirs(root: str, keys: list[str]) -> dict:
    """key -> its directory in the annex, relative to the repository
    (asked of git-annex for keys :func:`make_keys` did not see)."""
    ask = [k for k in keys if k not in _HASHDIRS]
    if ask:
        proc = _annex(root, ["examinekey", "--batch", "--format",
                             "${hashdirmixed}\n"],
                      "".join(k + "\n" for k in ask))
        dirs = proc.stdout.splitlines()
        if len(dirs) != len(ask):
            raise GitError("git annex examinekey gave %d paths for %d keys"
                           % (len(dirs), len(ask)))
        _HASHDIRS.update(zip(ask, dirs))
    return {k: os.path.join(".git", "annex", "objects", _HASHDIRS[k], k)
            for k in keys}


def _freeze(path: str) -> None:
    os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) & ~0o222)


def register(root: str, keys: dict, index: str) -> dict:
    """Annex each file of `keys` (path -> key) under its key and stage it
    into a scratch index holding only them; path -> (mode, sha)."""
    if not keys:
        return {}
    uuid = git(root, "config", "annex.uuid").stdout.strip()
    dirs = _object_dirs(root, sorted(set(keys.values())))
    for path, key in sorted(keys.items()):
        full = os.path.join(root, path)
        objdir = os.path.join(root, dirs[key])
        obj = os.path.join(objdir, key)
        if os.path.lexists(obj):
            os.unlink(full)             # the same content is annexed
        else:
            os.makedirs(objdir, exist_ok=True)
            os.chmod(objdir, stat.S_IMODE(os.stat(objdir).st_mode) | 0o200)
            os.rename(full, obj)
            _freeze(obj)
            _freeze(objdir)
        os.symlink(os.path.relpath(obj, os.path.dirname(full)), full)
    _annex(root, ["setpresentkey", "--batch"],
           "".join("%s %s 1\n" % (k, uuid)
                   for k in sorted(set(keys.values()))))
    if journal_committed(root):
        # setpresentkey only journals; commit the location logs to the
        # git-annex branch as git annex add would (merge does just that
        # when there is nothing to merge)
        _annex(root, ["merge", "-q"], "")
    return git_add(root, sorted(keys), index)
