"""Retrying HTTP client with a per-process JSON cache and verified downloads.

* 429 and 5xx responses and connection failures are retried a bounded number
  of times; the wait honours ``Retry-After`` (seconds or HTTP date) and
  ``X-RateLimit-Reset`` (epoch seconds), capped by ``max_wait``.
* ``get_json`` caches decoded JSON per URL for the life of the process.
* ``download`` resumes from a partially written file with an HTTP Range
  request, reports cumulative progress, and checks size and checksum before
  returning.  A file whose checksum does not match is truncated to zero bytes
  (so a later attempt does not resume from corrupt bytes) and an error raised.

Tuning through the environment (all optional):
``DATALAD_HPCDATA_HTTP_RETRIES`` (default 5), ``DATALAD_HPCDATA_HTTP_BACKOFF``
(first back-off in seconds, default 1), ``DATALAD_HPCDATA_HTTP_MAX_WAIT``
(longest single wait in seconds, default 120), ``DATALAD_HPCDATA_HTTP_TIMEOUT``
(socket timeout in seconds, default 60).
"""

import email.utils
import hashlib
import os
import time

import requests

from .errors import HpcdataError, NotFound, VerificationError

RETRY_STATUS = {429, 500, 502, 503, 504}
CHUNK = 1 << 16


def _env_number(name, default, kind=float):
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        return default


class HttpError(HpcdataError):
    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def retry_wait(response, attempt, backoff, max_wait, now=None):
    """Seconds to wait before the next attempt (never negative, capped)."""
    now = time.time() if now is None else now
    wait = None
    if response is not None:
        header = response.headers.get("Retry-After")
        if header:
            header = header.strip()
            if header.isdigit():
                wait = float(header)
            else:
                try:
                    parsed = email.utils.parsedate_to_datetime(header)
                    wait = parsed.timestamp() - now
                except (TypeError, ValueError, IndexError):
                    wait = None
        if wait is None:
            reset = response.headers.get("X-RateLimit-Reset", "").strip()
            if reset.isdigit():
                wait = float(reset) - now
    if wait is None:
        wait = backoff * (2 ** attempt)
    return max(0.0, min(wait, max_wait))


def checksum_hasher(algorithm):
    """hashlib object for a published checksum algorithm name, or None."""
    name = (algorithm or "").lower().replace("-", "")
    if name in ("md5", "sha1", "sha256", "sha512"):
        return hashlib.new(name)
    return None


def parse_checksum(value):
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


class HttpClient:
    def __init__(self, headers=None, retries=None, backoff=None, max_wait=None,
                 timeout=None, session=None, sleep=time.sleep):
        self.retries = retries if retries is not None else _env_number(
            "DATALAD_HPCDATA_HTTP_RETRIES", 5, int)
        self.backoff = backoff if backoff is not None else _env_number(
            "DATALAD_HPCDATA_HTTP_BACKOFF", 1.0)
        self.max_wait = max_wait if max_wait is not None else _env_number(
            "DATALAD_HPCDATA_HTTP_MAX_WAIT", 120.0)
        self.timeout = timeout if timeout is not None else _env_number(
            "DATALAD_HPCDATA_HTTP_TIMEOUT", 60.0)
        self.session = session or requests.Session()
        self.session.headers.update({"User-Agent": "datalad-hpcdata-remote"})
        if headers:
            self.session.headers.update(headers)
        self._sleep = sleep
        self._json_cache = {}

    # -- requests ---------------------------------------------------------
    def request(self, method, url, headers=None, stream=False, ok=(200,)):
        """Send a request, retrying 429/5xx/connection errors (bounded).

        Returns the response for a status in ``ok``; raises ``NotFound`` for
        404/410 and ``HttpError`` otherwise.
        """
        attempts = max(1, self.retries + 1)
        last = "no attempt made"
        for attempt in range(attempts):
            response = None
            try:
                response = self.session.request(
                    method, url, headers=headers, stream=stream,
                    timeout=self.timeout, allow_redirects=True)
            except requests.RequestException as exc:
                last = "cannot reach {}: {}".format(_site(url), type(exc).__name__)
            else:
                if response.status_code in ok:
                    return response
                status = response.status_code
                if status in (404, 410):
                    response.close()
                    raise NotFound("{} {} answered HTTP {}".format(method, url, status))
                if status not in RETRY_STATUS:
                    response.close()
                    raise HttpError(_status_message(method, url, response), status)
                last = _status_message(method, url, response)
                response.close()
            if attempt + 1 < attempts:
                self._sleep(retry_wait(response, attempt, self.backoff, self.max_wait))
        raise HttpError("{} (gave up after {} attempts)".format(last, attempts))

    def get_json(self, url):
        if url not in self._json_cache:
            response = self.request("GET", url, headers={"Accept": "application/json"})
            try:
                self._json_cache[url] = response.json()
            except ValueError:
                raise HttpError("{} did not return JSON".format(url))
        return self._json_cache[url]

    def head_size(self, url):
        """Content-Length of ``url`` (None if not announced)."""
        response = self.request("HEAD", url)
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None

    # -- downloads --------------------------------------------------------
    def download(self, url, path, size=None, checksum=None, progress=None):
        """Download ``url`` into ``path``, resuming a partial file.

        ``checksum`` is ``(algorithm, hexdigest)`` or None.  Raises
        ``VerificationError`` (and empties ``path``) on a mismatch and
        ``HttpError`` when the transfer stays short after all retries.
        """
        state = _Partial(path, checksum, size)
        attempts = max(1, self.retries + 1)
        problem = "connection closed early"
        for attempt in range(attempts):
            if size is not None and state.have >= size:
                break
            try:
                finished = self._fetch_from(url, state, progress)
            except requests.RequestException as exc:
                finished = False
                problem = type(exc).__name__
            if finished and (size is None or state.have >= size):
                break
            if attempt + 1 < attempts:
                self._sleep(retry_wait(None, attempt, self.backoff, self.max_wait))
        else:
            raise HttpError(
                "transfer of {} truncated: received {} of {} bytes after {} attempts ({})"
                .format(url, state.have, size if size is not None else "?", attempts, problem))
        state.verify(url)
        return state.have

    def _fetch_from(self, url, state, progress):
        headers = {"Range": "bytes={}-".format(state.have)} if state.have else None
        response = self.request("GET", url, headers=headers, stream=True, ok=(200, 206, 416))
        with response:
            if response.status_code == 416:
                # Nothing left to send: the partial file is already complete.
                return True
            if state.have and response.status_code == 200:
                state.restart()  # the server ignored the range
            expected = response.headers.get("Content-Length")
            expected = int(expected) if expected and expected.isdigit() else None
            got = 0
            with open(state.path, "ab") as out:
                for chunk in response.iter_content(CHUNK):
                    if not chunk:
                        continue
                    out.write(chunk)
                    state.update(chunk)
                    got += len(chunk)
                    if progress is not None:
                        progress(state.have)
        return expected is None or got >= expected


class _Partial:
    """A download target that may already hold a prefix of the content."""

    def __init__(self, path, checksum, size):
        self.path = path
        self.checksum = checksum
        self.size = size
        if checksum and checksum_hasher(checksum[0]) is None:
            raise HpcdataError("unsupported checksum algorithm {!r}".format(checksum[0]))
        self.restart(keep=True)

    def restart(self, keep=False):
        self.hasher = checksum_hasher(self.checksum[0]) if self.checksum else None
        self.have = 0
        if not keep or not os.path.exists(self.path):
            _truncate(self.path)
            return
        length = os.path.getsize(self.path)
        if self.size is not None and length > self.size:
            _truncate(self.path)
            return
        if self.hasher is not None and length:
            with open(self.path, "rb") as handle:
                for chunk in iter(lambda: handle.read(CHUNK), b""):
                    self.hasher.update(chunk)
        self.have = length

    def update(self, chunk):
        if self.hasher is not None:
            self.hasher.update(chunk)
        self.have += len(chunk)

    def verify(self, url):
        if self.size is not None and self.have != self.size:
            _truncate(self.path)
            raise VerificationError(
                "size mismatch for {}: expected {} bytes, received {}; the data was discarded"
                .format(url, self.size, self.have))
        if self.hasher is not None and self.hasher.hexdigest() != self.checksum[1]:
            got = self.hasher.hexdigest()
            _truncate(self.path)
            raise VerificationError(
                "checksum mismatch for {}: published {}:{}, downloaded data has {}; "
                "the data was discarded".format(url, self.checksum[0], self.checksum[1], got))


def _truncate(path):
    with open(path, "wb"):
        pass


def _site(url):
    return url.split("/")[2] if url.count("/") >= 2 else url


def _status_message(method, url, response):
    reason = response.reason or ""
    return "{} {} answered HTTP {} {}".format(method, url, response.status_code, reason).strip()
