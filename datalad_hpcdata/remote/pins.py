"""Version pins: which upstream version of a file a key was fetched from.

For each key the remote records with git-annex's per-key state (SETSTATE)
``{"v": STATE_VERSION, "url": URL, "pin": PIN, "checksum": "algo:hex"}``:
the URL recorded for the key, the URL that names exactly the version that
was fetched (e.g. ``zenodo://200/data.bin`` for a concept DOI) and the
checksum the service published for it.  Later transfers fetch the pin and
refuse content that is not the key's (``check``).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Dict

from .errors import VerificationError

if TYPE_CHECKING:
    from annexremote import Master

    from .entries import Entry

STATE_VERSION = 1
_KEY_SIZE = re.compile(r"-s(\d+)(?:-|$)")

State = Dict[str, Any]


def key_size(key: str) -> int | None:
    """The size a key names (``-s<bytes>``), else None."""
    match = _KEY_SIZE.search(key.split("--", 1)[0])
    return int(match.group(1)) if match else None


def key_md5(key: str) -> str | None:
    """The MD5 a MD5/MD5E key names, else None."""
    backend, _, rest = key.partition("-")
    if backend not in ("MD5", "MD5E") or "--" not in key:
        return None
    digest = key.split("--", 1)[1].split(".", 1)[0].lower()
    return digest if len(digest) == 32 else None


class Pins:
    """The recorded pins of keys, through git-annex's GETSTATE/SETSTATE."""

    def __init__(self, annex: Master) -> None:
        self.annex = annex

    def state(self, key: str) -> State:
        """The state recorded for ``key``; {} if none or unreadable."""
        try:
            raw = self.annex.getstate(key)
        except Exception:
            return {}
        try:
            state = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return state if isinstance(state, dict) else {}

    def get(self, key: str, url: str) -> State:
        """The pin recorded for ``key`` fetched from ``url`` (may be empty).

        ``addurl`` downloads through a temporary ``VURL-s<size>--<url>`` key,
        and git-annex keeps the state set for it.  When the final key has no
        state of its own yet, that temporary key's state is used, so the
        version seen at ``addurl`` time is the one fetched later.
        """
        own = self.state(key)
        if own.get("url") == url:
            return own
        size = key_size(key)
        if (not key.startswith(("URL-", "VURL-")) and size is not None
                and len(url) <= 96 and not any(ch.isspace() for ch in url)):
            for backend in ("VURL", "URL"):
                state = self.state("%s-s%s--%s" % (backend, size, url))
                if state.get("url") == url:
                    return state
        return {}

    def record(self, key: str, url: str, entry: Entry) -> None:
        """Pin ``entry``'s version for ``key`` (unless nothing changed)."""
        if entry.checksum is None and entry.size is None:
            return
        new = {"v": STATE_VERSION, "url": url, "pin": entry.pin,
               "checksum": entry.checksum_text}
        old = self.state(key)
        if {k: old.get(k) for k in new} != new:
            self.annex.setstate(
                key, json.dumps(new, separators=(",", ":"), sort_keys=True))


def check(key: str, target: str, entry: Entry, pin: State) -> None:
    """Refuse ``entry`` (resolved from ``target``) unless it is ``key``'s.

    The size must be the key's, a published checksum the recorded one (if
    the same algorithm) and, for an MD5 key, the key's MD5.
    """
    expected_size = key_size(key)
    if (expected_size is not None and entry.size is not None
            and entry.size != expected_size):
        raise VerificationError(
            "%s now has %s bytes but this file has %s bytes: the upstream "
            "content changed" % (target, entry.size, expected_size))
    if not entry.checksum:
        return
    pinned = pin.get("checksum")
    algo, digest = entry.checksum
    if (pinned and pinned.split(":", 1)[0] == algo
            and pinned != entry.checksum_text):
        raise VerificationError(
            "%s now publishes %s but %s was recorded when it was first "
            "fetched: the upstream content changed"
            % (target, entry.checksum_text, pinned))
    md5 = key_md5(key)
    if md5 and algo == "md5" and md5 != digest:
        raise VerificationError("%s publishes md5:%s but the key expects "
                                "md5:%s" % (target, digest, md5))
