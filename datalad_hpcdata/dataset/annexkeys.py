"""Annex files whose hash is already known (an alt-dir copy-back hashed
them while copying), without git-annex reading them again.

``git annex add`` would hash a file once more; for a large output copied
back from an alt-dir that is a second (or third) full read.  Instead:

1. :func:`plan_keys` decides which files may take this way and with which
   hash: those the dataset's configuration would annex anyway (no
   ``annex.largefiles`` for them, in ``.gitattributes`` or the git config,
   locked files: no ``annex.addunlocked``, not on an adjusted branch), with
   the backend it configures (``annex.backend`` attribute, then config,
   then git-annex's default SHA256E) when that is a plain hash backend
   (MD5, SHA1, SHA256, SHA512, with or without E);
2. :func:`register` turns (size, hash) into the key git-annex would make
   (``git annex examinekey --migrate-to-backend``: its own extension rules),
   moves each file into the annex under that key (``git annex setkey``,
   told not to verify: the bytes hashed are the bytes written) and stages
   the annex symlink into a scratch index (``git annex fromkey --batch``).

``git annex fsck`` checks the keys as for any annexed file.
"""

from __future__ import annotations

import json
import os

from ..runner import run
from .git import GitError, git, ls_files_stage
from .scratch import _config_env, _KeysDbOnScratch, annex_command, no_split_env

#: backend -> hashlib name; anything else goes through ``git annex add``
HASHES = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256",
          "SHA512": "sha512"}
DEFAULT_BACKEND = "SHA256E"
#: smaller files are not worth a key of their own (git annex add them)
MIN_SIZE = 1 << 20


def _attrs(root: str, paths: list[str]) -> dict:
    """path -> {attribute: value} for annex.backend and annex.largefiles."""
    out: dict = {p: {} for p in paths}
    if not paths:
        return out
    proc = git(root, "check-attr", "-z", "--stdin", "annex.backend",
               "annex.largefiles", input="\0".join(paths) + "\0")
    fields = proc.stdout.split("\0")
    for i in range(0, len(fields) - 2, 3):
        path, attr, value = fields[i:i + 3]
        if value not in ("unspecified", "unset") and path in out:
            out[path][attr] = value
    return out


def _config(root: str, key: str) -> str | None:
    proc = git(root, "config", "--get", key, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def plan_keys(root: str, sizes: dict) -> dict:
    """path -> (backend, hashlib name) for the files of `sizes` (path ->
    bytes) that may be annexed by a known key; the others are absent."""
    big = sorted(p for p, n in sizes.items() if n >= MIN_SIZE)
    if not big or not os.path.isdir(os.path.join(root, ".git", "annex")):
        return {}
    if (_config(root, "annex.addunlocked") or "false").lower() not in (
            "false", "no", "0", "off"):
        return {}
    head = git(root, "symbolic-ref", "-q", "HEAD", check=False).stdout
    if head.startswith("refs/heads/adjusted/"):
        return {}
    largefiles = _config(root, "annex.largefiles")
    backend = _config(root, "annex.backend") or DEFAULT_BACKEND
    out = {}
    for path, attrs in _attrs(root, big).items():
        rule = attrs.get("annex.largefiles", largefiles)
        if rule not in (None, "anything"):
            continue
        name = attrs.get("annex.backend", backend)
        algo = HASHES.get(name[:-1] if name.endswith("E") else name)
        if algo:
            out[path] = (name, algo)
    return out


def key_for(root: str, backend: str, size: int, digest: str,
            path: str) -> str:
    """The key git-annex gives a file of this size and hash at `path`."""
    plain = backend[:-1] if backend.endswith("E") else backend
    key = "%s-s%d--%s" % (plain, size, digest)
    if plain == backend:
        return key
    prefix, extra = annex_command()
    proc = run(list(prefix) + ["examinekey", key, "--migrate-to-backend",
                               backend, "--filename", path],
               cwd=root, env=dict(extra), check=True, error=GitError)
    return proc.stdout.strip() or key


def register(root: str, keys: dict, index: str) -> dict:
    """Annex each file of `keys` (path -> key) under its key and stage it
    into a scratch index holding only them; path -> (mode, sha)."""
    if not keys:
        return {}
    prefix, extra = annex_command()
    env = dict(extra, **no_split_env())
    # not read again: the key is the hash of the bytes written
    setkey_env = dict(env, **_config_env("annex.verify", "false"))
    for path, key in sorted(keys.items()):
        run(list(prefix) + ["setkey", key, path], cwd=root, env=setkey_env,
            check=True, error=GitError)
    if os.path.lexists(index):
        os.unlink(index)
    env["GIT_INDEX_FILE"] = index
    try:
        with _KeysDbOnScratch(root):
            proc = run(list(prefix) + ["fromkey", "--batch", "--json",
                                       "--json-error-messages"], cwd=root,
                       input="".join("%s %s\n" % (k, p)
                                     for p, k in sorted(keys.items())),
                       env=env, check=True, error=GitError)
        for line in proc.stdout.splitlines():
            rec = json.loads(line) if line.strip() else {}
            if rec.get("success") is False:
                raise GitError("git annex fromkey %s failed: %s" % (
                    rec.get("file"),
                    "; ".join(rec.get("error-messages") or [])))
        return ls_files_stage(root, sorted(keys), env=env)
    finally:
        if os.path.lexists(index):
            os.unlink(index)
