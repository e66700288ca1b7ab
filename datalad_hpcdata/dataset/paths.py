"""Canonical dataset-relative POSIX paths, globs and overlap tests.

Every path a user gives (relative to the current directory, absolute, with
``./``, ``..``, trailing ``/`` or through a symlinked directory) is turned into
one canonical spelling before it is compared with anything: the POSIX path of
the real location relative to the real dataset root.  The last component is
never resolved, because it may be an annex symlink whose target is an object
file, not "the" output.
"""

from __future__ import annotations

import glob
import os
import posixpath
from pathlib import Path

GLOB_CHARS = frozenset("*?[")


class PathError(ValueError):
    """A path that cannot be used (outside the dataset, inside .git, ...)."""


def has_glob(path: str) -> bool:
    return any(c in path for c in GLOB_CHARS)


def inside(path: str, root: str) -> bool:
    """Is the real location of `path` the (real) `root` or below it?"""
    return within(os.path.realpath(path), root)


def within(path: str, root: str) -> bool:
    """Is the absolute `path` the `root` or below it, lexically?

    Nothing is resolved: where symlinks matter both must already be real
    paths (:func:`inside` resolves `path` first).
    """
    rel = os.path.relpath(path, root)
    return not (rel == os.pardir or rel.startswith(os.pardir + os.sep))


def _real_location(path: str) -> str:
    """Absolute path with every directory component resolved, the last kept."""
    path = os.path.abspath(path)
    head, tail = os.path.split(path.rstrip(os.sep) or os.sep)
    if tail in ("", ".", ".."):
        return os.path.realpath(path)
    return os.path.join(os.path.realpath(head), tail)


def _relative(path: str, root: str, pwd: str, directory=False) -> str:
    """Dataset-relative POSIX form of `path`; "" for the root itself.

    With `directory` the last component is resolved too (it is a directory
    whose contents a glob matches)."""
    if not path or not str(path).strip():
        raise PathError("empty path")
    path = str(path)
    full = path if os.path.isabs(path) else os.path.join(pwd, path)
    real = os.path.realpath(full) if directory else _real_location(full)
    rel = os.path.relpath(real, root)
    if rel == os.curdir:
        return ""
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        raise PathError("%r is outside the dataset %s" % (path, root))
    rel = Path(rel).as_posix()
    if rel == ".git" or rel.startswith(".git/"):
        raise PathError("%r is inside the dataset's .git directory" % path)
    return rel


def canonical(path: str, root: str, pwd: str) -> str:
    """Return `path` as canonical dataset-relative POSIX path.

    `root` must already be a real path.  `pwd` is the directory relative
    paths are interpreted against.  Raises PathError for paths outside the
    dataset, the dataset root itself and anything inside ``.git``.
    """
    rel = _relative(path, root, pwd)
    if not rel:
        raise PathError(
            "%r is the whole dataset; name the files or directories the job "
            "writes instead" % path)
    return rel


def glob_base(pattern: str) -> str:
    """The literal directory part of a canonical glob pattern.

    A glob output claims everything below the deepest directory that has no
    wildcard: ``res/run*/x.txt`` claims ``res``.
    """
    parts = pattern.split("/")
    literal = []
    for part in parts:
        if has_glob(part):
            break
        literal.append(part)
    if len(literal) == len(parts):
        return pattern
    return "/".join(literal)


def canonical_spec(spec: str, root: str, pwd: str) -> str:
    """Canonicalise a path that may contain glob characters.

    The literal leading part is canonicalised (so symlinks and ``..`` are
    resolved there), the wildcard part is normalised lexically.  Glob
    characters in `pwd` or in the dataset's own path are literal.
    """
    if not has_glob(spec):
        return canonical(spec, root, pwd)
    top, rel = pwd, spec
    if os.path.isabs(spec):
        top, rel = "/", spec
        for lit in (pwd, root):
            lit = lit.rstrip("/")
            if spec.startswith(lit + "/"):
                top, rel = lit, spec[len(lit) + 1:]
                break
    if not has_glob(rel):
        return canonical(os.path.join(top, rel), root, pwd)
    parts = Path(rel).as_posix().split("/")
    idx = next(i for i, p in enumerate(parts) if has_glob(p))
    base = _relative(os.path.join(top, *parts[:idx]), root, pwd,
                     directory=True)
    rest = "/".join(p for p in parts[idx:] if p not in ("", "."))
    if ".." in rest.split("/"):
        raise PathError("%r: '..' after a wildcard is not supported" % spec)
    return base + "/" + rest if base else rest


def claim_path(spec: str) -> str:
    """The path a canonical output spec claims in the job store."""
    base = glob_base(spec) if has_glob(spec) else spec
    if not base:
        raise PathError(
            "output glob %r has no literal directory and would claim the "
            "whole dataset" % spec)
    return base


def overlaps(a: str, b: str) -> bool:
    """True if one canonical path equals or contains the other."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def contains(outer: str, path: str) -> bool:
    """True if the canonical `path` equals `outer` or lies below it."""
    return path == outer or path.startswith(outer + "/")


def ancestors(path: str) -> list[str]:
    """``a/b/c`` -> ``['a', 'a/b']``"""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def relative_to_pwd(rel: str, rel_pwd: str) -> str:
    """A canonical dataset path relative to the dataset-relative pwd."""
    if rel_pwd in ("", "."):
        return rel
    return posixpath.relpath(rel, rel_pwd)


def expand(spec: str, root: str) -> list[str]:
    """Existing canonical paths matching a canonical spec (sorted)."""
    if not has_glob(spec):
        return [spec] if os.path.lexists(os.path.join(root, spec)) else []
    hits = glob.glob(os.path.join(glob.escape(root), spec), recursive=True)
    return sorted(Path(os.path.relpath(h, root)).as_posix() for h in hits)


def walk_files(rel: str, root: str) -> list[str]:
    """All files (and symlinks) at or below a canonical path, never
    descending into nested repositories (subdatasets)."""
    full = os.path.join(root, rel)
    if os.path.islink(full) or not os.path.isdir(full):
        return [rel] if os.path.lexists(full) else []
    found = []
    for dirpath, dirnames, filenames in os.walk(full):
        if dirpath != full and os.path.lexists(os.path.join(dirpath, ".git")):
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            found.append(Path(os.path.relpath(os.path.join(dirpath, name),
                                              root)).as_posix())
        # symlinked directories are listed as dirnames; record them as links
        for name in list(dirnames):
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                found.append(Path(os.path.relpath(p, root)).as_posix())
                dirnames.remove(name)
    return sorted(found)
