"""The daemon's clock: APScheduler wakes at the next due send and catches up from the ledger.

APScheduler's thread sleeps in real time, so after moving the frozen clock the test wakes the
scheduler (`scheduler.wakeup()`), then waits (bounded) for what the pass does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time

from daemon.config import load
from daemon.engine import Engine
from daemon.scheduler import SYNC_JOB, WAKE_JOB, Daemon
from tests.support.ics import vevent
from tests.support.world import World

T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    # Counted in sleeps, not clock readings: the clock is frozen, time.sleep is real.
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("the scheduler did not get there in time")


def next_wake(daemon: Daemon) -> datetime | None:
    job = daemon.scheduler.get_job(WAKE_JOB)  # None while the wake-up job itself runs
    return job.next_run_time if job else None


def next_poll(daemon: Daemon) -> datetime:
    job = daemon.scheduler.get_job(SYNC_JOB)  # the first sync's job is gone until it adds the next
    return job.next_run_time if job else datetime.min.replace(tzinfo=UTC)


def test_daemon_syncs_at_start_then_wakes_for_each_due_send(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(vevent("call-1", T, T + timedelta(hours=1)))
    with freeze_time(T - timedelta(hours=30)) as frozen:
        daemon = Daemon(Engine(load(tmp_path / "followthrough.toml")))
        daemon.start()
        try:
            # Given the first sync has run, the wake-up is armed for the prep, 24 h before the call.
            start = T - timedelta(hours=30)
            wait_for(lambda: next_wake(daemon) == T - timedelta(hours=24) and next_poll(daemon) > start)
            # and the next poll is 5 minutes away, give or take the 25% jitter
            poll = next_poll(daemon) - start
            assert timedelta(minutes=3.75) <= poll <= timedelta(minutes=6.25)
            assert world.outbox() == {}
            # When the clock reaches it, the prep goes out, and the next wake-up is the final prompt.
            frozen.move_to(T - timedelta(hours=24))
            daemon.scheduler.wakeup()
            wait_for(lambda: "closing-prep:call-1" in world.outbox())
            wait_for(lambda: next_wake(daemon) == T - timedelta(hours=1))
            # A clock jump far past the final prompt: it catches up from the ledger, the call has not
            # started yet, so it is still sent.
            frozen.move_to(T - timedelta(minutes=5))
            daemon.scheduler.wakeup()
            wait_for(lambda: "closing-final:call-1" in world.outbox())
        finally:
            daemon.stop()


def test_polls_are_spread_by_the_jitter_both_ways(tmp_path: Path) -> None:
    World(tmp_path)
    daemon = Daemon(Engine(load(tmp_path / "followthrough.toml")))
    waits = [daemon.next_poll() for _ in range(400)]
    # Given the default ±25% on a 5-minute poll, the waits cover both sides of 5 minutes, within bounds
    assert min(waits) >= timedelta(minutes=3.75) and max(waits) <= timedelta(minutes=6.25)
    assert min(waits) < timedelta(minutes=4.5) and max(waits) > timedelta(minutes=5.5)
