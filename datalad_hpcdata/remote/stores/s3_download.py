"""Downloads from S3: resumable, parallel for large objects, one pass.

* The first GET asks for the first range and learns the object's size,
  ETag and metadata from the reply (a small object: one request, no HEAD);
  every further GET names that version (``If-Match`` with its ETag), so
  the bytes cannot come from two versions.
* A partial file is continued from its length with ranged GETs (its bytes
  are hashed first); a connection that breaks while a body is read is
  retried from where it stopped, a bounded number of times.
* Objects larger than ``DOWNLOAD_CHUNK`` are fetched as ranges of that
  size, ``concurrency`` GETs at a time, and written **in order**, so the file
  is always a prefix of the object (what resuming relies on).  At most
  ``concurrency + 2`` chunks are in memory, whatever the object's size.
* Verification while the data streams, in a helper thread: a single-part
  object's MD5 must equal its ETag; a multipart object's part MD5s give the
  composite ETag, with the part size taken from our upload's metadata
  (``x-amz-meta-hpcdata-partsize``) or from the server (HEAD with
  ``partNumber`` 1 and N).  Without either (encrypted objects, servers
  without ``partNumber``) only the size is checked here; git-annex checks
  the key's hash in every case.

``s3`` is a :class:`.s3.S3` (``request``, ``head``, ``concurrency`` used).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Callable

from ..entries import ProgressFn
from ..errors import HpcdataError, VerificationError
from ..transfer import (
    MIB,
    Digester,
    PartsHasher,
    Tally,
    check_length,
    digester,
    discard,
    fill,
    hash_file,
    network_error,
    pump,
    raw_readinto,
    resume_offset,
)
from .s3_etags import METADATA_PARTSIZE, composite_form, plain_md5_etag

lgr = logging.getLogger("datalad.hpcdata.remote")

DOWNLOAD_CHUNK = 8 * MIB  # bytes per ranged GET of a large object
READ = 4 * MIB  # bytes per read of a single-GET body
ATTEMPTS = 5  # GETs per range before a broken connection is fatal
ENCRYPTED = ("aws:kms", "aws:kms:dsse")


class Interrupted(HpcdataError):
    """The connection broke while a body was read."""


class Check:
    """What the streamed bytes must hash to."""

    def __init__(self, hasher: Any, expected: str,
                 result: Callable[[Any], str], kind: str) -> None:
        self.hasher = hasher
        self.expected = expected
        self.result = result
        self.kind = kind

    def update(self, data: Any) -> None:
        self.hasher.update(data)

    def failure(self) -> str | None:
        got = self.result(self.hasher)
        if got == self.expected:
            return None
        return "the data's %s is %s, the object's ETag %s" % (
            self.kind, got, self.expected)


def download(s3: Any, bucket: str, key: str, path: str,
             progress: ProgressFn | None,
             head: dict[str, Any] | None = None) -> int:
    """Download object ``key`` into ``path`` (resuming), verified.

    Without ``head`` (from a HEAD the caller made), the first GET asks for
    the first range and tells the size and ETag: a small object costs one
    request.
    """
    what = "s3://%s/%s" % (bucket, key)
    fetch = Fetch(s3, bucket, key, None, what)
    have = os.path.getsize(path) if os.path.exists(path) else 0
    first = None
    if head is None:
        head, first = fetch.probe(have)
    size = head.get("ContentLength")
    fetch.etag = head.get("ETag")
    if first is not None and first.start != have:
        have = 0  # the server ignored the range: start over
    have = resume_offset(path, size) if have else 0
    check = verifier(s3, bucket, key, head)
    if have and check is not None:
        hash_file(check.hasher, path)  # the part already there
    elif not have:
        discard(path)
    tally = Tally(progress, have)
    with open(path, "ab") as out:
        if first is not None:
            have = _single(fetch, out, have, first.end, tally, check,
                           first.body)
        if size is None or have < size:
            receive = _single
            if (size is not None and size - have > DOWNLOAD_CHUNK
                    and s3.concurrency > 1):
                receive = _parallel
            have = receive(fetch, out, have, size, tally, check, None,
                           s3.concurrency)
    check_length(what, have, size)
    problem = check.failure() if check is not None else None
    if problem:
        discard(path)
        raise VerificationError("%s: checksum mismatch (%s); the data was "
                                "discarded" % (what, problem))
    return have


def verifier(s3: Any, bucket: str, key: str,
             head: dict[str, Any]) -> Check | None:
    """How to verify the object of ``head``, or None (size only)."""
    if (head.get("ServerSideEncryption") in ENCRYPTED
            or head.get("SSECustomerAlgorithm")):
        return None
    etag = head.get("ETag")
    md5 = plain_md5_etag(etag)
    if md5:
        return Check(hashlib.md5(), md5, lambda h: h.hexdigest(), "MD5")
    form = composite_form(etag)
    if form is None:
        return None
    part = part_size(s3, bucket, key, head, form[1])
    if part is None:
        lgr.debug("s3://%s/%s: part size unknown, size check only",
                  bucket, key)
        return None
    return Check(PartsHasher(part), form[0], lambda h: h.etag(),
                 "composite ETag")


def part_size(s3: Any, bucket: str, key: str, head: dict[str, Any],
              count: int) -> int | None:
    """The part size of a ``count``-part object whose parts are uniform."""
    size = head.get("ContentLength") or 0

    def fits(part: int) -> bool:
        return part > 0 and -(-size // part) == count

    meta = str((head.get("Metadata") or {}).get(METADATA_PARTSIZE, ""))
    if meta.isdigit() and fits(int(meta)):
        return int(meta)
    try:
        first = s3.head(bucket, key, PartNumber=1, IfMatch=head["ETag"])
        part = int(first.get("ContentLength") or 0)
        if (int(first.get("PartsCount") or 0) != count or not fits(part)):
            return None
        if count > 1:
            last = s3.head(bucket, key, PartNumber=count,
                           IfMatch=head["ETag"])
            if last.get("ContentLength") != size - (count - 1) * part:
                return None
    except HpcdataError:  # no partNumber support
        return None
    return part


class Opened:
    """A GET whose body (bytes ``start``..``end``) is still to be read."""

    def __init__(self, body: Any, start: int, end: int) -> None:
        self.body, self.start, self.end = body, start, end


class Fetch:
    """GETs of one object version."""

    def __init__(self, s3: Any, bucket: str, key: str, etag: str | None,
                 what: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.etag = etag
        self.what = what

    def open(self, start: int, end: int | None = None) -> Any:
        """The body of a GET of bytes ``start``..``end`` (exclusive)."""
        kwargs = {"Bucket": self.bucket, "Key": self.key}
        if start or end is not None:
            kwargs["Range"] = "bytes=%s-%s" % (
                start, "" if end is None else end - 1)
        if self.etag:
            kwargs["IfMatch"] = self.etag  # the version that was checked
        return self.s3.request(self.what, "get_object", **kwargs)["Body"]

    def probe(self, have: int) -> tuple[dict[str, Any], Opened | None]:
        """(what a HEAD would say, the open GET of the first range).

        The GET asks for ``DOWNLOAD_CHUNK`` bytes from ``have``; nothing
        there (416) is answered by a HEAD.
        """
        reply, _ = self.s3.attempt(
            self.what, "get_object", ("InvalidRange",), Bucket=self.bucket,
            Key=self.key, Range="bytes=%s-%s" % (
                have, have + DOWNLOAD_CHUNK - 1))
        if reply is None:
            return self.s3.head(self.bucket, self.key), None
        info = dict(reply)
        body = info.pop("Body")
        length = int(reply.get("ContentLength") or 0)
        first, _, total = str(reply.get("ContentRange") or "").partition(
            " ")[2].partition("/")
        if total.isdigit() and first.split("-")[0].isdigit():
            start = int(first.split("-")[0])
            info["ContentLength"] = int(total)
        else:  # the whole object
            start = 0
        return info, Opened(body, start, start + length)

    def readinto(self, body: Any) -> Callable[[Any], int]:
        """``readinto(view)`` for a GET's body; a broken connection raises
        ``Interrupted``."""
        source = raw_readinto(getattr(body, "_raw_stream", body))

        def readinto(view: Any) -> int:
            try:
                return source(view)
            except Exception as exc:
                if not network_error(exc):
                    raise
                raise Interrupted("%s: connection broken (%s)"
                                  % (self.what, type(exc).__name__))

        return readinto

    def range(self, start: int, end: int, buffer: bytearray) -> int:
        """Read bytes ``start``..``end`` of the object into ``buffer``
        (retrying a broken read); returns their number."""
        problem = ""
        view = memoryview(buffer)[:end - start]
        for attempt in range(ATTEMPTS):
            body = self.open(start, end)
            try:
                count = fill(self.readinto(body), view)
            except Interrupted as exc:
                problem = str(exc)
            else:
                if count == end - start:
                    return count
                problem = "%s: short read of bytes %s-%s" % (
                    self.what, start, end - 1)
            finally:
                body.close()
            time.sleep(min(2.0, 0.1 * 2 ** attempt))
        raise HpcdataError("%s (gave up after %s attempts)"
                           % (problem, ATTEMPTS))


def _single(fetch: Fetch, out: BinaryIO, have: int, end: int | None,
            tally: Tally, check: Check | None, body: Any = None,
            concurrency: int = 1) -> int:
    """Bytes ``have``..``end`` with one GET (``body``: one already open);
    a broken read continues with a Range from where it stopped."""
    update = check.update if check is not None else None
    amount = None if end is None else end - have
    problem = "connection closed early"
    done = [have]

    def counted(count: int) -> None:
        done[0] += count
        tally.add(count)

    with digester(update, 8, READ, amount) as hashing:
        try:
            for attempt in range(ATTEMPTS):
                if body is None:
                    body = fetch.open(done[0], end)
                broken = False
                try:
                    pump(fetch.readinto(body), out, hashing, counted)
                except Interrupted as exc:
                    problem, broken = str(exc), True
                finally:
                    body.close()
                    body = None
                if (end is None and not broken) or (
                        end is not None and done[0] >= end):
                    return done[0]
                time.sleep(min(2.0, 0.1 * 2 ** attempt))
        finally:
            hashing.finish()
    raise HpcdataError("%s (gave up after %s attempts)" % (problem, ATTEMPTS))


def _parallel(fetch: Fetch, out: BinaryIO, have: int, size: int,
              tally: Tally, check: Check | None, body: Any,
              concurrency: int) -> int:
    """Ranged GETs, ``concurrency`` at a time, written in order."""
    update = check.update if check is not None else None
    ranges = [(start, min(start + DOWNLOAD_CHUNK, size))
              for start in range(have, size, DOWNLOAD_CHUNK)]
    pending: deque[Any] = deque()
    # a real Digester even without a check: its buffers bound the memory
    with Digester(update or (lambda data: None), concurrency + 2,
                  DOWNLOAD_CHUNK) as hashing, \
            ThreadPoolExecutor(concurrency,
                               thread_name_prefix="hpcdata-get") as ex:
        try:
            index = 0
            while True:
                # a buffer per range in flight, taken in range order
                while index < len(ranges):
                    buffer = hashing.take(blocking=not pending)
                    if buffer is None:
                        break
                    pending.append((buffer, ex.submit(
                        fetch.range, *ranges[index], buffer)))
                    index += 1
                if not pending:
                    break
                buffer, future = pending.popleft()
                count = future.result()
                out.write(memoryview(buffer)[:count])
                hashing.submit(buffer, count)
                have += count
                tally.add(count)
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise
        finally:
            hashing.finish()
    return have
