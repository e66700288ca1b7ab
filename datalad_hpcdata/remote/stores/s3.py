"""S3 (and S3-compatible) objects: a key store and ``s3://BUCKET/KEY`` URLs.

Store layout: object ``{prefix}{annex key}`` in ``bucket``.  Uploads go
straight to the final name: a single PUT and a completed multipart upload
are both atomic in S3 (the object is invisible until complete), so no
half-written object is ever visible.  Files larger than ``partsize`` are
uploaded in parts, ``concurrency`` at a time (:mod:`.s3_upload`); large
objects are downloaded with that many ranged GETs (:mod:`.s3_download`).

Verification, in one pass over the data: every PUT carries the MD5 of its
bytes (``Content-MD5``, checked by the server); a multipart object's
composite ETag (MD5 of the part MD5s) is computed while the parts are read
and compared with the server's.  Downloads hash while they stream and are
checked against the size and the ETag: the MD5 of a single-part object, or
the composite ETag of a multipart one (its part size comes from our upload
metadata or from the server).  git-annex checks the key's own hash as well.

Credentials, first match wins: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
in the environment; git-annex's local credential store (filled by
``initremote``/``enableremote`` from those variables); the AWS profile named
by ``profile=`` or the default botocore chain (``~/.aws``).  Never the
git-annex branch.  (The first two are looked up in ``remote/config.py``.)

Object requests (HEAD/GET/PUT/DELETE) on an explicit ``endpoint=`` with
static credentials use the small client of :mod:`.s3_http` (one persistent
connection per thread); the rest uses botocore, imported only when first
needed.  Either way one client serves every request of a remote process.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import quote, unquote

from ..entries import Entry, ProgressFn
from ..errors import ConfigError, HpcdataError, NotFound, translated_call
from .s3_download import download
from .s3_etags import CONCURRENCY, PARTSIZE, plain_md5_etag
from .s3_http import LeanS3, S3Error, usable
from .s3_upload import upload

LEAN_OPERATIONS = ("head_object", "get_object", "put_object",
                   "delete_object")


def _botocore() -> tuple[Any, Any]:
    try:
        import botocore.config
        import botocore.exceptions
        import botocore.session
    except ImportError:
        raise ConfigError(
            "S3 support needs boto3: pip install 'datalad-hpcdata[s3]'")
    return botocore, botocore.config.Config


def parse_s3(url: str) -> tuple[str, str] | None:
    """``s3://bucket/key`` -> (bucket, key); None if not this scheme."""
    if not url.lower().startswith("s3://"):
        return None
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket or not key:
        raise HpcdataError(
            "malformed S3 URL %r: expected s3://BUCKET/KEY" % url)
    return bucket, unquote(key)


class S3:
    """S3 requests of one remote process, through one client each.

    Object requests (HEAD, GET, PUT, DELETE) on an explicit endpoint with
    static credentials go through the small client of :mod:`.s3_http`;
    everything else through botocore, imported and set up on first use.
    """

    def __init__(self, endpoint: str | None = None, region: str | None = None,
                 addressing: str | None = None, profile: str | None = None,
                 credentials: tuple[str, str] | None = None,
                 partsize: int = PARTSIZE,
                 concurrency: int = CONCURRENCY) -> None:
        style = (addressing or "auto").lower()
        if style not in ("auto", "path", "virtual"):
            raise ConfigError("addressing must be path, virtual or auto, "
                              "not %r" % (addressing,))
        self.partsize = partsize
        self.concurrency = concurrency
        self._settings = (endpoint, region, style, profile, credentials)
        self._client: Any = None
        self._botocore: Any = None
        self.lean = (LeanS3(endpoint, region, style, credentials)
                     if usable(endpoint, credentials) and not profile
                     else None)

    @property
    def client(self) -> Any:
        """The botocore client (made on first use)."""
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        botocore, Config = _botocore()
        self._botocore = botocore
        endpoint, region, style, profile, credentials = self._settings
        # Integrity comes from Content-MD5 and ETags (see the module
        # docstring), so no SHA-256 of every payload and no CRC on top.
        config = Config(s3={"addressing_style": style,
                            "payload_signing_enabled": False},
                        retries={"mode": "standard"},
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                        max_pool_connections=max(10, self.concurrency + 2),
                        connect_timeout=30, read_timeout=60)
        kwargs = {}
        if credentials:
            kwargs.update(aws_access_key_id=credentials[0],
                          aws_secret_access_key=credentials[1])
        try:
            session = botocore.session.Session(profile=profile or None)
            return session.create_client(
                "s3", endpoint_url=endpoint or None,
                region_name=region or None, config=config, **kwargs)
        except botocore.exceptions.ProfileNotFound as exc:
            raise ConfigError(
                "AWS profile %r not found (%s)" % (profile, exc))

    # -- errors -----------------------------------------------------------
    def error_code(self, exc: Exception) -> str | None:
        """The S3 error code of a client error, else None."""
        if isinstance(exc, S3Error):
            return exc.code
        if self._botocore is not None and isinstance(
                exc, self._botocore.exceptions.ClientError):
            return str(exc.response.get("Error", {}).get("Code", ""))
        return None

    def _error(self, exc: Exception, what: str) -> HpcdataError | None:
        """Our failure for a botocore error, None for anything else."""
        if self._botocore is None:
            return None
        exceptions = self._botocore.exceptions
        code = self.error_code(exc)
        if code is not None:
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                return NotFound("%s: not found (%s)" % (what, code))
            if code in ("403", "AccessDenied", "InvalidAccessKeyId",
                        "SignatureDoesNotMatch"):
                return HpcdataError(
                    "%s: access denied (%s); check the S3 credentials "
                    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or profile)"
                    % (what, code))
            return HpcdataError("%s: S3 error %s" % (what, code or exc))
        if isinstance(exc, exceptions.NoCredentialsError):
            return HpcdataError(
                "%s: no S3 credentials found (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or profile=)" % what)
        if isinstance(exc, exceptions.BotoCoreError):
            return HpcdataError("%s: %s" % (what, exc))
        return None

    def call(self, what: str, func: Callable[..., Any], *args: Any,
             **kwargs: Any) -> Any:
        """``func(*args, **kwargs)`` with botocore errors translated."""
        return translated_call(self._error, what, func, *args, **kwargs)

    def request(self, what: str, operation: str, **kwargs: Any) -> Any:
        """The client's ``operation`` (e.g. "head_object"), translated."""
        if self.lean is not None and operation in LEAN_OPERATIONS:
            return self.lean.call(operation, **kwargs)
        return self.call(what, getattr(self.client, operation), **kwargs)

    def attempt(self, what: str, operation: str, codes: tuple[str, ...],
                **kwargs: Any) -> tuple[Any, str | None]:
        """(reply, None), or (None, code) for an S3 error in ``codes``."""
        try:
            if self.lean is not None and operation in LEAN_OPERATIONS:
                return self.lean.call(operation, **kwargs), None
            return getattr(self.client, operation)(**kwargs), None
        except S3Error as exc:
            if exc.code in codes:
                return None, exc.code
            raise
        except HpcdataError:
            raise
        except Exception as exc:
            code = self.error_code(exc)
            if code is not None and code in codes:
                return None, code
            translated = self._error(exc, what)
            if translated is None:
                raise
            raise translated from exc

    # -- objects ----------------------------------------------------------
    def head(self, bucket: str, key: str, **kwargs: Any) -> dict[str, Any]:
        return self.request("s3://%s/%s" % (bucket, key), "head_object",
                            Bucket=bucket, Key=key, **kwargs)

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.head(bucket, key)
        except NotFound:
            return False
        return True

    def ensure_bucket(self, bucket: str) -> None:
        try:
            self.request("bucket %s" % bucket, "head_bucket", Bucket=bucket)
        except NotFound:
            self.request("create bucket %s" % bucket, "create_bucket",
                         Bucket=bucket)

    def upload(self, path: str, bucket: str, key: str,
               progress: ProgressFn | None = None) -> None:
        """Store ``path`` as ``key``, verified (see :mod:`.s3_upload`)."""
        upload(self, path, bucket, key, progress)

    def download(self, bucket: str, key: str, path: str,
                 progress: ProgressFn | None = None,
                 head: dict[str, Any] | None = None) -> int:
        """Resumable, verified download (see :mod:`.s3_download`)."""
        return download(self, bucket, key, path, progress, head)

    def delete(self, bucket: str, key: str) -> None:
        self.request("delete s3://%s/%s" % (bucket, key), "delete_object",
                     Bucket=bucket, Key=key)

    # -- URL entries --------------------------------------------------------
    def entries(self, url: str) -> list[Entry]:
        bucket, key = parse_s3(url)
        head = self.head(bucket, key)
        md5 = plain_md5_etag(head.get("ETag"))

        def fetch(path: str, progress: ProgressFn | None) -> int:
            return self.download(bucket, key, path, progress=progress,
                                 head=head)

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
