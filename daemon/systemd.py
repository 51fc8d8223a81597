"""Tells systemd how the daemon is doing (Type=notify): READY=1 after the first sync, STATUS= after each
pass, WATCHDOG=1 while the scheduler is healthy, STOPPING=1 at shutdown. Silent without $NOTIFY_SOCKET.

The protocol is one datagram of `KEY=value` lines to a Unix socket (sd_notify(3)), spoken here with the
standard library: no package to build against libsystemd, nor an unmaintained one, for ten lines.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from daemon.errors import LedgerError
from daemon.ledger import Ledger
from daemon.model import Status

if TYPE_CHECKING:
    from daemon.engine import PassReport

log = logging.getLogger(__name__)


class Notifier:
    """The notify socket systemd gave (`NOTIFY_SOCKET`: a path, or `@name` in the abstract namespace)
    and its watchdog's period (`WATCHDOG_USEC`, for this process when `WATCHDOG_PID` names it)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        address = environ.get("NOTIFY_SOCKET") or None
        if address is not None and not address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET=%s is not a Unix socket: systemd is not told how it goes", address)
            address = None
        usec: int | None = None
        pid = environ.get("WATCHDOG_PID")
        if environ.get("WATCHDOG_USEC") and (not pid or pid == str(os.getpid())):
            try:
                usec = int(environ["WATCHDOG_USEC"]) or None
            except ValueError:
                log.warning("WATCHDOG_USEC=%s is not a number: no watchdog pings", environ["WATCHDOG_USEC"])
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def ping_every(self) -> float | None:
        """Seconds between watchdog pings: half the watchdog's period, as sd_watchdog_enabled(3) advises."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def send(self, *fields: str) -> bool:
        """One datagram of `KEY=value` lines; False (and one warning) when it cannot go."""
        if self.address is None:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall("\n".join(fields).encode("utf-8"))
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", status_field(status))

    def status(self, status: str) -> bool:
        return self.send(status_field(status))

    def ping(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", status_field("stopping: finishing the message in flight"))


def status_field(text: str) -> str:
    """STATUS= on one line: a new line would start another field."""
    return "STATUS=" + " ".join(text.split())


def utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def summary(report: PassReport, at: datetime, counts: Mapping[Status, int] | None) -> str:
    """The pass in one line, for `systemctl status`: its calendars, what it sent, what waits."""
    parts = [f"last pass {utc(at)}"]
    if report.calendars:
        failing = sum(1 for c in report.calendars if c.error)
        parts.append(f"{len(report.calendars) - failing} calendar(s) ok, {failing} failing")
    d = report.dispatch
    parts.append(f"{len(d.sent)} sent, {len(d.failed)} failed, {len(d.retrying)} to retry")
    if d.halted:
        parts.append("sending stopped: the mail server refused our account")
    if counts is not None:
        pending = counts.get(Status.PLANNED, 0) + counts.get(Status.CLAIMED, 0)
        parts.append(f"{pending} pending, {counts.get(Status.UNKNOWN, 0)} unknown")
    return "; ".join(parts)


class Systemd:
    """The daemon's side of Type=notify: told of each pass (see scheduler.Observer), pings the watchdog
    from a thread of its own while `healthy()` holds."""

    def __init__(self, notifier: Notifier, ledger: Ledger, healthy: Callable[[], bool]) -> None:
        self.notifier = notifier
        self.ledger = ledger
        self.healthy = healthy
        self._ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        every = self.notifier.ping_every
        if self.notifier.enabled and every is not None:
            self._thread = threading.Thread(target=self._watchdog, args=(every,), name="watchdog")
            self._thread.daemon = True
            self._thread.start()

    def _watchdog(self, every: float) -> None:
        said = False
        while not self._stop.wait(every):
            if self.healthy():
                self.notifier.ping()
                said = False
            elif not said:  # no ping: if it lasts, systemd restarts the daemon (WatchdogSec=)
                log.warning("watchdog: the scheduler is stuck or stopped; systemd is no longer pinged")
                said = True

    def passed(self, report: PassReport, at: datetime) -> None:
        if not self.notifier.enabled:
            return
        try:
            counts: dict[Status, int] | None = self.ledger.counts()
        except LedgerError:
            counts = None
        line = summary(report, at, counts)
        if self._ready:
            self.notifier.status(line)
        else:  # the first pass is the first sync: the daemon now knows its calendars
            self._ready = self.notifier.ready(line)

    def failed(self, error: str, at: datetime) -> None:
        self.notifier.status(f"last pass {utc(at)} failed: {error}")

    def stopping(self) -> None:
        self._stop.set()
        self.notifier.stopping()
