"""Helpers for the user's submission command line (an ``sbatch`` argv)."""

from __future__ import annotations

import os


def is_sbatch(argv) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == "sbatch"


def sbatch_argv(argv: list[str]) -> list[str]:
    """Add --parsable to an sbatch call (before the script) if not there."""
    if not is_sbatch(argv) or "--parsable" in argv:
        return list(argv)
    return [argv[0], "--parsable"] + list(argv[1:])
