"""Readiness: the ledger answers and every calendar synced within three poll intervals; time travels.

A real engine over ICS files and a SQLite ledger, its passes told to the health check as the daemon
tells them; freezegun moves the one clock. Over HTTP, see tests/e2e/test_observe.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time

from daemon import clock
from daemon.engine import Engine
from daemon.errors import LedgerError
from daemon.health import Health
from daemon.ledger import Ledger, open_ledger
from tests.support.ics import vevent
from tests.support.world import World

T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def a_pass(engine: Engine, health: Health) -> None:
    """One pass of the daemon, told to the health check as the scheduler tells it."""
    now = clock.now()
    health.passed(engine.tick(now), now)


def test_ready_once_every_calendar_synced_and_not_when_one_stops_syncing(tmp_path: Path) -> None:
    # Given two calendars, polled every 5 minutes (the default)
    world = World(tmp_path, calendars=("cal", "other"))
    world.write(vevent("call-1", T + 30 * 60 * MINUTE, T + 31 * 60 * MINUTE), name="cal")
    with freeze_time(T) as frozen:
        engine = world.engine()
        try:
            health = Health([s.name for s in engine.sources], engine.settings.schedule.poll_interval)
            ledger = lambda: engine.ledger  # noqa: E731

            # When nothing has synced yet, it is not ready, and says which calendars wait
            before = health.check(ledger, clock.now())
            assert not before.ok
            assert before.text() == "not ready\n"
            assert "[-]calendar cal failed: not synced yet" in before.text(verbose=True)

            # When the first pass has synced both, it is ready
            a_pass(engine, health)
            ready = health.check(ledger, clock.now())
            assert ready.ok, ready.text(verbose=True)
            assert ready.text() == "ok\n"
            assert ready.text(verbose=True).splitlines() == [
                "[+]ledger ok: answers (3 pending, 0 unknown)",  # the call's three prompts
                "[+]calendar cal ok: synced 0s ago",
                "[+]calendar other ok: synced 0s ago",
                "readyz check passed",
            ]

            # When "other" starts failing, passes every 5 minutes keep "cal" fresh; for three poll
            # intervals "other" is still counted as synced
            (tmp_path / "other.ics").write_text("<html><body>Service Unavailable</body></html>")
            for minutes in (5, 10, 15):
                frozen.move_to(T + minutes * MINUTE)
                a_pass(engine, health)
                assert health.check(ledger, clock.now()).ok, minutes

            # Then past three poll intervals without a good sync, it is not ready, naming "other"
            frozen.move_to(T + 16 * MINUTE)
            stale = health.check(ledger, clock.now())
            assert not stale.ok
            lines = stale.text(verbose=True).splitlines()
            assert "[+]calendar cal ok: synced 60s ago" in lines
            assert "[-]calendar other failed: last synced 16m ago, more than 15m, 3 poll intervals" in lines
            assert lines[-1] == "readyz check failed"
            # And its error (a URL may be a feed's secret) is not shown
            assert "Service Unavailable" not in stale.text(verbose=True)

            # When the calendar is readable again, the next pass makes it ready again
            world.write(name="other")
            a_pass(engine, health)
            assert health.check(ledger, clock.now()).ok
        finally:
            engine.close()


def test_not_ready_when_the_ledger_does_not_answer(tmp_path: Path) -> None:
    # Given a ledger that cannot be opened (its folder does not exist)
    health = Health(None, timedelta(minutes=5))  # the console alone: no calendars of its own

    def ledger() -> Ledger:
        return open_ledger(f"sqlite:///{tmp_path / 'missing' / 'followthrough.db'}")

    # When readiness is asked, the ledger check fails, saying so without its path
    try:
        ledger()
    except LedgerError:
        pass
    else:  # the store made the folder: the test's premise does not hold here
        raise AssertionError("expected the ledger to be unreachable")
    readiness = health.check(ledger, T)
    assert not readiness.ok
    assert readiness.text(verbose=True).splitlines() == [
        "[-]ledger failed: does not answer (the log says why)",
        "readyz check failed",
    ]
