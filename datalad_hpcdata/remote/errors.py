"""Failure types used inside the remote.

Every provider raises one of these; :mod:`.main` turns them into
protocol-level failures (``TRANSFER-FAILURE``, ``CHECKPRESENT-UNKNOWN`` ...)
with a one-line message.  ``NotFound`` is special: it means "definitely not
there", which CHECKPRESENT reports as absent rather than unknown.
"""


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


def one_line(message):
    """Flatten a message so it can travel in one protocol line."""
    text = str(message)
    text = text.replace("\r", " ").replace("\n", " | ")
    return " ".join(text.split()) or "unknown error"


def describe(exc):
    """Readable one-line description of any exception."""
    if isinstance(exc, HpcdataError):
        return one_line(exc)
    name = type(exc).__name__
    text = str(exc)
    return one_line("{}: {}".format(name, text) if text else name)
