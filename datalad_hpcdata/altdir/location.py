"""The staging root of ``--alt-dir``: validated, created, probed.

The staging area must be a dedicated directory apart from the dataset:
never ``/``, the dataset or anything inside it, the dataset's parent or any
other ancestor of it.
"""

from __future__ import annotations

import os
import tempfile

from ..dataset.paths import within
from .files import TMP_PREFIX, StagingError


def check_alt_dir(alt_dir: str, ds_root: str) -> str:
    """Validate and create the staging root; return its real absolute path.

    Refused (StagingError, nothing created): ``/``, the dataset itself or
    anything inside it, the dataset's parent directory or any other ancestor
    of the dataset, a directory that cannot be created or written to.
    """
    if not alt_dir or not str(alt_dir).strip():
        raise StagingError("--alt-dir: empty path")
    ds = os.path.realpath(ds_root)
    alt = os.path.realpath(os.path.abspath(os.path.expanduser(str(alt_dir))))
    _refuse_location(alt_dir, alt, ds)

    created = []
    missing = []
    probe = alt
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    try:
        for d in reversed(missing):
            os.mkdir(d)
            created.append(d)
    except OSError as e:
        _undo_mkdirs(created)
        raise StagingError("--alt-dir %s cannot be created: %s"
                           % (alt_dir, e.strerror or e)) from e
    try:
        if not os.path.isdir(alt):
            raise StagingError("--alt-dir %s is not a directory" % alt_dir)
        # re-check: a symlink may have been swapped in meanwhile
        _refuse_location(alt_dir, os.path.realpath(alt), ds)
        try:
            fd, name = tempfile.mkstemp(prefix=TMP_PREFIX + "probe-",
                                        dir=alt)
            os.close(fd)
            os.unlink(name)
        except OSError as e:
            raise StagingError("--alt-dir %s is not writable: %s"
                               % (alt_dir, e.strerror or e)) from e
    except StagingError:
        _undo_mkdirs(created)
        raise
    return os.path.realpath(alt)


def _refuse_location(given: str, alt: str, ds: str) -> None:
    """StagingError if the real path `alt` may not hold the staging area
    of the dataset at the real path `ds`."""
    if alt == os.sep:
        raise StagingError("--alt-dir %s is the file system root" % given)
    if within(alt, ds):
        raise StagingError(
            "--alt-dir %s is inside the dataset %s; it must be outside"
            % (given, ds))
    if alt == os.path.dirname(ds):
        raise StagingError(
            "--alt-dir %s is the dataset's parent directory; use a dedicated "
            "directory" % given)
    if within(ds, alt):
        raise StagingError(
            "--alt-dir %s contains the dataset %s; use a directory outside "
            "of it" % (given, ds))


def _undo_mkdirs(created: list[str]) -> None:
    """Remove the directories made, deepest first, as far as possible."""
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            pass
