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
git-annex branch.
"""

import hashlib
import os
from urllib.parse import quote, unquote

from ..entries import Entry
from ..errors import ConfigError, HpcdataError, NotFound, VerificationError

MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
CHUNK = 1 << 16


def _boto():
    try:
        import boto3
        import botocore
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config
    except ImportError:
        raise ConfigError("S3 support needs boto3: pip install 'datalad-hpcdata[s3]'")
    return boto3, botocore, TransferConfig, Config


def parse_s3(url):
    """``s3://bucket/key`` -> (bucket, key); None if not this scheme."""
    if not url.lower().startswith("s3://"):
        return None
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket or not key:
        raise HpcdataError("malformed S3 URL {!r}: expected s3://BUCKET/KEY".format(url))
    return bucket, unquote(key)


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plain_md5_etag(etag):
    """The MD5 in an ETag if it is a plain content MD5, else None."""
    etag = (etag or "").strip('"').lower()
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):
        return etag
    return None


class S3:
    def __init__(self, endpoint=None, region=None, addressing=None, profile=None,
                 credentials=None, multipart_threshold=None):
        boto3, botocore, TransferConfig, Config = _boto()
        self._botocore = botocore
        style = (addressing or "auto").lower()
        if style not in ("auto", "path", "virtual"):
            raise ConfigError("addressing must be path, virtual or auto, not {!r}".format(addressing))
        config = Config(s3={"addressing_style": style}, retries={"mode": "standard"},
                        connect_timeout=30, read_timeout=60)
        kwargs = {}
        if credentials:
            kwargs.update(aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1])
        try:
            session = boto3.session.Session(profile_name=profile or None, **kwargs)
        except botocore.exceptions.ProfileNotFound as exc:
            raise ConfigError("AWS profile {!r} not found ({})".format(profile, exc))
        self.client = session.client("s3", endpoint_url=endpoint or None,
                                     region_name=region or None, config=config)
        threshold = multipart_threshold or int(os.environ.get(
            "DATALAD_HPCDATA_S3_MULTIPART_THRESHOLD", MULTIPART_THRESHOLD))
        self.transfer = TransferConfig(multipart_threshold=threshold,
                                       multipart_chunksize=max(threshold, 5 * 1024 * 1024)
                                       if threshold < MULTIPART_CHUNK else MULTIPART_CHUNK)

    # -- errors -----------------------------------------------------------
    def _error(self, exc, what):
        botocore = self._botocore
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                return NotFound("{}: not found ({})".format(what, code))
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return HpcdataError("{}: access denied ({}); check the S3 credentials "
                                    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or profile)"
                                    .format(what, code))
            return HpcdataError("{}: S3 error {}".format(what, code or exc))
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return HpcdataError("{}: no S3 credentials found (set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY, or profile=)".format(what))
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return HpcdataError("{}: {}".format(what, exc))
        return None

    def call(self, what, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # translate boto errors, keep others
            translated = self._error(exc, what)
            if translated is None:
                raise
            raise translated from exc

    # -- objects ----------------------------------------------------------
    def head(self, bucket, key):
        return self.call("s3://{}/{}".format(bucket, key), self.client.head_object,
                         Bucket=bucket, Key=key)

    def exists(self, bucket, key):
        try:
            self.head(bucket, key)
        except NotFound:
            return False
        return True

    def ensure_bucket(self, bucket):
        try:
            self.call("bucket {}".format(bucket), self.client.head_bucket, Bucket=bucket)
        except NotFound:
            self.call("create bucket {}".format(bucket), self.client.create_bucket, Bucket=bucket)

    def upload(self, path, bucket, key, progress=None):
        done = [0]

        def callback(count):
            done[0] += count
            if progress is not None:
                progress(done[0])

        what = "upload to s3://{}/{}".format(bucket, key)
        self.call(what, self.client.upload_file, path, bucket, key,
                  Config=self.transfer, Callback=callback)
        head = self.head(bucket, key)
        size = os.path.getsize(path)
        if head.get("ContentLength") != size:
            raise VerificationError("{}: stored object has {} bytes, local file {}"
                                    .format(what, head.get("ContentLength"), size))
        etag = plain_md5_etag(head.get("ETag"))
        if etag and size < self.transfer.multipart_threshold and etag != file_md5(path):
            raise VerificationError("{}: stored object's MD5 (ETag) differs from the local file"
                                    .format(what))

    def download(self, bucket, key, path, progress=None, head=None):
        """Ranged, resumable download verified by size and single-part ETag."""
        what = "s3://{}/{}".format(bucket, key)
        head = head or self.head(bucket, key)
        size = head.get("ContentLength")
        md5 = plain_md5_etag(head.get("ETag"))
        have = os.path.getsize(path) if os.path.exists(path) else 0
        if size is not None and have > size:
            have = 0
        mode = "ab" if have else "wb"
        if size is None or have < size:
            kwargs = {"Bucket": bucket, "Key": key}
            if have:
                kwargs["Range"] = "bytes={}-".format(have)
            if head.get("ETag"):
                kwargs["IfMatch"] = head["ETag"]  # same object version as checked
            reply = self.call(what, self.client.get_object, **kwargs)
            body = reply["Body"]
            try:
                with open(path, mode) as out:
                    for chunk in iter(lambda: body.read(CHUNK), b""):
                        out.write(chunk)
                        have += len(chunk)
                        if progress is not None:
                            progress(have)
            except self._botocore.exceptions.BotoCoreError as exc:
                raise HpcdataError("{}: transfer interrupted after {} bytes ({})"
                                   .format(what, have, type(exc).__name__))
            finally:
                body.close()
        if size is not None and have != size:
            raise HpcdataError("{}: transfer truncated: received {} of {} bytes"
                               .format(what, have, size))
        if md5 and file_md5(path) != md5:
            with open(path, "wb"):
                pass
            raise VerificationError("{}: checksum mismatch against the object's MD5 ETag; "
                                    "the data was discarded".format(what))
        return have

    def delete(self, bucket, key):
        self.call("delete s3://{}/{}".format(bucket, key), self.client.delete_object,
                  Bucket=bucket, Key=key)

    # -- URL entries --------------------------------------------------------
    def entries(self, url):
        bucket, key = parse_s3(url)
        head = self.head(bucket, key)
        size = head.get("ContentLength")
        md5 = plain_md5_etag(head.get("ETag"))

        def fetch(path, progress):
            return self.download(bucket, key, path, progress=progress)

        return [Entry(url="s3://{}/{}".format(bucket, quote(key, safe="/")),
                      filename=key.rsplit("/", 1)[-1], size=size,
                      checksum=("md5", md5) if md5 else None, fetch=fetch)]


class S3Store:
    """Annex keys stored as objects ``{prefix}{key}`` in one bucket."""

    def __init__(self, s3, bucket, prefix="", publicurl=None):
        if not bucket:
            raise ConfigError("store=s3 needs bucket=NAME")
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix or ""
        self.publicurl = (publicurl or "").rstrip("/") or None

    def name(self, key):
        return self.prefix + key

    def setup(self):
        self.s3.ensure_bucket(self.bucket)

    def store(self, key, path, progress):
        self.s3.upload(path, self.bucket, self.name(key), progress)

    def retrieve(self, key, path, progress):
        self.s3.download(self.bucket, self.name(key), path, progress)

    def present(self, key):
        return self.s3.exists(self.bucket, self.name(key))

    def remove(self, key):
        self.s3.delete(self.bucket, self.name(key))

    def public_url(self, key):
        if self.publicurl:
            return "{}/{}".format(self.publicurl, quote(self.name(key)))
        return None

    def describe(self):
        return "s3://{}/{}".format(self.bucket, self.prefix)
