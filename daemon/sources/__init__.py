"""Calendar sources: each turns one calendar into the changes since its last sync.

The contract every source keeps (tests/integration/test_source_contract.py runs it against each):
- `sync(state, now)` with `state=None` lists every event in the window; with the state it returned
  last time, only what changed since: events added or modified (`upserted`) and ids gone (`removed`).
- An event the source cannot use is skipped, named in `problems` and listed in `unusable`; the rest
  still count, and what was known of it before stays (a broken edit is not a deletion).
- A calendar that cannot be read at all raises `SourceError`, and the caller keeps its old state. So
  does one read incompletely (a download cut short), and one whose changes look like a broken feed
  rather than a person's edits (most of its events gone at once) until `accept_removals` is set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from daemon.model import CalendarEvent


@dataclass
class SyncBatch:
    upserted: list[CalendarEvent] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # event ids
    problems: list[str] = field(default_factory=list)  # "event UID: what is wrong"
    unusable: list[str] = field(default_factory=list)  # UIDs of events skipped as unreadable
    state: dict[str, Any] = field(default_factory=dict)  # give back on the next sync
    unchanged: bool = False  # nothing was even read: the calendar said it had not changed


def repeat_unusable(batch: SyncBatch, earlier: Mapping[str, list[str]]) -> None:
    """Name again the events an earlier sync found unusable and that have not been read since
    (`earlier`: key -> [event id, problem]): a broken event fails every pass until it is fixed, not
    only the pass that first met it, however quiet the calendar is meanwhile."""
    for label, problem in earlier.values():
        if label not in batch.unusable:
            batch.unusable.append(label)
            batch.problems.append(f"{problem} (still, since an earlier sync)")


class CalendarSource(ABC):
    """One calendar, read incrementally."""

    name: str
    # Set by a person (`tick --accept-removals NAME`) to let the next sync remove most of the
    # calendar's events, which a source may otherwise hold as more likely a broken feed.
    accept_removals: bool = False

    @abstractmethod
    def sync(self, state: dict[str, Any] | None, now: datetime) -> SyncBatch:
        """The changes since `state` (or everything, if None)."""
