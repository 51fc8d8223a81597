"""Wires time: a periodic, jittered sync and a wake-up at the next due send, with APScheduler 3.

It holds no state of its own: after a sleep, a restart or a clock jump, the next job asks the ledger
what is due, so nothing depends on APScheduler's misfire bookkeeping.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from daemon import clock
from daemon.engine import SYNC_LEASE, Engine, PassReport
from daemon.errors import ExitCode

if TYPE_CHECKING:
    from daemon.systemd import Systemd

log = logging.getLogger(__name__)

SYNC_JOB = "sync"
WAKE_JOB = "wake-up"
# A job running longer than this is stuck: by then another instance may take over its calendars' sync.
STUCK_AFTER = SYNC_LEASE


class Observer(Protocol):
    """Told of every job's pass, in the scheduler's thread: the metrics, the health check, systemd."""

    def passed(self, report: PassReport, at: datetime) -> None:
        """A pass that started at `at` ended with this report (a sync, or a wake-up's dispatch alone)."""

    def failed(self, error: str, at: datetime) -> None:
        """A pass that started at `at` stopped on an error (the ledger's, usually)."""


class Daemon:
    """The long-running form of `tick`: the same engine, driven by the clock."""

    def __init__(self, engine: Engine, observers: Sequence[Observer] = ()) -> None:
        self.engine = engine
        self.observers = list(observers)
        schedule = engine.settings.schedule
        self.interval = schedule.poll_interval
        self.jitter = schedule.jitter  # each poll comes after interval × (1 ± jitter), at random
        # One worker: a sync and a dispatch never run at once in one process.
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        # APScheduler 3's shutdown holds its job store lock while it waits for running jobs, so a
        # job that then adds the next wake-up would deadlock it: jobs run under this lock instead,
        # and none starts once stopping is set.
        self._job_lock = threading.Lock()
        self._stopping = False
        self._job_started: float | None = None  # time.monotonic() when the running job began

    def start(self) -> None:
        self.scheduler.add_job(self.sync_job, DateTrigger(run_date=clock.now(), timezone=UTC), id=SYNC_JOB)
        self.scheduler.start()
        log.info(
            "followthrough running: %d calendar(s), sync every %s",
            len(self.engine.sources),
            self.interval,
        )

    def request_stop(self) -> None:
        """Start no new job, and end a dispatch in progress after its message in flight. Only sets
        flags: safe in a signal handler."""
        self._stopping = True
        self.engine.dispatcher.stop()

    def stop(self, wait: bool = True) -> None:
        self.request_stop()
        if wait:
            with self._job_lock:  # let the current job finish, wake-up and all
                pass
            self.release_claims()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        log.info("followthrough stopped")

    def release_claims(self) -> int:
        """This instance's claims not handed over go back to planned: another instance, or the next
        start, sends them at once instead of after the lease."""
        return len(self.engine.dispatcher.release_own("followthrough stopped before"))

    def abandon(self, timeout: float = 5.0) -> None:
        """The hard stop (a second signal), while a job may still run: release what can be released
        within `timeout`. Safe against the job: a claim it is handing over right now is either
        released first, and then not sent, or handed over first, and then left alone."""
        self.request_stop()
        worker = threading.Thread(target=self.release_claims, name="release-claims", daemon=True)
        worker.start()
        worker.join(timeout)

    def healthy(self) -> bool:
        """The scheduler runs, is not stopping, and no job has been running for longer than a job may:
        what the systemd watchdog pings for."""
        started = self._job_started
        stuck = started is not None and time.monotonic() - started > STUCK_AFTER.total_seconds()
        return self.scheduler.running and not self._stopping and not stuck

    def sync_job(self) -> None:
        self._run(self.engine.tick, "sync pass failed; the next one will try again", poll_again=True)

    def next_poll(self) -> timedelta:
        """The wait before the next poll: many calendars and instances must not poll in step."""
        return self.interval * random.uniform(1 - self.jitter, 1 + self.jitter)

    def wake_job(self) -> None:
        self._run(
            lambda now: PassReport(dispatch=self.engine.dispatcher.dispatch_due(now)),
            "dispatch failed; the next wake-up will try again",
        )

    def _run(self, work: Callable[[datetime], PassReport], failure: str, poll_again: bool = False) -> None:
        """One job: do the work, tell the observers, then arm the wake-up for whatever the ledger says
        is due next, and after a sync, the next sync."""
        with self._job_lock:
            if self._stopping:
                return
            now = clock.now()
            self._job_started = time.monotonic()
            try:
                report = work(now)
            except Exception as exc:
                log.exception(failure)
                error = f"{type(exc).__name__}: {exc}"
                self._tell(lambda o: o.failed(error, now))
            else:
                self._log(report)
                self._tell(lambda o: o.passed(report, now))
            finally:
                self._job_started = None
                self._arm_wakeup()
                if poll_again:
                    self.scheduler.add_job(
                        self.sync_job,
                        DateTrigger(run_date=clock.now() + self.next_poll(), timezone=UTC),
                        id=SYNC_JOB,
                        replace_existing=True,
                    )

    def _tell(self, what: Callable[[Observer], None]) -> None:
        for observer in self.observers:
            try:
                what(observer)
            except Exception:  # watching the daemon must never stop it
                log.exception("%s failed to take note of a pass", type(observer).__name__)

    def _arm_wakeup(self) -> None:
        due = self.engine.ledger.next_due()
        if due is None:
            if self.scheduler.get_job(WAKE_JOB):
                self.scheduler.remove_job(WAKE_JOB)
            return
        # Never in the past: a send due "now" is taken a moment later, not lost to misfire rules.
        run_at = max(due, clock.now() + timedelta(milliseconds=10))
        self.scheduler.add_job(
            self.wake_job,
            DateTrigger(run_date=run_at, timezone=UTC),
            id=WAKE_JOB,
            replace_existing=True,
        )
        log.debug("next wake-up at %s", run_at.isoformat())

    @staticmethod
    def _log(report: PassReport) -> None:
        d = report.dispatch
        if d.sent or d.failed or d.retrying or d.skipped or d.stopped:
            log.info(
                "dispatch: %d sent, %d failed, %d to retry, %d skipped, %d stopped",
                len(d.sent),
                len(d.failed),
                len(d.retrying),
                len(d.skipped),
                len(d.stopped),
            )


def serve(daemon: Daemon, systemd: Systemd | None = None) -> None:
    """Run the daemon until SIGTERM or SIGINT. The first signal lets the message in flight finish and
    stops; a second releases the claims not yet handed over and exits at once (ExitCode.KILLED).
    Under systemd (Type=notify), it is told of each pass, pinged while healthy, and told of the stop."""
    stop = threading.Event()
    signals = {"count": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            log.warning("second signal: stopping now, without waiting for the current job")
            daemon.abandon()  # claims not yet handed over go back to planned first
            os._exit(ExitCode.KILLED)
        daemon.request_stop()  # before saying so: once this is logged, no further message goes out
        log.info("signal %s: finishing the message in flight, then stopping (again to force)", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if systemd is not None:
        daemon.observers.append(systemd)
        systemd.start()
    daemon.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        if systemd is not None:
            systemd.stopping()
        daemon.stop(wait=True)
