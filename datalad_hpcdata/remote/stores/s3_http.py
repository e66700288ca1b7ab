"""A small S3 client for the per-object requests: HEAD, GET, PUT, DELETE.

With many small files, botocore's per-request machinery (events, endpoint
rules, validation, parsing: ~2 ms of CPU per request) and its start-up
(~0.3 s per process) cost more than the transfers; ``git annex copy -J8``
runs several remote processes at once.  For an explicitly configured
endpoint with static credentials, these four requests go through this
client instead: AWS Signature V4 over ``http.client``, one persistent
connection per thread, the same URL botocore would use (path style, or
virtual-hosted for ``addressing=virtual`` and for ``auto`` when the bucket
name is a DNS label and the endpoint no IP address).  Multipart uploads,
listings and bucket requests stay with botocore, and so does everything
for AWS's own endpoints, AWS profiles and HTTP proxies.

Payloads are not hashed for the signature (``UNSIGNED-PAYLOAD``); PUTs
carry ``Content-MD5`` instead, which the server checks.  Connection
failures, 500/502/503/504 are retried (``ATTEMPTS`` times, short back-off);
replies look like botocore's (``ContentLength``, ``ETag``, ``Metadata``,
``PartsCount``, ``Body``), errors are our failure types.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import re
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

from ..errors import HpcdataError, NotFound

ATTEMPTS = 4
RETRY_STATUS = (500, 502, 503, 504)
TIMEOUT = 60
UNSIGNED = "UNSIGNED-PAYLOAD"
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_CODE = re.compile(rb"<Code>([^<]+)</Code>")
# botocore parameter -> (header, how the value is sent)
_HEADERS = {"ContentMD5": "Content-MD5", "IfMatch": "If-Match",
            "Range": "Range"}


class S3Error(HpcdataError):
    """An S3 error reply (``code`` as botocore would report it)."""

    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def usable(endpoint: str | None, credentials: object) -> bool:
    """Whether this client can stand in for botocore here."""
    if not endpoint or not credentials:
        return False
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    if proxies.get(parts.scheme) and not urllib.request.proxy_bypass(
            parts.hostname):
        return False
    return True


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class LeanS3:
    def __init__(self, endpoint: str, region: str | None, addressing: str,
                 credentials: tuple[str, str]) -> None:
        parts = urlsplit(endpoint)
        self.scheme = parts.scheme
        self.netloc = parts.netloc
        self.host = parts.hostname or ""
        self.port = parts.port
        self.base = parts.path.rstrip("/")
        self.region = region or "us-east-1"
        self.addressing = addressing
        self.key, self.secret = credentials
        self._local = threading.local()
        self._signing: tuple[str, bytes] | None = None

    # -- addressing -------------------------------------------------------
    def virtual(self, bucket: str) -> bool:
        if self.addressing == "virtual":
            return True
        if self.addressing == "path":
            return False
        return (bool(_DNS_BUCKET.match(bucket)) and not _is_ip(self.host)
                and not (self.scheme == "https" and "." in bucket))

    def target(self, bucket: str, key: str) -> tuple[str, str]:
        """(Host header, path) of object ``key`` in ``bucket``."""
        if self.virtual(bucket):
            return "%s.%s" % (bucket, self.netloc), "%s/%s" % (
                self.base, quote(key, safe="/~"))
        return self.netloc, "%s/%s/%s" % (self.base, bucket,
                                          quote(key, safe="/~"))

    # -- signing ----------------------------------------------------------
    def _key_for(self, day: str) -> bytes:
        if self._signing is None or self._signing[0] != day:
            key = ("AWS4" + self.secret).encode()
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._signing = (day, key)
        return self._signing[1]

    def sign(self, method: str, host: str, path: str, query: str,
             headers: dict[str, str]) -> dict[str, str]:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        signed = {"host": host, "x-amz-date": stamp,
                  "x-amz-content-sha256": UNSIGNED}
        for name, value in headers.items():
            if name.lower() == "content-md5":
                signed["content-md5"] = value
        names = sorted(signed)
        canonical = "\n".join([
            method, path, query,
            "".join("%s:%s\n" % (n, signed[n].strip()) for n in names),
            ";".join(names), UNSIGNED])
        scope = "%s/%s/s3/aws4_request" % (stamp[:8], self.region)
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._key_for(stamp[:8]), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        out = dict(headers)
        out.update({"Host": host, "X-Amz-Date": stamp,
                    "X-Amz-Content-SHA256": UNSIGNED,
                    "Authorization": "AWS4-HMAC-SHA256 Credential=%s/%s, "
                    "SignedHeaders=%s, Signature=%s" % (
                        self.key, scope, ";".join(names), signature)})
        return out

    # -- connections ------------------------------------------------------
    def _connection(self, host: str) -> http.client.HTTPConnection:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(host)
        if conn is None:
            name = host.rsplit(":", 1)[0] if self.port else host
            if self.scheme == "https":
                conn = http.client.HTTPSConnection(name, self.port,
                                                   timeout=TIMEOUT)
            else:
                conn = http.client.HTTPConnection(name, self.port,
                                                  timeout=TIMEOUT)
            conns[host] = conn
        return conn

    def _drop(self, host: str) -> None:
        conn = getattr(self._local, "conns", {}).pop(host, None)
        if conn is not None:
            conn.close()

    def send(self, method: str, bucket: str, key: str, query: str = "",
             headers: dict[str, str] | None = None,
             body: bytes | None = None) -> http.client.HTTPResponse:
        """One request (retried); the response, its body not yet read."""
        host, path = self.target(bucket, key)
        url = path + ("?" + query if query else "")
        problem = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(min(2.0, 0.05 * 4 ** attempt))
            conn = self._connection(host)
            try:
                conn.request(method, url, body=body, headers=self.sign(
                    method, host, path, query, headers or {}))
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self._drop(host)
                problem = "cannot reach %s (%s)" % (self.netloc,
                                                    type(exc).__name__)
                continue
            if response.status in RETRY_STATUS and attempt + 1 < ATTEMPTS:
                response.read()
                problem = "HTTP %s" % response.status
                continue
            return response
        raise HpcdataError("%s %s: %s (gave up after %s attempts)"
                           % (method, url, problem, ATTEMPTS))

    # -- operations (botocore's names and reply shapes) ---------------------
    def call(self, operation: str, Bucket: str, Key: str,
             **kwargs: Any) -> dict[str, Any]:
        headers = {_HEADERS[name]: str(kwargs.pop(name))
                   for name in list(kwargs) if name in _HEADERS}
        query = ""
        if "PartNumber" in kwargs:
            query = "partNumber=%d" % int(kwargs.pop("PartNumber"))
        body = kwargs.pop("Body", None)
        if kwargs:
            raise TypeError("unsupported parameters %s" % sorted(kwargs))
        method = {"head_object": "HEAD", "get_object": "GET",
                  "put_object": "PUT", "delete_object": "DELETE"}[operation]
        if body is not None:
            headers["Content-Length"] = str(len(body))
        response = self.send(method, Bucket, Key, query, headers, body)
        if response.status >= 300:
            self._fail(response, method, Bucket, Key)
        reply = _reply(response)
        if method == "GET":
            reply["Body"] = Body(response, self, self.target(Bucket, Key)[0])
        else:
            response.read()
        return reply

    def _fail(self, response: http.client.HTTPResponse, method: str,
              bucket: str, key: str) -> None:
        data = response.read()  # also for HEAD: frees the connection
        match = _CODE.search(data[:4096])
        code = match.group(1).decode() if match else str(response.status)
        what = "s3://%s/%s" % (bucket, key)
        if response.status == 404 or code in ("NoSuchKey", "NoSuchBucket"):
            raise NotFound("%s: not found (%s)" % (what, code))
        if response.status == 403 or code in ("AccessDenied",
                                              "InvalidAccessKeyId",
                                              "SignatureDoesNotMatch"):
            raise S3Error(
                "%s: access denied (%s); check the S3 credentials "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or profile)"
                % (what, code), code, response.status)
        raise S3Error("%s: S3 error %s" % (what, code), code,
                      response.status)


def _reply(response: http.client.HTTPResponse) -> dict[str, Any]:
    headers = response.headers
    reply: dict[str, Any] = {"Metadata": {
        name[len("x-amz-meta-"):].lower(): value
        for name, value in headers.items()
        if name.lower().startswith("x-amz-meta-")}}
    length = headers.get("Content-Length")
    if length and length.isdigit():
        reply["ContentLength"] = int(length)
    for header, field in (("ETag", "ETag"), ("Content-Range",
                                             "ContentRange"),
                          ("x-amz-server-side-encryption",
                           "ServerSideEncryption"),
                          ("x-amz-server-side-encryption-customer-algorithm",
                           "SSECustomerAlgorithm")):
        if headers.get(header):
            reply[field] = headers[header]
    count = headers.get("x-amz-mp-parts-count")
    if count and count.isdigit():
        reply["PartsCount"] = int(count)
    return reply


class Body:
    """A GET's body: ``read(n)``, ``readinto(view)`` and ``close()``; a
    body closed before its end takes its connection with it (it cannot
    carry another request)."""

    def __init__(self, response: http.client.HTTPResponse, owner: LeanS3,
                 host: str) -> None:
        self.response = response
        self.owner = owner
        self.host = host

    def read(self, amount: int | None = None) -> bytes:
        return self.response.read(amount)

    def readinto(self, view: Any) -> int:
        return self.response.readinto(view)

    def close(self) -> None:
        if not self.response.isclosed():
            self.owner._drop(self.host)
        self.response.close()
