"""The ledger in trouble: full, and a clock that jumps. Clear errors, nothing lost.

A locked or read-only ledger, as the CLI reports it, is in tests/e2e/test_ledger_faults.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import event

from daemon.errors import LedgerError
from daemon.model import Status
from tests.support.ics import vevent
from tests.support.world import World

T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
CALL = vevent("call-1", T, T + timedelta(hours=1))
PREP, FINAL = "closing-prep:call-1", "closing-final:call-1"


def test_a_full_disk_stops_the_pass_and_loses_nothing(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(CALL)
    with freeze_time(T - timedelta(hours=30)):
        world.tick()
    later = T + timedelta(days=3)
    notes = "Long notes. " * 20_000  # far more than the free room in the database's pages
    world.write(
        CALL, vevent("call-2", later, later + timedelta(hours=1), "Initech #closing", description=notes)
    )
    engine = world.engine()
    # Given a database that cannot grow by a single page (as on a full disk)
    pages = engine.ledger.engine.connect().exec_driver_sql("PRAGMA page_count").scalar()
    engine.ledger.engine.dispose()
    event.listen(
        engine.ledger.engine, "connect", lambda conn, _: conn.execute(f"PRAGMA max_page_count={pages}")
    )
    try:
        with freeze_time(T - timedelta(hours=23)), pytest.raises(LedgerError, match="full"):
            engine.tick(T - timedelta(hours=23))
    finally:
        engine.close()
    # Then, with room again, the new call is planned and the due prompt goes out once.
    with freeze_time(T - timedelta(hours=23)):
        report = world.tick()
    assert [s.key for s in report.dispatch.sent] == [PREP]
    assert world.sends()["closing-prep:call-2"][0] is Status.PLANNED


def test_the_clock_jumping_back_and_forth_sends_each_prompt_once(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(CALL)
    sent: list[str] = []
    for moment in (
        T - timedelta(hours=23),  # prep due: sent
        T - timedelta(hours=26),  # the clock jumps back three hours
        T - timedelta(hours=23, minutes=30),
        T - timedelta(minutes=30),  # forward: the final prompt is due
        T - timedelta(hours=5),  # back again
        T - timedelta(minutes=10),
    ):
        with freeze_time(moment):
            sent += [s.key for s in world.tick().dispatch.sent]
    assert sent == [PREP, FINAL]
    assert {k: v[0] for k, v in world.sends().items() if k in (PREP, FINAL)} == {
        PREP: Status.SENT,
        FINAL: Status.SENT,
    }


def test_a_jump_past_the_call_skips_its_prompts_with_the_reason(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(CALL)
    with freeze_time(T - timedelta(hours=30)):
        world.tick()
    with freeze_time(T + timedelta(days=2)):  # a laptop that slept for two days
        world.tick()
    sends = world.sends()
    assert sends[PREP][0] is Status.SKIPPED and "the call started" in (sends[PREP][1] or "")
    assert sends["outcome-nudge:call-1"][0] is Status.SENT  # still within max_late_days
