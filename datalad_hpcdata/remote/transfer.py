"""Pieces every transfer shares, whatever the service.

Published checksums (``"md5:abc"`` -> ``("md5", "abc")``) and the hashlib
objects that check them, hashing local files, the offset a resumed download
continues from, copying chunks with cumulative progress, the length check
after a download and emptying a file whose content failed verification (so
that a later attempt does not resume from corrupt bytes).
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Iterable

from .entries import Checksum, ProgressFn
from .errors import HpcdataError

HASH_CHUNK = 1 << 20  # read size when hashing a local file


def checksum_hasher(algorithm: str | None) -> hashlib._Hash | None:
    """hashlib object for a published checksum algorithm name, or None."""
    name = (algorithm or "").lower().replace("-", "")
    if name in ("md5", "sha1", "sha256", "sha512"):
        return hashlib.new(name)
    return None


def parse_checksum(value: object) -> Checksum | None:
    """``"md5:abc"`` or ``"abc"`` (32 hex digits) -> ("md5", "abc")."""
    if not value:
        return None
    value = str(value).strip()
    if ":" in value:
        algo, _, digest = value.partition(":")
        return algo.lower(), digest.lower()
    if len(value) == 32:
        return "md5", value.lower()
    return None


def hash_file(hasher: hashlib._Hash, path: str) -> hashlib._Hash:
    """Feed the content of ``path`` into ``hasher``; return ``hasher``."""
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            hasher.update(chunk)
    return hasher


def file_md5(path: str) -> str:
    """MD5 hex digest of the file at ``path``."""
    return hash_file(hashlib.md5(), path).hexdigest()


def discard(path: str) -> None:
    """Empty ``path`` (content that failed verification must not stay)."""
    with open(path, "wb"):
        pass


def resume_offset(path: str, size: int | None) -> int:
    """Bytes already in ``path`` that a download of ``size`` bytes keeps.

    0 when there is no file yet, or when it is longer than the object (then
    it cannot be a prefix of it and is overwritten).
    """
    have = os.path.getsize(path) if os.path.exists(path) else 0
    if size is not None and have > size:
        return 0
    return have


def copy_chunks(chunks: Iterable[bytes], write: Callable[[bytes], object],
                done: int, progress: ProgressFn | None) -> int:
    """``write`` every chunk, reporting the cumulative count to ``progress``.

    ``done`` is the count before the first chunk; returns the count after
    the last one.
    """
    for chunk in chunks:
        write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done)
    return done


def check_length(what: str, have: int, size: int | None) -> None:
    """Fail when fewer (or more) than ``size`` bytes arrived."""
    if size is not None and have != size:
        raise HpcdataError(
            "%s: transfer truncated: received %s of %s bytes"
            % (what, have, size))
