"""Errors of the schedule step (shared by plan and prepare)."""

from __future__ import annotations


class ScheduleError(ValueError):
    """Bad input; nothing was changed."""
