"""A pass plans its changed events together: the same sends as planning each against its whole deal,
in a few transactions however many events changed, and a pass cut short is finished by the next.

Real ICS files and a real SQLite ledger; chunks made small so that a few dozen events span several.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import event as sqlalchemy_event

from daemon import planner
from daemon.config import load
from daemon.engine import Engine, PassReport
from daemon.errors import LedgerError
from daemon.ledger.abc import PlansWritten
from daemon.ledger.store import SQLAlchemyLedger
from daemon.model import Outcome, Status
from daemon.playbook import classify, plan
from daemon.render import Facts
from tests.support.ics import ALICE, vevent
from tests.support.world import World

T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # Wednesday: the pass runs now
D = timedelta(days=1)
H = timedelta(hours=1)


def deal_events(i: int) -> list[str]:
    """One deal's calendar: a past call tagged with its outcome (or not), a call before the kickoff and
    one after it (neither saying where the customer is), the kickoff in the customer's zone, a
    cancelled call, and an untagged meeting."""
    people = (ALICE, (f"buyer@deal{i}.example", f"Buyer {i}"), (f"cfo@deal{i}.example", f"Cfo {i}"))
    outcome = ("#won", "#lost", "")[i % 3]
    zone = ("Asia/Tokyo", "America/New_York")[i % 2]
    kickoff = T + (i + 3) * D
    return [
        vevent(
            f"past-{i}",
            T - (i % 4 + 1) * D,
            T - (i % 4 + 1) * D + H,
            f"Deal {i} terms #closing {outcome}",
            attendees=people,
        ),
        vevent(
            f"next-{i}", T + (i + 1) * D, T + (i + 1) * D + H, f"Deal {i} review #closing", attendees=people
        ),
        vevent(f"kick-{i}", kickoff, kickoff + H, f"Deal {i} start #kickoff", attendees=people, tzid=zone),
        vevent(
            f"late-{i}", T + (i + 5) * D, T + (i + 5) * D + H, f"Deal {i} renewal #closing", attendees=people
        ),
        vevent(
            f"off-{i}",
            T + 2 * D,
            T + 2 * D + H,
            f"Deal {i} extra #closing",
            attendees=people,
            status="CANCELLED",
        ),
        vevent(f"chat-{i}", T + 4 * D, T + 4 * D + H, f"Deal {i} catch-up", attendees=people),
    ]


def feed(deals: int) -> list[str]:
    return [text for i in range(deals) for text in deal_events(i)]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Chunks of 5 events: the 72 events of 12 deals take 15 of them, a deal's calls in several."""
    monkeypatch.setattr(planner, "CHUNK", 5)
    return 5


def planned(engine: Engine) -> dict[str, tuple[Any, ...]]:
    """The ledger's sends, those due at once already sent: when, to whom, from whom, their subjects."""
    return {
        s.key: (s.due, s.expires, s.to, s.cc, s.sender, s.reply_to, s.subject) for s in engine.ledger.sends()
    }


def planned_one_by_one(engine: Engine, now: datetime) -> dict[str, tuple[Any, ...]]:
    """What the playbook plans for each stored event against its whole deal, with the outcome the
    ledger knows and the subject rendered from the whole email's context: the oracle."""
    expected = {}
    renderer = engine.renderer
    for event_id in engine.ledger.all_event_ids():
        stored = engine.ledger.event(event_id)
        assert stored is not None
        c = classify(stored.event, engine.policy)
        if c is None or c.kind is None:
            continue
        outcome = engine.ledger.outcome(event_id)
        deal = engine.ledger.events_of_deal(c.deal.name)
        for send in plan(stored.event, c, outcome, engine.policy, deal).sends:
            if send.expires is not None and send.expires < now:
                continue
            context = renderer.context(send, Facts(stored.event, deal, outcome), send.due)
            subject = renderer.templates.render_subject(send.template, context, rep=context["rep"]["email"])
            expected[send.key] = (
                send.due,
                send.expires,
                send.to,
                send.cc,
                send.sender,
                send.reply_to,
                subject,
            )
    return expected


def test_a_pass_over_many_deals_plans_what_the_playbook_plans_for_each_event_against_its_deal(
    tmp_path: Path, small_chunks: int
) -> None:
    # Given twelve deals, each with calls before and after a kickoff in the customer's zone, outcomes
    world = World(tmp_path)
    world.write(*feed(12))
    # When one pass plans them all, a few events at a time
    with freeze_time(T):
        report = world.tick()
        engine = world.engine()
        try:
            # Then every send is the one planning each event alone against its whole deal gives
            sends = planned(engine)
            assert sends == planned_one_by_one(engine, T)
            # (the outcomes the tags say, and the customer's mail placed in their kickoff's zone, among them)
            outcomes = {i: o.outcome for i in range(12) if (o := engine.ledger.outcome(f"past-{i}"))}
            assert outcomes == {i: (Outcome.WON, Outcome.LOST)[i % 3] for i in range(12) if i % 3 != 2}
            thursday_9_in_tokyo = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
            assert sends["implementation-intro:past-0"][0] == thursday_9_in_tokyo
            assert engine.ledger.unsettled_events() == []
        finally:
            engine.close()
    assert report.calendars[0].unusable == []


class DiskFailsOnSecondChunk(SQLAlchemyLedger):
    """A real ledger whose disk fails as the second chunk of a pass's plans is written."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.writes = 0

    def write_plans(self, plans: Any, at: datetime, tagged: Any = None) -> PlansWritten:
        self.writes += 1
        if self.writes == 2:
            raise LedgerError(f"the ledger at {self.url}: database or disk is full")
        return super().write_plans(plans, at, tagged)


def test_a_pass_cut_short_mid_planning_is_finished_by_the_next_without_planning_twice(
    tmp_path: Path, small_chunks: int
) -> None:
    world = World(tmp_path)
    world.write(*feed(6))
    settings = load(tmp_path / "followthrough.toml")
    # Given a pass whose ledger fails once the first chunk of plans is committed
    engine = Engine(settings, ledger=DiskFailsOnSecondChunk(settings.store_url))
    with freeze_time(T), pytest.raises(LedgerError, match="full"):
        engine.tick(T)
    # Then what was planned stays, and the rest is known to be unplanned
    left = set(engine.ledger.unsettled_events())
    settled = {e for e in engine.ledger.all_event_ids() if e not in left}
    engine.close()
    assert settled and left
    assert len(settled) <= small_chunks
    # When the next pass runs (the calendar itself unchanged since)
    with freeze_time(T + timedelta(minutes=5)):
        report = world.tick()
    assert report.calendars[0].unchanged
    engine = world.engine()
    try:
        # Then every event is planned, each send once, as one uninterrupted pass plans them
        assert engine.ledger.unsettled_events() == []
        first_plans = Counter(t.key for t in engine.ledger.transitions() if t.from_status is None)
        assert first_plans and max(first_plans.values()) == 1
        assert planned(engine).keys() == planned_one_by_one(engine, T + timedelta(minutes=5)).keys()
    finally:
        engine.close()


@pytest.fixture
def transactions() -> Iterator[Counter[str]]:
    """Every transaction of every ledger opened meanwhile, begun and committed."""
    seen: Counter[str] = Counter()

    def begun(conn: Any) -> None:
        seen["begun"] += 1

    def committed(conn: Any) -> None:
        seen["committed"] += 1

    from sqlalchemy.engine import Engine as SQLEngine

    sqlalchemy_event.listen(SQLEngine, "begin", begun)
    sqlalchemy_event.listen(SQLEngine, "commit", committed)
    yield seen
    sqlalchemy_event.remove(SQLEngine, "begin", begun)
    sqlalchemy_event.remove(SQLEngine, "commit", committed)


def closing_calls(count: int) -> list[str]:
    """Closing calls with as many customers, half of them lost last week, the others next month."""
    calls = []
    for i in range(count):
        people = (ALICE, (f"buyer@c{i}.example", f"Buyer {i}"))
        start = T - 7 * D if i % 2 else T + 30 * D
        title = f"Customer {i} terms #closing" + (" #lost" if i % 2 else "")
        calls.append(vevent(f"call-{i}", start, start + H, title, attendees=people))
    return calls


def test_a_pass_over_400_tagged_calls_takes_no_more_transactions_than_one_over_40(
    tmp_path: Path, transactions: Counter[str]
) -> None:
    counts = {}
    for calls in (40, 400):
        # Given a calendar of tagged closing calls, half of them with an outcome
        (tmp_path / str(calls)).mkdir()
        world = World(tmp_path / str(calls))
        world.write(*closing_calls(calls))
        engine = world.engine()
        try:
            transactions.clear()
            # When its first sync stores and plans them all (sending what is due is another matter)
            with freeze_time(T):
                report = PassReport()
                report.calendars = [engine.sync(source, T, report) for source in engine.sources]
            counts[calls] = dict(transactions)
            assert len(engine.ledger.sends([Status.PLANNED])) >= calls
        finally:
            engine.close()
    # Then ten times the calls take as many transactions: none is per event, or per send
    assert counts[400] == counts[40]
    assert counts[400]["committed"] <= 6
