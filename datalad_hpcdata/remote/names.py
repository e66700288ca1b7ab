"""Checks for file names that come from remote services."""

from __future__ import annotations

from .errors import UnsafeName


def safe_relpath(name: object, source: str = "the service") -> str:
    """Return ``name`` if it is a harmless relative path, else raise.

    Rejected: empty names, absolute paths, ``.``/``..`` components, empty
    components, backslashes and control characters.  Such names could make
    ``addurl`` write outside the dataset or create confusing files.
    """
    text = str(name)
    problem = None
    if not text:
        problem = "empty file name"
    elif text.startswith("/"):
        problem = "absolute path"
    elif "\\" in text:
        problem = "backslash in file name"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        problem = "control character in file name"
    else:
        parts = text.split("/")
        if any(part in ("", ".", "..") for part in parts):
            problem = "'.', '..' or empty path component"
    if problem:
        raise UnsafeName(
            "%s lists an unsafe file name %r (%s); refusing to use it"
            % (source, text, problem))
    return text


def multi_filename(name: str) -> str:
    """File name for CHECKURL-MULTI, which cannot carry spaces."""
    return safe_relpath(name).replace(" ", "_")
