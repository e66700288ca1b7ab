"""Uploads to S3: one verified PUT, or a verified, resumable multipart upload.

* A file of at most ``partsize`` bytes is sent with one PUT carrying the MD5
  of its bytes (``Content-MD5``, checked by the server before it stores
  anything).
* A larger file is a multipart upload of ``partsize`` parts (larger when a
  file would need more than 10,000), ``concurrency`` at a time.  Each part is
  read once into a buffer its thread reuses (so memory stays at
  ``concurrency`` parts, nothing is allocated per part), its MD5
  computed and sent as ``Content-MD5``; the part MD5s give the composite
  ETag, which must equal the one the server reports for the completed
  object.  The file is never read a second time to verify.
* Interruptions.  Any failure -- an error, SIGINT/SIGTERM/SIGHUP (turned
  into an exception by ``main.py``), a broken pipe to git-annex -- aborts
  the upload once the parts in flight have ended (AbortMultipartUpload), so
  no parts are left in the bucket.  A process that is killed outright
  cannot do that; the next store of the same key lists the object's
  unfinished uploads (ListMultipartUploads), resumes the newest one, keeping
  the parts whose size and MD5 match the local file, and aborts the others.

``s3`` is a :class:`.s3.S3` (its ``client``, ``request``, ``attempt``,
``partsize`` and ``concurrency`` are used).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..entries import ProgressFn
from ..errors import HpcdataError, VerificationError
from ..transfer import Tally, composite_etag
from .s3_etags import (
    MAX_PARTS,
    METADATA_PARTSIZE,
    composite_form,
    part_size_for,
    plain_md5_etag,
)

lgr = logging.getLogger("datalad.hpcdata.remote")

MAX_LISTING_PAGES = 20  # bound on ListMultipartUploads pages per store
ENCRYPTED = ("aws:kms", "aws:kms:dsse")  # ETag is no MD5 then


class Cancelled(HpcdataError):
    """A part was not sent because the upload is being abandoned."""


def upload(s3: Any, path: str, bucket: str, name: str,
           progress: ProgressFn | None) -> None:
    """Store the file at ``path`` as object ``name``, verified."""
    size = os.path.getsize(path)
    tally = Tally(progress)
    if size <= s3.partsize:
        put(s3, path, bucket, name, size, tally)
    else:
        Multipart(s3, path, bucket, name, size, tally).run()


def _md5_header(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _etag_is_md5(reply: dict[str, Any]) -> bool:
    """Whether the ETag of a PUT reply is meant to be the content MD5."""
    return (reply.get("ServerSideEncryption") not in ENCRYPTED
            and not reply.get("SSECustomerAlgorithm"))


def put(s3: Any, path: str, bucket: str, name: str, size: int,
        tally: Tally) -> None:
    """One PUT of the whole file with its MD5."""
    what = "upload to s3://%s/%s" % (bucket, name)
    with open(path, "rb") as handle:
        data = handle.read(size + 1)
    if len(data) != size:
        raise HpcdataError("%s: the file changed while it was read" % what)
    digest = hashlib.md5(data)
    reply = s3.request(what, "put_object", Bucket=bucket, Key=name,
                       Body=data, ContentMD5=_md5_header(digest.digest()))
    etag = plain_md5_etag(reply.get("ETag"))
    if etag and _etag_is_md5(reply) and etag != digest.hexdigest():
        raise VerificationError(
            "%s: the stored object's MD5 (ETag) differs from the local "
            "file" % what)
    tally.add(size)


def _pread_into(fd: int, buffer: bytearray, offset: int) -> None:
    """Fill ``buffer`` with the bytes at ``offset`` of ``fd``."""
    view = memoryview(buffer)
    done = 0
    while done < len(buffer):
        count = os.preadv(fd, [view[done:]], offset + done)
        if not count:
            raise HpcdataError("the file became shorter while it was read")
        done += count


class Multipart:
    """One multipart upload of a file, from start (or resume) to verified."""

    def __init__(self, s3: Any, path: str, bucket: str, name: str,
                 size: int, tally: Tally) -> None:
        self.s3 = s3
        self.path = path
        self.bucket = bucket
        self.name = name
        self.size = size
        self.tally = tally
        self.part = part_size_for(size, s3.partsize)
        self.count = -(-size // self.part)
        if self.count > MAX_PARTS:
            raise HpcdataError("file too large for one S3 object")
        self.what = "upload to s3://%s/%s" % (bucket, name)
        self.cancel = threading.Event()
        self._buffers = threading.local()  # one reused buffer per thread

    def length(self, number: int) -> int:
        return min(self.part, self.size - (number - 1) * self.part)

    def run(self) -> None:
        upload_id, listed = self._start()
        try:
            parts = self._send(upload_id, listed)
            self._complete(upload_id, parts)
        except BaseException:
            self._abort(upload_id)
            raise

    # -- start or resume --------------------------------------------------
    def _start(self) -> tuple[str, dict[int, str]]:
        """(upload id, {part number: ETag} already uploaded)."""
        upload_id, listed = None, {}
        for pending in self._pending():
            if upload_id is None:
                found = self._reusable_parts(pending)
                if found is not None:
                    upload_id, listed = pending, found
                    lgr.debug("%s: resuming upload %s (%s of %s parts "
                              "there)", self.what, pending, len(found),
                              self.count)
                    continue
            self._abort(pending)
        if upload_id is None:
            reply = self.s3.request(
                self.what, "create_multipart_upload", Bucket=self.bucket,
                Key=self.name, Metadata={METADATA_PARTSIZE: str(self.part)})
            upload_id = reply["UploadId"]
        return upload_id, listed

    def _pending(self) -> list[str]:
        """Ids of unfinished uploads of this object, newest first."""
        found: list[tuple[Any, str]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket,
                                  "Prefix": self.name}
        for _ in range(MAX_LISTING_PAGES):
            reply, code = self.s3.attempt(
                self.what, "list_multipart_uploads",
                ("AccessDenied", "NotImplemented"), **kwargs)
            if reply is None:
                lgr.debug("%s: cannot list unfinished uploads (%s)",
                          self.what, code)
                return []
            found.extend((item.get("Initiated") or 0, item["UploadId"])
                         for item in reply.get("Uploads") or []
                         if item.get("Key") == self.name)
            if not reply.get("IsTruncated"):
                break
            kwargs.update(KeyMarker=reply.get("NextKeyMarker"),
                          UploadIdMarker=reply.get("NextUploadIdMarker"))
        found.sort(key=lambda item: str(item[0]), reverse=True)
        return [upload_id for _, upload_id in found]

    def _reusable_parts(self, upload_id: str) -> dict[int, str] | None:
        """Parts of ``upload_id`` that fit this file, None if it does not."""
        parts: dict[int, str] = {}
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.name,
                                  "UploadId": upload_id}
        for _ in range(self.count // 1000 + 2):
            reply, code = self.s3.attempt(self.what, "list_parts",
                                          ("NoSuchUpload",), **kwargs)
            if reply is None:
                return None
            for item in reply.get("Parts") or []:
                number = int(item["PartNumber"])
                if (number > self.count
                        or int(item["Size"]) != self.length(number)):
                    return None  # another part size: start afresh
                parts[number] = item["ETag"]
            if not reply.get("IsTruncated"):
                return parts
            kwargs["PartNumberMarker"] = reply.get("NextPartNumberMarker")
        return None

    # -- parts ------------------------------------------------------------
    def _send(self, upload_id: str,
              listed: dict[int, str]) -> list[tuple[str, bytes]]:
        """Upload every part not yet there; [(ETag, MD5)] in part order."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            with ThreadPoolExecutor(self.s3.concurrency,
                                    thread_name_prefix="hpcdata-part") as ex:
                futures = [ex.submit(self._part, fd, upload_id, number,
                                     listed.get(number))
                           for number in range(1, self.count + 1)]
                try:
                    return [future.result() for future in futures]
                except BaseException:
                    # no new parts; leaving the block waits for those
                    # in flight, so the abort that follows is final
                    self.cancel.set()
                    for future in futures:
                        future.cancel()
                    raise
        finally:
            os.close(fd)

    def _part(self, fd: int, upload_id: str, number: int,
              listed: str | None) -> tuple[str, bytes]:
        if self.cancel.is_set():
            raise Cancelled("upload abandoned")
        length = self.length(number)
        data = getattr(self._buffers, "data", None)
        if data is None or len(data) != length:
            data = self._buffers.data = bytearray(length)
        _pread_into(fd, data, (number - 1) * self.part)
        digest = hashlib.md5(data).digest()
        if listed is not None and plain_md5_etag(listed) == digest.hex():
            self.tally.add(length)  # there from an interrupted attempt
            return listed, digest
        what = "%s (part %s of %s)" % (self.what, number, self.count)
        reply = self.s3.request(
            what, "upload_part", Bucket=self.bucket, Key=self.name,
            UploadId=upload_id, PartNumber=number, Body=data,
            ContentMD5=_md5_header(digest))
        etag = reply.get("ETag") or ""
        plain = plain_md5_etag(etag)
        if plain and _etag_is_md5(reply) and plain != digest.hex():
            raise VerificationError(
                "%s: the server's MD5 of the part differs from the local "
                "data" % what)
        self.tally.add(length)
        return etag, digest

    # -- end ----------------------------------------------------------------
    def _complete(self, upload_id: str,
                  parts: list[tuple[str, bytes]]) -> None:
        expected = composite_etag([digest for _, digest in parts])
        reply, code = self.s3.attempt(
            self.what, "complete_multipart_upload", ("NoSuchUpload",),
            Bucket=self.bucket, Key=self.name, UploadId=upload_id,
            MultipartUpload={"Parts": [
                {"PartNumber": number, "ETag": etag}
                for number, (etag, _) in enumerate(parts, 1)]})
        if reply is None:
            # Completed meanwhile by another process storing the same key
            # (same key, same content); accept only the very same object.
            reply = self.s3.head(self.bucket, self.name)
            form = composite_form(reply.get("ETag"))
            if form is None or form[0] != expected:
                raise HpcdataError("%s: the upload vanished (%s)"
                                   % (self.what, code))
        form = composite_form(reply.get("ETag"))
        if form is not None and form[0] != expected:
            self.s3.delete(self.bucket, self.name)
            raise VerificationError(
                "%s: the stored object's ETag %s is not the %s computed "
                "from the local file; the object was deleted"
                % (self.what, form[0], expected))
        if form is None:  # no composite ETag (encryption): check the size
            head = self.s3.head(self.bucket, self.name)
            if head.get("ContentLength") != self.size:
                raise VerificationError(
                    "%s: stored object has %s bytes, local file %s"
                    % (self.what, head.get("ContentLength"), self.size))

    def _abort(self, upload_id: str) -> None:
        """Remove the upload's parts (best effort, never raises)."""
        try:
            self.s3.attempt(self.what, "abort_multipart_upload",
                            ("NoSuchUpload",), Bucket=self.bucket,
                            Key=self.name, UploadId=upload_id)
        except Exception as exc:
            lgr.warning("%s: could not abort multipart upload %s: %s",
                        self.what, upload_id, exc)
