"""Whether the daemon is ready: the ledger answers, and every calendar synced within three poll intervals.

The daemon tells it each pass's calendars; `/readyz` asks it. Times come from the one clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from daemon.errors import LedgerError
from daemon.ledger import Ledger
from daemon.model import Status

if TYPE_CHECKING:
    from daemon.engine import PassReport

log = logging.getLogger(__name__)

STALE_AFTER = 3  # poll intervals without a good sync before a calendar makes the daemon unready


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"[+]{self.name} ok: {self.detail}" if self.ok else f"[-]{self.name} failed: {self.detail}"


@dataclass(frozen=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def text(self, verbose: bool = False) -> str:
        """`ok` or `not ready`; verbose, a line a check, then the verdict. Names and ages only, never an
        error's text: a calendar's may hold its URL, and a feed's URL may be its secret."""
        if not verbose:
            return "ok\n" if self.ok else "not ready\n"
        verdict = "readyz check passed" if self.ok else "readyz check failed"
        return "".join(c.line() + "\n" for c in self.checks) + verdict + "\n"


def ago(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Health:
    """The last good sync of each calendar this process syncs; `calendars` None: it syncs none (the
    console on its own), and readiness is the ledger's alone."""

    def __init__(self, calendars: Iterable[str] | None, interval: timedelta) -> None:
        self.calendars = None if calendars is None else list(calendars)
        self.window = interval * STALE_AFTER
        self._synced: dict[str, tuple[datetime, bool]] = {}  # name -> (when, by another instance)
        self._lock = threading.Lock()

    def passed(self, report: PassReport, at: datetime) -> None:
        """A pass started at `at`: each calendar it synced, or another instance was syncing, is fresh."""
        with self._lock:
            for calendar in report.calendars:
                if calendar.error is None:
                    self._synced[calendar.name] = (at, calendar.busy)

    def failed(self, error: str, at: datetime) -> None:
        """A pass that failed whole syncs nothing: its calendars age until one succeeds."""

    def check(self, ledger: Callable[[], Ledger], now: datetime) -> Readiness:
        """`ledger` opens the ledger (or gives the one open) for the check."""
        checks = [self._ledger(ledger)]
        if self.calendars is not None:
            with self._lock:
                synced = dict(self._synced)
            checks += [self._calendar(name, synced.get(name), now) for name in self.calendars]
        return Readiness(tuple(checks))

    @staticmethod
    def _ledger(ledger: Callable[[], Ledger]) -> Check:
        try:
            counts = ledger().counts()
        except LedgerError as exc:
            log.warning("readiness: the ledger does not answer: %s", exc)
            return Check("ledger", False, "does not answer (the log says why)")
        pending = counts.get(Status.PLANNED, 0) + counts.get(Status.CLAIMED, 0)
        return Check("ledger", True, f"answers ({pending} pending, {counts.get(Status.UNKNOWN, 0)} unknown)")

    def _calendar(self, name: str, synced: tuple[datetime, bool] | None, now: datetime) -> Check:
        what = f"calendar {name}"
        if synced is None:
            return Check(what, False, "not synced yet")
        at, elsewhere = synced
        by = " (by another instance)" if elsewhere else ""
        if now - at > self.window:
            limit = f"more than {ago(self.window)}, {STALE_AFTER} poll intervals"
            return Check(what, False, f"last synced {ago(now - at)} ago{by}, {limit}")
        return Check(what, True, f"synced {ago(now - at)} ago{by}")
