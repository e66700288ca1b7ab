"""Pieces every transfer shares, whatever the service.

Published checksums (``"md5:abc"`` -> ``("md5", "abc")``) and the hashlib
objects that check them, hashing local files, the offset a resumed download
continues from, copying chunks with cumulative progress, the length check
after a download and emptying a file whose content failed verification (so
that a later attempt does not resume from corrupt bytes).

For transfers that verify while they stream: ``Tally`` (a byte count many
threads add to, reported cumulatively and monotonically), ``PartsHasher``
(the per-part MD5s of an S3 multipart object and its composite ETag) and
``Digester`` (hashes in a helper thread while the caller receives and
writes, with a bounded number of chunks in flight).
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
from typing import Any, Callable, Iterable

from .entries import Checksum, ProgressFn
from .errors import ConfigError, HpcdataError

HASH_CHUNK = 1 << 20  # read size when hashing a local file
MIB = 1 << 20
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


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


def parse_size(text: str, what: str) -> int:
    """``"16MiB"``, ``"16M"``, ``"16777216"`` -> bytes (powers of 1024)."""
    match = _SIZE.match(text or "")
    if not match:
        raise ConfigError("%s must be a size such as 16MiB, not %r"
                          % (what, text))
    unit = "bkmgt".index((match.group(2) or "b").lower())
    return int(match.group(1)) * 1024 ** unit


class Tally:
    """A byte count that any thread may add to.

    ``progress`` (cumulative) is called under a lock with a count that never
    decreases, although ``add`` may get negative numbers (a part sent again).
    """

    def __init__(self, progress: ProgressFn | None, start: int = 0) -> None:
        self.progress = progress
        self.total = start
        self.reported = -1
        self._lock = threading.Lock()
        self.add(0)

    def add(self, count: int) -> None:
        with self._lock:
            self.total += count
            if self.progress is not None and self.total > self.reported:
                self.reported = self.total
                self.progress(self.total)


def composite_etag(digests: list[bytes]) -> str:
    """S3's ETag of a multipart object from its parts' binary MD5s."""
    return "%s-%d" % (hashlib.md5(b"".join(digests)).hexdigest(),
                      len(digests))


class PartsHasher:
    """MD5 of every ``part_size`` piece of a stream that arrives in order."""

    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self.digests: list[bytes] = []
        self._current = hashlib.md5()
        self._filled = 0

    def update(self, data: Any) -> None:
        view = memoryview(data)
        while len(view):
            take = min(len(view), self.part_size - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.part_size:
                self.digests.append(self._current.digest())
                self._current = hashlib.md5()
                self._filled = 0

    def etag(self) -> str:
        """The composite ETag of everything fed so far."""
        digests = list(self.digests)
        if self._filled:
            digests.append(self._current.digest())
        return composite_etag(digests)


class Digester:
    """Hash data in a helper thread while the caller fetches and writes it.

    The data travels in at most ``slots`` reused buffers of ``size`` bytes
    (made when first needed), so memory stays at ``slots * size`` whatever
    the file size and nothing is allocated per chunk.  ``take()`` waits for
    a free buffer, ``submit(buffer, n)`` queues its first ``n`` bytes for
    ``update`` (the buffer is free again once they are hashed),
    ``give_back(buffer)`` frees a buffer that got no data.  hashlib drops
    the GIL, so hashing runs beside the network and the disk.
    ``finish()`` waits for the queue and re-raises a hashing error.
    """

    def __init__(self, update: Callable[[Any], object], slots: int,
                 size: int) -> None:
        self._update = update
        self._slots = max(1, slots)
        self._size = size
        self._made = 0
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="hpcdata-hash")
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            buffer, count = item
            try:
                if self._error is None:
                    with memoryview(buffer) as view:
                        self._update(view[:count])
            except BaseException as exc:  # reported by finish()
                self._error = exc
            finally:
                self._free.put(buffer)

    def take(self, blocking: bool = True) -> bytearray | None:
        """A free buffer (None if ``blocking`` is false and there is none)."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        if self._made < self._slots:
            self._made += 1
            return bytearray(self._size)
        if not blocking:
            return None
        return self._free.get()

    def give_back(self, buffer: bytearray) -> None:
        self._free.put(buffer)

    def submit(self, buffer: bytearray, count: int) -> None:
        self._queue.put((buffer, count))

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Digester:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class InlineDigester(Digester):
    """A ``Digester`` with one buffer that hashes at once, in the caller's
    thread (for data too small to be worth a thread)."""

    def __init__(self, update: Callable[[Any], object],
                 size: int) -> None:
        self._update = update
        self._buffer = bytearray(size)

    def take(self, blocking: bool = True) -> bytearray | None:
        return self._buffer

    def give_back(self, buffer: bytearray) -> None:
        pass

    def submit(self, buffer: bytearray, count: int) -> None:
        with memoryview(buffer) as view:
            self._update(view[:count])

    def finish(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        pass


def digester(update: Callable[[Any], object] | None, slots: int, size: int,
             amount: int | None) -> Digester:
    """A ``Digester`` for ``amount`` bytes (None: unknown) of data, read in
    pieces of at most ``size`` bytes."""
    if amount is not None and amount <= size:
        return InlineDigester(update or (lambda data: None),
                              max(1, amount))
    return Digester(update or (lambda data: None), slots, size)


def fill(readinto: Callable[[Any], int], view: Any) -> int:
    """``readinto`` until ``view`` is full or the data ends; bytes read."""
    done = 0
    while done < len(view):
        count = readinto(view[done:])
        if not count:
            break
        done += count
    return done


def pump(readinto: Callable[[Any], int], out: Any, hashing: Digester,
         counted: Callable[[int], object]) -> int:
    """Copy a body into ``out`` through ``hashing``'s buffers.

    Every piece is written, then hashed (in order), then ``counted(n)``;
    returns the bytes copied.  An exception from ``readinto`` (a broken
    connection) leaves everything before it written and hashed.
    """
    done = 0
    while True:
        buffer = hashing.take()
        try:
            count = readinto(memoryview(buffer))
        except BaseException:
            hashing.give_back(buffer)
            raise
        if not count:
            hashing.give_back(buffer)
            return done
        try:
            out.write(memoryview(buffer)[:count])
        except BaseException:
            hashing.give_back(buffer)
            raise
        hashing.submit(buffer, count)
        done += count
        counted(count)


def raw_readinto(raw: Any) -> Callable[[Any], int]:
    """``readinto(view)`` -> bytes of a response body read into ``view``.

    ``raw`` is a urllib3 response (read straight from the http.client
    response underneath: one copy, big reads; the caller makes sure the
    body is not content-encoded), an http.client response or anything with
    ``read(n)``.
    """
    import http.client

    for source in (getattr(raw, "_fp", None), raw):
        if isinstance(source, http.client.HTTPResponse):
            return source.readinto
    if hasattr(raw, "readinto"):
        return raw.readinto

    def readinto(view: Any) -> int:
        data = raw.read(len(view))
        view[:len(data)] = data
        return len(data)

    return readinto


def network_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection broke while a body was read
    (socket and http.client errors, urllib3's and botocore's wrappers)."""
    import http.client

    if isinstance(exc, (OSError, http.client.HTTPException)):
        return True
    return type(exc).__module__.split(".")[0] in ("urllib3", "botocore")
