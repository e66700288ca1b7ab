"""Retrying HTTP client with a per-process JSON cache and verified downloads.

* 429 and 5xx responses and connection failures are retried a bounded number
  of times; the wait honours ``Retry-After`` (seconds or HTTP date) and
  ``X-RateLimit-Reset`` (epoch seconds), capped by ``max_wait``.
* ``get_json`` caches decoded JSON per URL for the life of the process.
* ``download`` resumes from a partially written file with an HTTP Range
  request, reports cumulative progress, and checks size and checksum before
  returning.  The data is hashed while it streams (in a helper thread, one
  pass, at most ``SLOTS`` chunks of ``CHUNK`` bytes in memory), never read
  back to verify.  A file whose checksum does not match is truncated to zero
  bytes (so a later attempt does not resume from corrupt bytes) and an error
  raised.

Tuning through the environment (all optional):
``DATALAD_HPCDATA_HTTP_RETRIES`` (default 5), ``DATALAD_HPCDATA_HTTP_BACKOFF``
(first back-off in seconds, default 1), ``DATALAD_HPCDATA_HTTP_MAX_WAIT``
(longest single wait in seconds, default 120), ``DATALAD_HPCDATA_HTTP_TIMEOUT``
(socket timeout in seconds, default 60).
"""

from __future__ import annotations

import email.utils
import http.client
import os
import time
from typing import Any, Callable, Mapping

import requests
import urllib3

from .entries import Checksum, ProgressFn
from .errors import HpcdataError, NotFound, VerificationError
from .transfer import (
    checksum_hasher,
    digester,
    discard,
    hash_file,
    pump,
    raw_readinto,
)

RETRY_STATUS = {429, 500, 502, 503, 504}
CHUNK = 4 << 20  # bytes per read of a download (chosen by measuring)
SLOTS = 8  # chunks received but not yet hashed, at most
# what a broken connection raises while a body is read
NETWORK_ERRORS = (OSError, http.client.HTTPException,
                  urllib3.exceptions.HTTPError, requests.RequestException)


def _env_number(name: str, default: float,
                kind: Callable[[str], float] = float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        return default


class HttpError(HpcdataError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def retry_wait(response: requests.Response | None, attempt: int,
               backoff: float, max_wait: float,
               now: float | None = None) -> float:
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


class HttpClient:
    def __init__(self, headers: Mapping[str, str] | None = None,
                 retries: int | None = None, backoff: float | None = None,
                 max_wait: float | None = None, timeout: float | None = None,
                 session: requests.Session | None = None,
                 sleep: Callable[[float], object] = time.sleep) -> None:
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
        self._json_cache: dict[str, Any] = {}

    # -- requests ---------------------------------------------------------
    def request(self, method: str, url: str,
                headers: Mapping[str, str] | None = None,
                stream: bool = False,
                ok: tuple[int, ...] = (200,)) -> requests.Response:
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
                last = "cannot reach %s: %s" % (
                    _site(url), type(exc).__name__)
            else:
                if response.status_code in ok:
                    return response
                status = response.status_code
                if status in (404, 410):
                    response.close()
                    raise NotFound(
                        "%s %s answered HTTP %s" % (method, url, status))
                if status not in RETRY_STATUS:
                    response.close()
                    raise HttpError(
                        _status_message(method, url, response), status)
                last = _status_message(method, url, response)
                response.close()
            if attempt + 1 < attempts:
                self._sleep(retry_wait(
                    response, attempt, self.backoff, self.max_wait))
        raise HttpError("%s (gave up after %s attempts)" % (last, attempts))

    def get_json(self, url: str) -> Any:
        if url not in self._json_cache:
            response = self.request(
                "GET", url, headers={"Accept": "application/json"})
            try:
                self._json_cache[url] = response.json()
            except ValueError:
                raise HttpError("%s did not return JSON" % url)
        return self._json_cache[url]

    def head_size(self, url: str) -> int | None:
        """Content-Length of ``url`` (None if not announced)."""
        return _content_length(self.request("HEAD", url))

    # -- downloads --------------------------------------------------------
    def download(self, url: str, path: str, size: int | None = None,
                 checksum: Checksum | None = None,
                 progress: ProgressFn | None = None) -> int:
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
            except (requests.RequestException, Interrupted) as exc:
                finished = False
                problem = str(exc) or type(exc).__name__
            if finished and (size is None or state.have >= size):
                break
            if attempt + 1 < attempts:
                self._sleep(retry_wait(
                    None, attempt, self.backoff, self.max_wait))
        else:
            raise HttpError(
                "transfer of %s truncated: received %s of %s bytes after %s "
                "attempts (%s)" % (url, state.have,
                                   size if size is not None else "?",
                                   attempts, problem))
        state.verify(url)
        return state.have

    def _fetch_from(self, url: str, state: _Partial,
                    progress: ProgressFn | None) -> bool:
        """One ranged GET appended to ``state``; False if it ended early."""
        # identity: checksums are over the bytes as stored
        headers = {"Accept-Encoding": "identity"}
        if state.have:
            headers["Range"] = "bytes=%s-" % state.have
        response = self.request("GET", url, headers=headers, stream=True,
                                ok=(200, 206, 416))
        with response:
            if response.status_code == 416:
                # Nothing left to send: the partial file is already complete.
                return True
            if state.have and response.status_code == 200:
                state.restart()  # the server ignored the range
            expected = _content_length(response)
            start = state.have
            state.receive(body_reader(response), progress)
            got = state.have - start
        return expected is None or got >= expected


class Interrupted(HpcdataError):
    """The connection broke while a response body was read."""


def body_reader(response: requests.Response) -> Callable[[Any], int]:
    """``readinto(view)`` for ``response``'s body (0 at the end).

    A plain body is read straight from the http.client response (see
    ``transfer.raw_readinto``), an encoded one through urllib3's decoder.
    A broken connection raises ``Interrupted``.
    """
    raw = response.raw
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    if encoding in ("", "identity"):
        source = raw_readinto(raw)
    else:
        def source(view: Any) -> int:
            data = raw.read(len(view), decode_content=True)
            view[:len(data)] = data
            return len(data)

    def readinto(view: Any) -> int:
        try:
            return source(view)
        except NETWORK_ERRORS as exc:
            raise Interrupted("connection broken (%s)" % type(exc).__name__)

    return readinto


class _Partial:
    """A download target that may already hold a prefix of the content."""

    def __init__(self, path: str, checksum: Checksum | None,
                 size: int | None) -> None:
        self.path = path
        self.checksum = checksum
        self.size = size
        if checksum and checksum_hasher(checksum[0]) is None:
            raise HpcdataError(
                "unsupported checksum algorithm %r" % (checksum[0],))
        self.restart(keep=True)

    def restart(self, keep: bool = False) -> None:
        """Start over (``keep``: keep and hash what the file holds)."""
        self.hasher = (checksum_hasher(self.checksum[0])
                       if self.checksum else None)
        self.have = 0
        if not keep or not os.path.exists(self.path):
            discard(self.path)
            return
        length = os.path.getsize(self.path)
        if self.size is not None and length > self.size:
            discard(self.path)
            return
        if self.hasher is not None and length:
            hash_file(self.hasher, self.path)
        self.have = length

    def receive(self, readinto: Callable[[Any], int],
                progress: ProgressFn | None) -> None:
        """Append the body to the file, hashing it as it comes."""
        update = self.hasher.update if self.hasher is not None else None
        amount = None if self.size is None else self.size - self.have

        def counted(count: int) -> None:
            self.have += count
            if progress is not None:
                progress(self.have)

        with open(self.path, "ab") as out, \
                digester(update, SLOTS, CHUNK, amount) as hashing:
            try:
                pump(readinto, out, hashing, counted)
            finally:
                hashing.finish()  # the hash covers what was written

    def verify(self, url: str) -> None:
        if self.size is not None and self.have != self.size:
            discard(self.path)
            raise VerificationError(
                "size mismatch for %s: expected %s bytes, received %s; "
                "the data was discarded" % (url, self.size, self.have))
        if (self.hasher is not None
                and self.hasher.hexdigest() != self.checksum[1]):
            got = self.hasher.hexdigest()
            discard(self.path)
            raise VerificationError(
                "checksum mismatch for %s: published %s:%s, downloaded data "
                "has %s; the data was discarded"
                % (url, self.checksum[0], self.checksum[1], got))


def _content_length(response: requests.Response) -> int | None:
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _site(url: str) -> str:
    return url.split("/")[2] if url.count("/") >= 2 else url


def _status_message(method: str, url: str,
                    response: requests.Response) -> str:
    reason = response.reason or ""
    return ("%s %s answered HTTP %s %s"
            % (method, url, response.status_code, reason)).strip()
