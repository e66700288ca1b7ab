"""S3 (and S3-compatible) objects: a key store and ``s3://BUCKET/KEY`` URLs.

Store layout: object ``{prefix}{annex key}`` in ``bucket``.  Uploads go
straight to the final name: a single PUT and a completed multipart upload
are both atomic in S3 (the object is invisible until complete), so no
half-written object is ever visible.  Files above ``MULTIPART_THRESHOLD``
are uploaded in parts.

Verification: after an upload the object's size (and, for single-part
objects, its ETag = MD5) is compared with the local file; downloads are
checked against the size and, when the ETag is a plain MD5 (single-part,
no SSE-KMS), against that MD5.  Multipart ETags (``...-N``) are not content
hashes; those downloads are verified by size here and by the key's hash in
git-annex.

Credentials, first match wins: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
in the environment; git-annex's local credential store (filled by
``initremote``/``enableremote`` from those variables); the AWS profile named
by ``profile=`` or the default boto3 chain (``~/.aws``).  Never the
git-annex branch.  (The first two are looked up in ``remote/config.py``.)

boto3 is imported only when an ``S3`` client is made.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator
from urllib.parse import quote, unquote

from ..entries import Entry, ProgressFn
from ..errors import (
    ConfigError,
    HpcdataError,
    NotFound,
    VerificationError,
    translated_call,
)
from ..transfer import (
    check_length,
    copy_chunks,
    discard,
    file_md5,
    resume_offset,
)

MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
CHUNK = 1 << 16


def _boto() -> tuple[Any, Any, Any, Any]:
    try:
        import boto3
        import botocore
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config
    except ImportError:
        raise ConfigError(
            "S3 support needs boto3: pip install 'datalad-hpcdata[s3]'")
    return boto3, botocore, TransferConfig, Config


def parse_s3(url: str) -> tuple[str, str] | None:
    """``s3://bucket/key`` -> (bucket, key); None if not this scheme."""
    if not url.lower().startswith("s3://"):
        return None
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket or not key:
        raise HpcdataError(
            "malformed S3 URL %r: expected s3://BUCKET/KEY" % url)
    return bucket, unquote(key)


def plain_md5_etag(etag: str | None) -> str | None:
    """The MD5 in an ETag if it is a plain content MD5, else None."""
    etag = (etag or "").strip('"').lower()
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):
        return etag
    return None


class S3:
    def __init__(self, endpoint: str | None = None, region: str | None = None,
                 addressing: str | None = None, profile: str | None = None,
                 credentials: tuple[str, str] | None = None,
                 multipart_threshold: int | None = None) -> None:
        boto3, botocore, TransferConfig, Config = _boto()
        self._botocore = botocore
        style = (addressing or "auto").lower()
        if style not in ("auto", "path", "virtual"):
            raise ConfigError("addressing must be path, virtual or auto, "
                              "not %r" % (addressing,))
        config = Config(s3={"addressing_style": style},
                        retries={"mode": "standard"},
                        connect_timeout=30, read_timeout=60)
        kwargs = {}
        if credentials:
            kwargs.update(aws_access_key_id=credentials[0],
                          aws_secret_access_key=credentials[1])
        try:
            session = boto3.session.Session(profile_name=profile or None,
                                            **kwargs)
        except botocore.exceptions.ProfileNotFound as exc:
            raise ConfigError(
                "AWS profile %r not found (%s)" % (profile, exc))
        self.client = session.client("s3", endpoint_url=endpoint or None,
                                     region_name=region or None,
                                     config=config)
        threshold = multipart_threshold or int(os.environ.get(
            "DATALAD_HPCDATA_S3_MULTIPART_THRESHOLD", MULTIPART_THRESHOLD))
        self.transfer = TransferConfig(
            multipart_threshold=threshold,
            multipart_chunksize=(max(threshold, 5 * 1024 * 1024)
                                 if threshold < MULTIPART_CHUNK
                                 else MULTIPART_CHUNK))

    # -- errors -----------------------------------------------------------
    def _error(self, exc: Exception, what: str) -> HpcdataError | None:
        """Our failure for a boto error, None for anything else."""
        botocore = self._botocore
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                return NotFound("%s: not found (%s)" % (what, code))
            if code in ("403", "AccessDenied", "InvalidAccessKeyId",
                        "SignatureDoesNotMatch"):
                return HpcdataError(
                    "%s: access denied (%s); check the S3 credentials "
                    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or profile)"
                    % (what, code))
            return HpcdataError("%s: S3 error %s" % (what, code or exc))
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return HpcdataError(
                "%s: no S3 credentials found (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or profile=)" % what)
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return HpcdataError("%s: %s" % (what, exc))
        return None

    def call(self, what: str, func: Callable[..., Any], *args: Any,
             **kwargs: Any) -> Any:
        """``func(*args, **kwargs)`` with boto errors translated."""
        return translated_call(self._error, what, func, *args, **kwargs)

    # -- objects ----------------------------------------------------------
    def head(self, bucket: str, key: str) -> dict[str, Any]:
        return self.call("s3://%s/%s" % (bucket, key),
                         self.client.head_object, Bucket=bucket, Key=key)

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.head(bucket, key)
        except NotFound:
            return False
        return True

    def ensure_bucket(self, bucket: str) -> None:
        try:
            self.call("bucket %s" % bucket, self.client.head_bucket,
                      Bucket=bucket)
        except NotFound:
            self.call("create bucket %s" % bucket, self.client.create_bucket,
                      Bucket=bucket)

    def upload(self, path: str, bucket: str, key: str,
               progress: ProgressFn | None = None) -> None:
        done = [0]

        def callback(count: int) -> None:
            done[0] += count
            if progress is not None:
                progress(done[0])

        what = "upload to s3://%s/%s" % (bucket, key)
        self.call(what, self.client.upload_file, path, bucket, key,
                  Config=self.transfer, Callback=callback)
        head = self.head(bucket, key)
        size = os.path.getsize(path)
        if head.get("ContentLength") != size:
            raise VerificationError(
                "%s: stored object has %s bytes, local file %s"
                % (what, head.get("ContentLength"), size))
        etag = plain_md5_etag(head.get("ETag"))
        if (etag and size < self.transfer.multipart_threshold
                and etag != file_md5(path)):
            raise VerificationError(
                "%s: stored object's MD5 (ETag) differs from the local file"
                % what)

    def download(self, bucket: str, key: str, path: str,
                 progress: ProgressFn | None = None,
                 head: dict[str, Any] | None = None) -> int:
        """Ranged, resumable download verified by size and single-part ETag."""
        what = "s3://%s/%s" % (bucket, key)
        head = head or self.head(bucket, key)
        size = head.get("ContentLength")
        md5 = plain_md5_etag(head.get("ETag"))
        have = resume_offset(path, size)
        if size is None or have < size:
            kwargs = {"Bucket": bucket, "Key": key}
            if have:
                kwargs["Range"] = "bytes=%s-" % have
            if head.get("ETag"):
                kwargs["IfMatch"] = head["ETag"]  # same version as checked
            body = self.call(what, self.client.get_object, **kwargs)["Body"]
            try:
                with open(path, "ab" if have else "wb") as out:
                    have = copy_chunks(self._read(body, what, have),
                                       out.write, have, progress)
            finally:
                body.close()
        check_length(what, have, size)
        if md5 and file_md5(path) != md5:
            discard(path)
            raise VerificationError(
                "%s: checksum mismatch against the object's MD5 ETag; "
                "the data was discarded" % what)
        return have

    def _read(self, body: Any, what: str, have: int) -> Iterator[bytes]:
        """Chunks of a GET's ``body``; ``have``: bytes before the first."""
        while True:
            try:
                chunk = body.read(CHUNK)
            except self._botocore.exceptions.BotoCoreError as exc:
                raise HpcdataError(
                    "%s: transfer interrupted after %s bytes (%s)"
                    % (what, have, type(exc).__name__))
            if not chunk:
                return
            have += len(chunk)
            yield chunk

    def delete(self, bucket: str, key: str) -> None:
        self.call("delete s3://%s/%s" % (bucket, key),
                  self.client.delete_object, Bucket=bucket, Key=key)

    # -- URL entries --------------------------------------------------------
    def entries(self, url: str) -> list[Entry]:
        bucket, key = parse_s3(url)
        head = self.head(bucket, key)
        md5 = plain_md5_etag(head.get("ETag"))

        def fetch(path: str, progress: ProgressFn | None) -> int:
            return self.download(bucket, key, path, progress=progress)

        return [Entry(url="s3://%s/%s" % (bucket, quote(key, safe="/")),
                      filename=key.rsplit("/", 1)[-1],
                      size=head.get("ContentLength"),
                      checksum=("md5", md5) if md5 else None, fetch=fetch)]


class S3Store:
    """Annex keys stored as objects ``{prefix}{key}`` in one bucket."""

    def __init__(self, s3: S3, bucket: str, prefix: str = "",
                 publicurl: str | None = None) -> None:
        if not bucket:
            raise ConfigError("store=s3 needs bucket=NAME")
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix or ""
        self.publicurl = (publicurl or "").rstrip("/") or None

    def name(self, key: str) -> str:
        return self.prefix + key

    def setup(self) -> None:
        self.s3.ensure_bucket(self.bucket)

    def store(self, key: str, path: str, progress: ProgressFn | None) -> None:
        self.s3.upload(path, self.bucket, self.name(key), progress)

    def retrieve(self, key: str, path: str,
                 progress: ProgressFn | None) -> None:
        self.s3.download(self.bucket, self.name(key), path, progress)

    def present(self, key: str) -> bool:
        return self.s3.exists(self.bucket, self.name(key))

    def remove(self, key: str) -> None:
        self.s3.delete(self.bucket, self.name(key))

    def public_url(self, key: str) -> str | None:
        if self.publicurl:
            return "%s/%s" % (self.publicurl, quote(self.name(key)))
        return None

    def describe(self) -> str:
        return "s3://%s/%s" % (self.bucket, self.prefix)
