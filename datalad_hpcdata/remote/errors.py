"""Failure types used inside the remote, and their one-line messages.

Every provider and store raises one of these; :mod:`.remote` turns them into
protocol-level failures (``TRANSFER-FAILURE``, ``CHECKPRESENT-UNKNOWN`` ...)
with a one-line message.  ``NotFound`` is special: it means "definitely not
there", which CHECKPRESENT reports as absent rather than unknown.
"""

from __future__ import annotations

from typing import Any, Callable, Optional


class HpcdataError(Exception):
    """A failure with a message meant for the user."""


class NotFound(HpcdataError):
    """The object/record/file definitely does not exist."""


class VerificationError(HpcdataError):
    """Downloaded or stored content does not match the published checksum."""


class ConfigError(HpcdataError):
    """The remote is configured wrongly or a needed setting is missing."""


class UnsafeName(HpcdataError):
    """A provider returned a file name that would escape the dataset."""


# (exception, what was being done) -> our failure, or None to re-raise
Translator = Callable[[Exception, str], Optional[HpcdataError]]


def one_line(message: object) -> str:
    """Flatten a message so it can travel in one protocol line."""
    text = str(message)
    text = text.replace("\r", " ").replace("\n", " | ")
    return " ".join(text.split()) or "unknown error"


def describe(exc: BaseException) -> str:
    """Readable one-line description of any exception."""
    if isinstance(exc, HpcdataError):
        return one_line(exc)
    name = type(exc).__name__
    text = str(exc)
    return one_line("%s: %s" % (name, text) if text else name)


def translated_call(translate: Translator, what: str,
                    func: Callable[..., Any], *args: Any,
                    **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` with a client library's errors translated.

    Our own failures pass unchanged; any other exception that ``translate``
    maps to a failure is raised as that failure, the rest unchanged.
    """
    try:
        return func(*args, **kwargs)
    except HpcdataError:
        raise
    except Exception as exc:
        translated = translate(exc, what)
        if translated is None:
            raise
        raise translated from exc
