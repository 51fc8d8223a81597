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
from collections.abc import Callable
from datetime import UTC, timedelta
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from daemon import clock
from daemon.engine import Engine, PassReport
from daemon.errors import ExitCode

log = logging.getLogger(__name__)

SYNC_JOB = "sync"
WAKE_JOB = "wake-up"


class Daemon:
    """The long-running form of `tick`: the same engine, driven by the clock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
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

    def sync_job(self) -> None:
        self._run(
            lambda: self.engine.tick(clock.now()),
            "sync pass failed; the next one will try again",
            poll_again=True,
        )

    def next_poll(self) -> timedelta:
        """The wait before the next poll: many calendars and instances must not poll in step."""
        return self.interval * random.uniform(1 - self.jitter, 1 + self.jitter)

    def wake_job(self) -> None:
        self._run(
            lambda: PassReport(dispatch=self.engine.dispatcher.dispatch_due(clock.now())),
            "dispatch failed; the next wake-up will try again",
        )

    def _run(self, work: Callable[[], PassReport], failure: str, poll_again: bool = False) -> None:
        """One job: do the work, then arm the wake-up for whatever the ledger says is due next, and
        after a sync, the next sync."""
        with self._job_lock:
            if self._stopping:
                return
            try:
                self._log(work())
            except Exception:
                log.exception(failure)
            finally:
                self._arm_wakeup()
                if poll_again:
                    self.scheduler.add_job(
                        self.sync_job,
                        DateTrigger(run_date=clock.now() + self.next_poll(), timezone=UTC),
                        id=SYNC_JOB,
                        replace_existing=True,
                    )

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


def serve(daemon: Daemon) -> None:
    """Run the daemon until SIGTERM or SIGINT. The first signal lets the message in flight finish and
    stops; a second releases the claims not yet handed over and exits at once (ExitCode.KILLED)."""
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
    daemon.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        daemon.stop(wait=True)
