"""Time travel through the whole pipeline: real ICS files, real SQLite, the outbox transport.

Each test moves the one clock with freezegun and runs passes as a restarted process would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from daemon.engine import policy_digest
from daemon.errors import LedgerError
from daemon.model import Outcome, Status
from tests.support.ics import ALICE, DANA, LEE, vevent
from tests.support.world import World

# Wednesday 2 December 2026, 15:00 UTC: the closing call.
T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
CALL = vevent("call-1", T, T + timedelta(hours=1))
KEY_PREP = "closing-prep:call-1"
KEY_FINAL = "closing-final:call-1"


def test_prep_goes_out_24h_before_and_the_final_prompt_1h_before(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(CALL)
    with freeze_time(T - timedelta(hours=30)) as frozen:
        # Given a closing call 30 hours away, when a pass runs, then nothing is due yet.
        assert world.tick().dispatch.sent == []
        frozen.move_to(T - timedelta(hours=24))
        world.tick()
        assert set(world.outbox()) == {KEY_PREP}
        prep = world.outbox()[KEY_PREP]
        assert prep["To"] == "Alice Moreno <alice@acme.example>"
        assert prep["From"] == "Followthrough <ft@acme.example>"
        frozen.move_to(T - timedelta(minutes=59))
        world.tick()
        assert set(world.outbox()) == {KEY_PREP, KEY_FINAL}


def test_running_the_same_pass_twice_or_restarting_sends_nothing_twice(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(CALL)
    with freeze_time(T - timedelta(hours=2)):
        first = world.tick()
        second = world.tick()  # a fresh engine: as after a restart
        third = world.tick()
    assert [s.key for s in first.dispatch.sent] == [KEY_PREP]
    assert second.dispatch.sent == [] and third.dispatch.sent == []
    assert second.calendars[0].unchanged


def test_a_moved_call_moves_its_pending_prompts(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(CALL)
    with freeze_time(T - timedelta(hours=48)) as frozen:
        world.tick()
        # The call moves two days later before the prep went out.
        later = T + timedelta(days=2)
        world.write(vevent("call-1", later, later + timedelta(hours=1)))
        world.tick()
        status, _, due = world.sends()[KEY_PREP]
        assert (status, due) == (Status.PLANNED, later - timedelta(hours=24))
        frozen.move_to(T - timedelta(hours=23))
        assert world.tick().dispatch.sent == []  # the old time passes quietly
        frozen.move_to(later - timedelta(hours=24))
        assert [s.key for s in world.tick().dispatch.sent] == [KEY_PREP]


def test_sent_mail_is_never_resent_when_the_call_moves_afterwards(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(CALL)
    with freeze_time(T - timedelta(hours=20)):
        world.tick()
        assert KEY_PREP in world.outbox()
        later = T + timedelta(days=7)
        world.write(vevent("call-1", later, later + timedelta(hours=1)))
        world.tick()
    with freeze_time(later - timedelta(hours=24)):
        sent = world.tick().dispatch.sent
    assert KEY_PREP not in [s.key for s in sent]
    assert world.sends()[KEY_PREP][0] is Status.SENT


def test_a_cancelled_or_deleted_call_cancels_its_pending_sends(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(CALL, vevent("call-2", T, T + timedelta(hours=1), "Initech #closing"))
    with freeze_time(T - timedelta(hours=48)):
        world.tick()
        world.write(vevent("call-1", T, T + timedelta(hours=1), status="CANCELLED"))  # call-2 deleted
        world.tick()
    sends = world.sends()
    assert sends[KEY_PREP][:2] == (Status.CANCELLED, "event cancelled")
    assert sends["closing-prep:call-2"][:2] == (Status.CANCELLED, "event deleted from every calendar")
    with freeze_time(T - timedelta(hours=1)):
        assert world.tick().dispatch.sent == []


def test_a_call_booked_an_hour_ahead_gets_its_prompts_at_once(tmp_path: Path) -> None:
    world = World(tmp_path)
    with freeze_time(T - timedelta(minutes=50)):
        world.write(CALL)
        sent = {s.key for s in world.tick().dispatch.sent}
    # Late discovery: both prompts are due and the call has not started.
    assert sent == {KEY_PREP, KEY_FINAL}


def test_a_call_discovered_after_it_started_gets_no_prompts(tmp_path: Path) -> None:
    world = World(tmp_path)
    with freeze_time(T + timedelta(minutes=5)):
        world.write(CALL)
        assert world.tick().dispatch.sent == []
    assert KEY_PREP not in world.sends()


def test_a_daemon_that_slept_through_the_call_skips_the_stale_prompt(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(CALL)
    with freeze_time(T - timedelta(hours=48)) as frozen:
        world.tick()
        frozen.move_to(T + timedelta(minutes=10))  # asleep until after the call started
        world.tick()
    status, reason, _ = world.sends()[KEY_PREP]
    assert status is Status.SKIPPED and "the call started" in (reason or "")


def test_a_won_tag_triggers_handoff_at_once_and_intro_in_business_hours(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(vevent("call-1", T, T + timedelta(hours=1), tzid="America/New_York"))
    with freeze_time(T - timedelta(hours=30)):
        world.tick()
    # Friday 4 December, 23:00 UTC = 18:00 in New York: the rep tags the call #won after hours.
    seen = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)
    with freeze_time(seen) as frozen:
        world.write(
            vevent("call-1", T, T + timedelta(hours=1), "Globex #closing #won", tzid="America/New_York")
        )
        world.tick()
        assert "handoff-brief:call-1" in world.outbox()
        assert "implementation-intro:call-1" not in world.outbox()
        sends = world.sends()
        # No pass ran since the call: the outcome arrived first, so the nudge is moot.
        assert sends["outcome-nudge:call-1"][:2] == (Status.CANCELLED, "outcome recorded: won")
        monday_nine = datetime(2026, 12, 7, 9, 0, tzinfo=ZoneInfo("America/New_York"))
        assert sends["implementation-intro:call-1"][2] == monday_nine
        frozen.move_to(monday_nine)
        world.tick()
    intro = world.outbox()["implementation-intro:call-1"]
    assert intro["From"] == "Alice Moreno <alice@acme.example>"
    assert {a.addr_spec for a in intro["To"].addresses} == {DANA[0], LEE[0]}
    # And the rep, who sends it, is not copied on it; the implementation lead is
    assert {a.addr_spec for a in intro["Cc"].addresses} == {"ivy@acme.example"}


def test_outcome_from_the_command_line_cancels_the_nudge(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(CALL)
    with freeze_time(T + timedelta(minutes=70)):
        world.tick()
        assert world.sends()["outcome-nudge:call-1"][0] is Status.PLANNED
        engine = world.engine()
        engine.record_outcome("call", Outcome.LOST, T + timedelta(minutes=70))  # a unique id prefix
        engine.close()
    sends = world.sends()
    assert sends["outcome-nudge:call-1"][:2] == (Status.CANCELLED, "outcome recorded: lost")
    assert sends["lost-thank-you:call-1"][0] is Status.PLANNED


def test_a_new_meeting_with_a_lost_customer_stops_the_follow_ups(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(vevent("call-1", T, T + timedelta(hours=1), "Globex #closing #lost"))
    with freeze_time(T + timedelta(hours=2)) as frozen:
        world.tick()
        frozen.move_to(T + timedelta(days=2))  # Friday 16:00 in Berlin: business hours
        world.tick()
        assert "lost-thank-you:call-1" in world.outbox()
        # Weeks later Dana books a meeting (organized by her, not even tagged).
        frozen.move_to(T + timedelta(days=30))
        again = T + timedelta(days=35)
        world.write(
            vevent("call-1", T, T + timedelta(hours=1), "Globex #closing #lost"),
            vevent("new-1", again, again + timedelta(hours=1), "Catch-up", organizer=DANA),
        )
        report = world.tick()
    sends = world.sends()
    assert sends["lost-check-in:call-1"][0] is Status.STOPPED
    assert sends["lost-next-year:call-1"][0] is Status.STOPPED
    assert "re-engaged" in (sends["lost-check-in:call-1"][1] or "")
    assert len(report.stopped) == 2


def test_a_pass_cut_short_before_its_re_engagement_stops_makes_them_next_time(tmp_path: Path) -> None:
    # Given a lost deal whose follow-ups are pending
    world = World(tmp_path)
    world.write(vevent("call-1", T, T + timedelta(hours=1), "Globex #closing #lost"))
    with freeze_time(T + timedelta(hours=2)) as frozen:
        world.tick()
        # When the customer books a meeting, and the pass stops on the ledger as it looks for follow-ups
        frozen.move_to(T + timedelta(days=30))
        again = T + timedelta(days=35)
        world.write(
            vevent("call-1", T, T + timedelta(hours=1), "Globex #closing #lost"),
            vevent("new-1", again, again + timedelta(hours=1), "Catch-up", organizer=DANA),
        )
        engine = world.engine()
        engine.ledger.pending_sequences = _locked  # type: ignore[method-assign]
        try:
            with pytest.raises(LedgerError):
                engine.tick(T + timedelta(days=30))
        finally:
            engine.close()
        # Then the meeting is not taken as settled: the next pass stops the follow-ups
        report = world.tick()
    sends = world.sends()
    assert sends["lost-check-in:call-1"][0] is Status.STOPPED
    assert sends["lost-next-year:call-1"][0] is Status.STOPPED
    assert sends["lost-thank-you:call-1"][0] is Status.STOPPED  # not sent yet: the meeting came first
    assert len(report.stopped) == 3


def _locked(*args: object, **kwargs: object) -> NoReturn:
    raise LedgerError("database is locked")


def test_a_suppressed_address_gets_nothing(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(vevent("call-1", T, T + timedelta(hours=1), "Globex #closing #lost", attendees=(ALICE, DANA)))
    with freeze_time(T + timedelta(hours=2)) as frozen:
        world.tick()
        engine = world.engine()
        engine.ledger.suppress(DANA[0], T, "asked to stop")
        engine.close()
        frozen.move_to(T + timedelta(days=2))  # Friday 16:00 in Berlin: business hours
        world.tick()
    assert "lost-thank-you:call-1" not in world.outbox()
    assert world.sends()["lost-thank-you:call-1"][0] is Status.STOPPED


def test_customer_mail_is_not_sent_more_than_max_late_days_late(tmp_path: Path) -> None:
    world = World(tmp_path, extra="[schedule]\nmax_late_days = 2\n")
    world.write(vevent("call-1", T, T + timedelta(hours=1), "Globex #closing #lost"))
    with freeze_time(T + timedelta(hours=2)) as frozen:
        world.tick()
        frozen.move_to(T + timedelta(days=5))  # the daemon was down for days
        world.tick()
    status, reason, _ = world.sends()["lost-thank-you:call-1"]
    assert status is Status.SKIPPED and "too late" in (reason or "")


def test_the_same_meeting_in_two_calendars_is_one_event(tmp_path: Path) -> None:
    world = World(tmp_path, calendars=("alice", "ivy"))
    world.write(CALL, name="alice")
    world.write(CALL, name="ivy")
    with freeze_time(T - timedelta(hours=2)):
        report = world.tick()
        assert [s.key for s in report.dispatch.sent] == [KEY_PREP]
        assert (report.calendars[0].new, report.calendars[1].new) == (1, 0)
        # Gone from one calendar only: still there. Gone from both: cancelled.
        world.write(name="alice")
        world.tick()
        assert world.sends()[KEY_FINAL][0] is Status.PLANNED
        world.write(name="ivy")
        world.tick()
    assert world.sends()[KEY_FINAL][0] is Status.CANCELLED


def test_a_weekly_call_keeps_its_local_time_across_the_dst_change(tmp_path: Path) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    first = datetime(2027, 3, 15, 10, 0, tzinfo=berlin)  # CET, UTC+1
    world = World(tmp_path)
    world.write(
        vevent(
            "weekly",
            first,
            first + timedelta(hours=1),
            tzid="Europe/Berlin",
            extra="RRULE:FREQ=WEEKLY;COUNT=3",
        )
    )
    with freeze_time(first - timedelta(days=2)):
        world.tick()
    due = {k: v[2] for k, v in world.sends().items() if k.startswith("closing-prep:")}
    assert sorted(due.values()) == [
        datetime(2027, 3, 14, 9, 0, tzinfo=UTC),  # Sunday 10:00 CET
        datetime(2027, 3, 21, 9, 0, tzinfo=UTC),
        datetime(2027, 3, 28, 8, 0, tzinfo=UTC),  # 10:00 CEST on the day clocks go forward
    ]
    assert sorted(due) == [
        "closing-prep:weekly/20270315T090000Z",
        "closing-prep:weekly/20270322T090000Z",
        "closing-prep:weekly/20270329T080000Z",
    ]


def test_an_event_organized_outside_the_company_triggers_nothing(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(vevent("spam", T, T + timedelta(hours=1), "Sign now #closing #won", organizer=DANA))
    with freeze_time(T + timedelta(hours=3)):
        world.tick()
    assert world.sends() == {} and world.outbox() == {}


def test_edited_rules_apply_to_events_already_known(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(CALL)
    with freeze_time(T - timedelta(hours=72)):
        world.tick()
        config = tmp_path / "followthrough.toml"
        config.write_text(
            config.read_text() + '\n[[rules]]\nname = "closing-prep"\noffset = "-48h"\n', encoding="utf-8"
        )
        world.tick()
    assert world.sends()[KEY_PREP][2] == T - timedelta(hours=48)


def test_edited_rules_that_fail_for_an_event_are_applied_again_next_pass(tmp_path: Path) -> None:
    # Given a closing call planned under the first rules
    world = World(tmp_path)
    world.write(vevent("call-1", T, T + timedelta(hours=1), "Globex #closing"))
    with freeze_time(T - timedelta(days=3)):
        world.tick()
        # When the rules are edited, and planning the call under them fails once
        config = tmp_path / "followthrough.toml"
        config.write_text(config.read_text(encoding="utf-8") + "\n[schedule]\nmax_late_days = 2\n", "utf-8")
        engine = world.engine()
        plan = engine.planner._plan

        def fails_once(event_id: str, *args: Any) -> Any:
            engine.planner._plan = plan  # type: ignore[method-assign]
            raise RuntimeError("a surprise")

        engine.planner._plan = fails_once  # type: ignore[method-assign]
        try:
            engine.tick(T - timedelta(days=3))
            applied_first = engine.ledger.get_meta("policy") == policy_digest(engine.policy)
        finally:
            engine.close()
        # Then the edit is not taken as done, and the next pass applies it
        world.tick()
        engine = world.engine()
        try:
            applied_next = engine.ledger.get_meta("policy") == policy_digest(engine.policy)
        finally:
            engine.close()
    assert not applied_first
    assert applied_next
