"""What the daemon did, as Prometheus metrics: counted from each pass's report, with the ledger's pending
and unknown sends read at each scrape. A registry of its own, never prometheus_client's global one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from daemon.delivery import ERROR_KINDS
from daemon.errors import LedgerError
from daemon.ledger import Ledger
from daemon.model import Status

if TYPE_CHECKING:  # the console alone serves metrics too, without loading the engine
    from daemon.engine import PassReport

log = logging.getLogger(__name__)

# The `_created` series would double every counter's lines and tell nothing a restart does not.
disable_created_metrics()

__all__ = ["CONTENT_TYPE", "FINAL", "Metrics"]

# The classic text format, which every Prometheus reads; our names need nothing newer.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FINAL = (Status.SENT, Status.FAILED, Status.SKIPPED, Status.STOPPED, Status.UNKNOWN)
# From a prompt taken at once to one that waited out a night, a weekend, or a mail server's outage.
LATENESS_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, 259200)
SYNC_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The daemon's metrics; `passed` counts a pass, `exposition` is what /metrics answers."""

    def __init__(self, rules: Iterable[str] = (), calendars: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sends = Counter(
            "followthrough_sends",
            "Sends that ended, by rule and final status.",
            ["rule", "status"],
            registry=r,
        )
        self.lateness = Histogram(
            "followthrough_send_lateness_seconds",
            "From when a send was due to when it went out.",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.pending = Gauge("followthrough_sends_pending", "Sends planned and not yet sent.", registry=r)
        self.unknown = Gauge(
            "followthrough_sends_unknown",
            "Sends whose outcome a crash left unknown: a person must resolve them.",
            registry=r,
        )
        self.ledger_up = Gauge(
            "followthrough_ledger_up", "1 when the ledger answered the last scrape, else 0.", registry=r
        )
        self.sync_seconds = Histogram(
            "followthrough_calendar_sync_duration_seconds",
            "How long a calendar's sync took, failed ones included.",
            ["calendar"],
            buckets=SYNC_BUCKETS,
            registry=r,
        )
        self.sync_failures = Counter(
            "followthrough_calendar_sync_failures", "Calendar syncs that failed.", ["calendar"], registry=r
        )
        self.last_sync = Gauge(
            "followthrough_calendar_last_sync_timestamp_seconds",
            "When the calendar was last synced without error (Unix time).",
            ["calendar"],
            registry=r,
        )
        self.transport_errors = Counter(
            "followthrough_transport_errors",
            "Errors of the mail transport, by kind: account, held, unknown, transient, permanent.",
            ["kind"],
            registry=r,
        )
        self.pass_failures = Counter(
            "followthrough_pass_failures",
            "Passes that stopped on an error before their end (the ledger's, usually).",
            registry=r,
        )
        self._lock = threading.Lock()
        # Every series known in advance starts at 0, so that rate() sees its first increase.
        for rule in rules:
            for status in FINAL:
                self.sends.labels(rule, status.value)
        for calendar in calendars:
            self.sync_failures.labels(calendar)
        for kind in ERROR_KINDS:
            self.transport_errors.labels(kind)

    def passed(self, report: PassReport, at: datetime) -> None:
        """Count what a pass did (a sync pass, or a wake-up's dispatch alone); `at`: when it started."""
        with self._lock:
            for calendar in report.calendars:
                if calendar.busy:  # another instance synced it: nothing happened here
                    continue
                self.sync_seconds.labels(calendar.name).observe(calendar.seconds)
                if calendar.error:
                    self.sync_failures.labels(calendar.name).inc()
                else:
                    self.last_sync.labels(calendar.name).set(at.timestamp())
            for ended in report.dispatch.ended:
                self.sends.labels(ended.rule, ended.status.value).inc()
                if ended.status is Status.SENT:
                    self.lateness.observe(max((ended.at - ended.due).total_seconds(), 0.0))
            for kind in report.dispatch.transport_errors:
                self.transport_errors.labels(kind).inc()

    def failed(self, error: str, at: datetime) -> None:
        self.pass_failures.inc()

    def exposition(self, ledger: Callable[[], Ledger]) -> bytes:
        """The text format, with the pending and unknown counts as the ledger has them now (`ledger`
        opens it, or gives the one open)."""
        with self._lock:
            try:
                counts = ledger().counts()
            except LedgerError as exc:
                log.warning("metrics: the ledger did not answer: %s", exc)
                self.ledger_up.set(0)
            else:
                self.ledger_up.set(1)
                self.pending.set(counts.get(Status.PLANNED, 0) + counts.get(Status.CLAIMED, 0))
                self.unknown.set(counts.get(Status.UNKNOWN, 0))
            return generate_latest(self.registry)
