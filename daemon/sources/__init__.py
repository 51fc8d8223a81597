"""Calendar sources: each turns one calendar into the changes since its last sync.

The contract every source keeps (tests/integration/test_source_contract.py runs it against each):
- `sync(state, now)` with `state=None` lists every event in the window; with the state it returned
  last time, only what changed since: events added or modified (`upserted`) and ids gone (`removed`).
- An event the source cannot use is skipped and named in `problems`; the rest still count.
- A calendar that cannot be read at all raises `SourceError`, and the caller keeps its old state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from daemon.model import CalendarEvent


@dataclass
class SyncBatch:
    upserted: list[CalendarEvent] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # event ids
    problems: list[str] = field(default_factory=list)  # "event UID: what is wrong"
    state: dict[str, Any] = field(default_factory=dict)  # give back on the next sync
    unchanged: bool = False  # nothing was even read: the calendar said it had not changed


class CalendarSource(ABC):
    """One calendar, read incrementally."""

    name: str

    @abstractmethod
    def sync(self, state: dict[str, Any] | None, now: datetime) -> SyncBatch:
        """The changes since `state` (or everything, if None)."""
