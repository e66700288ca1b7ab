"""Removing a job's staged files from the staging area.

Paths other open jobs still use are left alone, and directories that became
empty are pruned -- never the staging root itself or anything above it.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Iterable

from ..dataset.paths import ancestors, claim_path, contains, expand, overlaps
from .files import (
    StagingError,
    check_spec,
    checked_specs,
    local_path,
    retry_writable,
    staged_path,
)

lgr = logging.getLogger("datalad.hpcdata.altdir")


def cleanup(alt_root: str, rel_paths: Iterable[str],
            keep: Iterable[str] = ()) -> list:
    """Remove the staged copies of `rel_paths` (files, directory trees,
    output glob specs) and prune directories that became empty, up to but
    never including `alt_root`.

    `keep`: paths (inputs, outputs, logs) of other open jobs using the same
    staging root.  Nothing equal to or below a kept path is removed, and no
    directory that is, contains or lies below a kept path is pruned.
    Returns the removed dataset-relative paths (files and directories).
    """
    alt = os.path.realpath(alt_root)
    specs = checked_specs(rel_paths, alt)
    keep_bases = [claim_path(check_spec(k)) for k in keep]
    removed = []
    tops = []
    for spec in dict.fromkeys(specs):
        for rel in expand(spec, alt):
            try:
                path = staged_path(alt, rel)
            except StagingError:
                continue
            _remove_except(path, rel, keep_bases, removed)
            tops.append(rel)
    # prune empty parents, deepest first
    parents = {d for rel in tops for d in ancestors(rel)}
    for d in sorted(parents, key=lambda p: -p.count("/")):
        if any(overlaps(d, k) for k in keep_bases):
            continue
        p = local_path(alt, d)
        if os.path.islink(p) or not os.path.isdir(p):
            continue
        try:
            os.rmdir(p)
            removed.append(d)
        except OSError:
            pass
    return sorted(set(removed))


def _remove_except(path: str, rel: str, keep: list[str],
                   removed: list[str]) -> bool:
    """Remove path (recursively) except kept paths; True if it is gone."""
    if any(contains(k, rel) for k in keep):
        return False
    if not os.path.lexists(path):
        return True
    if os.path.isdir(path) and not os.path.islink(path):
        all_gone = True
        for name in sorted(os.listdir(path)):
            if not _remove_except(os.path.join(path, name), rel + "/" + name,
                                  keep, removed):
                all_gone = False
        if not all_gone or any(overlaps(rel, k) for k in keep):
            return False
        try:
            retry_writable(os.rmdir, path)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                lgr.warning("could not remove staged %s: %s", path, e)
            return False
    else:
        try:
            retry_writable(os.unlink, path)
        except OSError as e:
            lgr.warning("could not remove staged %s: %s", path, e)
            return False
    removed.append(rel)
    return True
