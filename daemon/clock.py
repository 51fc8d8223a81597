"""The one clock of the program.

Every "now" comes from here, always timezone-aware UTC, so tests can travel in time with freezegun.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
