"""The ledger's contract, held to on SQLite and on a real PostgreSQL server alike.

Every test runs twice: against a SQLite file in tmp_path and against a fresh PostgreSQL database. Time is
always given explicitly; two `Ledger` objects on one store are two engines, so two connections, as two
processes of followthrough would have.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import pytest
from sqlalchemy import Column, MetaData, Table, create_engine, insert

from daemon.errors import LedgerError
from daemon.ledger import SCHEMA_VERSION, CalendarChanges, ClaimTerms, EventPlan, Filing, Ledger
from daemon.ledger import open_ledger as open_store
from daemon.ledger import schema as ledger_schema
from daemon.ledger.base import CHUNK
from daemon.ledger.moves import Delivered, Failed, PutOff, Retry, Sent, Skipped, Unknown
from daemon.model import Attendee, Audience, CalendarEvent, Outcome, Person, PlannedSend, Status

T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # the call in most tests: Wednesday 2 December 2026, 15:00
H = timedelta(hours=1)
LEASE = timedelta(seconds=30)
CLAIM = ClaimTerms(LEASE)  # a claim by no instance in particular
SYNC_TTL = timedelta(minutes=15)
ALICE = Person("alice@acme.example", "Alice Moreno")
DANA = Person("dana@globex.com", "Dana Fox")

OpenLedger = Callable[[], Ledger]
R = TypeVar("R")


@pytest.fixture
def open_ledger(store_url: str) -> Iterator[OpenLedger]:
    """Open a new `Ledger` on the store (a new engine: a new connection); all are closed afterwards."""
    opened: list[Ledger] = []

    def make() -> Ledger:
        ledger = open_store(store_url)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


def prompt(event_id: str, rule: str, due: datetime, expires: datetime | None = None) -> PlannedSend:
    """A prompt to the rep, as the playbook plans one."""
    return PlannedSend(
        key=f"{rule}:{event_id}",
        rule=rule,
        event_id=event_id,
        deal="globex.com",
        due=due,
        expires=expires,
        sender=None,
        reply_to=None,
        to=(ALICE,),
        cc=(),
        audience=Audience.REP,
        template=rule,
    )


def call_plan(event_id: str, start: datetime) -> dict[str, PlannedSend]:
    """The three prompts of a closing call starting at `start`, by rule."""
    return {
        "closing-prep": prompt(event_id, "closing-prep", start - 24 * H, expires=start),
        "closing-final": prompt(event_id, "closing-final", start - H, expires=start),
        "outcome-nudge": prompt(event_id, "outcome-nudge", start + 3 * H, expires=start + 3 * H + 72 * H),
    }


def plan(ledger: Ledger, *sends: PlannedSend, at: datetime) -> None:
    """Store these sends, one reconcile per event, as the engine does after a sync."""
    by_event: dict[str, list[PlannedSend]] = {}
    for send in sends:
        by_event.setdefault(send.event_id, []).append(send)
    for event_id, planned in by_event.items():
        ledger.reconcile(EventPlan(event_id, planned), at)


def status(ledger: Ledger, key: str) -> Status:
    record = ledger.send(key)
    assert record is not None, f"{key} is not in the ledger"
    return record.status


def delivered(at: datetime) -> Delivered:
    """What a delivery to every recipient leaves on its send."""
    return Delivered(at, "Prep: Globex terms", "<test@acme.example>", {})


def deliver(ledger: Ledger, key: str, now: datetime) -> None:
    """What a dispatcher does for one due send: claim it, mark it handed over, record it sent."""
    claimed = {s.key: s for s in ledger.claim_due(now, CLAIM)}
    assert key in claimed, f"{key} was not claimable at {now}"
    attempt = claimed[key].attempt_id
    assert attempt is not None
    assert ledger.mark_handed(key, attempt, now, LEASE)
    assert ledger.record(key, attempt, Sent(None, delivered(now)), now)


def at_once(*jobs: Callable[[], R]) -> tuple[list[R], list[BaseException]]:
    """Run each job in a thread of its own, all released at the same moment; results and errors."""
    release = threading.Barrier(len(jobs))
    results: dict[int, R] = {}
    errors: list[BaseException] = []

    def run(index: int, job: Callable[[], R]) -> None:
        try:
            release.wait(timeout=30)
            results[index] = job()
        except BaseException as exc:  # handed to the test's own thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "still running after 120 s"
    return [results[i] for i in sorted(results)], errors


# -- reconcile and transitions ------------------------------------------------------------------
def test_reconcile_plans_updates_and_cancels_but_never_touches_sent_mail(open_ledger: OpenLedger) -> None:
    ledger = open_ledger()
    first = call_plan("call-1", T)
    # Given a closing call planned 30 hours ahead
    counts = ledger.reconcile(EventPlan("call-1", [*first.values()]), T - 30 * H)
    assert counts == {"planned": 3, "updated": 0, "cancelled": 0}
    assert {s.key: s.status for s in ledger.sends()} == {s.key: Status.PLANNED for s in first.values()}
    # And its prep prompt went out
    deliver(ledger, "closing-prep:call-1", T - 23 * H)

    # When the call moves two hours later and an outcome drops the nudge
    moved = call_plan("call-1", T + 2 * H)
    dropped = {"outcome-nudge:call-1": "outcome recorded: won"}
    without_nudge = EventPlan("call-1", [moved["closing-prep"], moved["closing-final"]], dropped=dropped)
    at = T - 22 * H
    counts = ledger.reconcile(without_nudge, at)

    # Then the final prompt follows the call, the nudge is cancelled with the reason, and the sent prep
    # keeps its status and its original due time
    assert counts == {"planned": 0, "updated": 1, "cancelled": 1}
    final = ledger.send("closing-final:call-1")
    nudge = ledger.send("outcome-nudge:call-1")
    prep = ledger.send("closing-prep:call-1")
    assert final is not None and nudge is not None and prep is not None
    assert (final.status, final.due) == (Status.PLANNED, T + H)
    assert (nudge.status, nudge.reason) == (Status.CANCELLED, "outcome recorded: won")
    assert (prep.status, prep.due, prep.sent_at) == (Status.SENT, T - 24 * H, T - 23 * H)

    # And the same plan again changes nothing
    again = ledger.reconcile(without_nudge, at)
    assert again == {"planned": 0, "updated": 0, "cancelled": 0}

    # When the nudge applies again, it is planned again under the same key
    counts = ledger.reconcile(EventPlan("call-1", [*moved.values()]), T - 21 * H)
    assert counts == {"planned": 0, "updated": 1, "cancelled": 0}
    nudge = ledger.send("outcome-nudge:call-1")
    assert nudge is not None and (nudge.status, nudge.reason) == (Status.PLANNED, None)

    # And when the event is deleted, every pending send is cancelled, and the sent one stays sent
    counts = ledger.reconcile(EventPlan("call-1", cancel_all_reason="event deleted"), T - 20 * H)
    assert counts == {"planned": 0, "updated": 0, "cancelled": 2}
    assert {s.key: (s.status, s.reason) for s in ledger.sends()} == {
        "closing-prep:call-1": (Status.SENT, None),
        "closing-final:call-1": (Status.CANCELLED, "event deleted"),
        "outcome-nudge:call-1": (Status.CANCELLED, "event deleted"),
    }


def test_every_move_of_a_send_is_written_to_transitions(open_ledger: OpenLedger) -> None:
    ledger = open_ledger()
    first = call_plan("call-1", T)
    moved = call_plan("call-1", T + 2 * H)
    # Given a call planned, its prep sent, then moved, its nudge cancelled and brought back
    ledger.reconcile(EventPlan("call-1", [*first.values()]), T - 30 * H)
    deliver(ledger, "closing-prep:call-1", T - 23 * H)
    ledger.reconcile(EventPlan("call-1", [moved["closing-prep"], moved["closing-final"]]), T - 22 * H)
    ledger.reconcile(EventPlan("call-1", [*moved.values()]), T - 21 * H)

    # Then each send's transitions tell its whole life, in order, with times and reasons
    def life(key: str) -> list[tuple[str | None, str, datetime, str | None]]:
        return [(t.from_status, t.to_status, t.at, t.reason) for t in ledger.transitions(key)]

    assert life("closing-prep:call-1") == [
        (None, "planned", T - 30 * H, f"due {(T - 24 * H).isoformat()}"),
        ("planned", "claimed", T - 23 * H, "claimed"),
        ("claimed", "sent", T - 23 * H, None),
    ]
    assert life("closing-final:call-1") == [
        (None, "planned", T - 30 * H, f"due {(T - H).isoformat()}"),
        ("planned", "planned", T - 22 * H, f"moved to {(T + H).isoformat()}"),
    ]
    assert life("outcome-nudge:call-1") == [
        (None, "planned", T - 30 * H, f"due {(T + 3 * H).isoformat()}"),
        ("planned", "cancelled", T - 22 * H, "rule no longer applies"),
        ("cancelled", "planned", T - 21 * H, "moved to " + (T + 5 * H).isoformat()),
    ]
    # And every send's last transition is where it is now
    for send in ledger.sends():
        assert ledger.transitions(send.key)[-1].to_status == send.status.value


# -- claiming -------------------------------------------------------------------------------------
def test_two_instances_claiming_at_once_share_the_due_sends_without_overlap(open_ledger: OpenLedger) -> None:
    # Given 200 sends due now
    setup = open_ledger()
    now = T - 23 * H
    plan(setup, *(prompt(f"call-{i:03}", "closing-prep", T - 24 * H, expires=T) for i in range(200)), at=now)
    everything = {s.key for s in setup.sends()}
    assert len(everything) == 200

    # When two instances (two engines: two connections) claim in small batches at the same moment
    def claim_all(ledger: Ledger) -> Callable[[], list[str]]:
        def claim() -> list[str]:
            keys: list[str] = []
            while batch := ledger.claim_due(now, ClaimTerms(LEASE, limit=10)):
                keys += [s.key for s in batch]
            return keys

        return claim

    claimed, errors = at_once(claim_all(open_ledger()), claim_all(open_ledger()))
    assert not errors, errors

    # Then no send was claimed twice, and every due send was claimed by one of them
    first, second = Counter(claimed[0]), Counter(claimed[1])
    assert max((first + second).values()) == 1, "a send was claimed more than once"
    assert set(first) | set(second) == everything
    assert {s.status for s in setup.sends()} == {Status.CLAIMED}
    claims = [t for t in setup.transitions() if t.to_status == "claimed"]
    assert len(claims) == 200


def test_a_claim_that_expired_before_being_handed_over_is_claimed_again(open_ledger: OpenLedger) -> None:
    first, second = open_ledger(), open_ledger()
    now = T - 23 * H
    plan(first, prompt("call-1", "closing-prep", T - 24 * H, expires=T), at=now)
    # Given an instance claimed the send, then stopped before handing it to the mail server
    [taken] = first.claim_due(now, CLAIM)
    # When another instance looks while the lease still runs, it gets nothing
    assert second.claim_due(now + LEASE - timedelta(seconds=1), CLAIM) == []
    # Then once the lease has run out, it takes the send, with a new attempt
    later = now + LEASE + timedelta(seconds=1)
    [again] = second.claim_due(later, CLAIM)
    assert again.key == taken.key
    assert again.attempt_id != taken.attempt_id
    assert again.attempts == 2
    assert [t.reason for t in second.transitions(taken.key)][-1] == "claimed again: lease expired"
    assert second.orphans(later) == []


def test_a_send_handed_over_then_left_is_an_orphan_and_never_claimed_again(open_ledger: OpenLedger) -> None:
    first, second = open_ledger(), open_ledger()
    now = T - 23 * H
    plan(first, prompt("call-1", "closing-prep", T - 24 * H, expires=T), at=now)
    # Given an instance claimed the send and recorded handing it to the mail server, then stopped
    [taken] = first.claim_due(now, CLAIM)
    assert taken.attempt_id is not None
    handed = now + timedelta(seconds=5)
    assert first.mark_handed(taken.key, taken.attempt_id, handed, LEASE)
    # When its lease still runs, it is neither an orphan nor claimable
    assert second.orphans(handed + LEASE - timedelta(seconds=1)) == []
    # Then once the lease has run out it is an orphan (the mail may be out), and no claim takes it
    later = handed + LEASE + timedelta(seconds=1)
    [orphan] = second.orphans(later)
    assert (orphan.key, orphan.attempt_id, orphan.handed_at) == (taken.key, taken.attempt_id, handed)
    assert second.claim_due(later, CLAIM) == []
    assert status(second, taken.key) is Status.CLAIMED


def test_mark_handed_refuses_a_claim_another_instance_took_over(open_ledger: OpenLedger) -> None:
    slow, other = open_ledger(), open_ledger()
    now = T - 23 * H
    plan(slow, prompt("call-1", "closing-prep", T - 24 * H, expires=T), at=now)
    # Given a slow instance's claim ran out and another instance claimed the send again
    [mine] = slow.claim_due(now, CLAIM)
    later = now + LEASE + timedelta(seconds=1)
    [theirs] = other.claim_due(later, CLAIM)
    assert mine.attempt_id is not None and theirs.attempt_id is not None
    # When the slow one tries to hand it over, it is told no; nor may it record a result
    assert not slow.mark_handed(mine.key, mine.attempt_id, later, LEASE)
    assert not slow.record(mine.key, mine.attempt_id, Sent(None, delivered(later)), later)
    # Then the send is the other instance's to hand over and finish
    assert other.mark_handed(theirs.key, theirs.attempt_id, later, LEASE)
    assert other.record(theirs.key, theirs.attempt_id, Sent(None, delivered(later)), later)
    record = other.send(mine.key)
    assert record is not None and (record.status, record.attempt_id) == (Status.SENT, theirs.attempt_id)


def test_a_claim_records_its_owner_until_the_send_is_finished(open_ledger: OpenLedger) -> None:
    ledger = open_ledger()
    now = T - 23 * H
    plan(ledger, prompt("call-1", "closing-prep", T - 24 * H, expires=T), at=now)
    # When an instance claims a due send, the claim names it, and how long it holds it
    [claimed] = ledger.claim_due(now, ClaimTerms(LEASE, owner="host-a:101:aaaa"))
    assert (claimed.claimed_by, claimed.lease_until) == ("host-a:101:aaaa", now + LEASE)
    assert ledger.claim_owners() == {"host-a:101:aaaa"}
    # Then once the send is finished, no one holds it any more
    assert claimed.attempt_id is not None
    assert ledger.record(claimed.key, claimed.attempt_id, Sent(None, delivered(now)), now)
    record = ledger.send(claimed.key)
    assert record is not None and (record.claimed_by, record.lease_until) == (None, None)
    assert ledger.claim_owners() == set()


def test_a_dead_instances_claims_are_taken_at_once_handed_ones_as_orphans(open_ledger: OpenLedger) -> None:
    dead, alive = open_ledger(), open_ledger()
    now = T - 23 * H
    plan(
        dead,
        *(prompt(f"call-{i}", "closing-prep", T - 24 * H + i * timedelta(minutes=1)) for i in range(3)),
        at=now,
    )
    # Given an instance claimed three sends and handed the first to the mail server, then died
    first, second, third = dead.claim_due(now, ClaimTerms(LEASE, owner="host-a:101:aaaa"))
    assert first.attempt_id is not None
    assert dead.mark_handed(first.key, first.attempt_id, now, LEASE)
    soon = now + timedelta(seconds=1)  # long before the lease runs out
    unaware = ClaimTerms(LEASE, owner="host-a:202:bbbb")
    aware = replace(unaware, from_dead=("host-a:101:aaaa",))
    # When another instance does not know it is dead, it waits for the lease
    assert alive.claim_due(soon, unaware) == []
    assert alive.orphans(soon) == []
    # Then once it knows, it takes the claims not handed over at once, saying why
    taken = alive.claim_due(soon, aware)
    assert sorted(s.key for s in taken) == sorted([second.key, third.key])
    assert {s.claimed_by for s in taken} == {"host-a:202:bbbb"}
    assert alive.transitions(second.key)[-1].reason == "claimed again: host-a:101:aaaa is no longer running"
    # And the one handed over is an orphan at once (it may have gone out), never claimed again
    [orphan] = alive.orphans(soon, from_dead=["host-a:101:aaaa"])
    assert (orphan.key, orphan.handed_at) == (first.key, now)
    assert alive.claim_due(soon, aware) == []
    # And an instance never treats its own claims as a dead one's
    assert alive.claim_due(soon, replace(unaware, from_dead=("host-a:202:bbbb",))) == []


def test_released_claims_are_due_again_at_once_and_handed_ones_are_never_released(
    open_ledger: OpenLedger,
) -> None:
    stopping, other = open_ledger(), open_ledger()
    now = T - 23 * H
    plan(
        stopping,
        *(prompt(f"call-{i}", "closing-prep", T - 24 * H + i * timedelta(minutes=1)) for i in range(4)),
        at=now,
    )
    # Given an instance claimed four sends and handed the first to the mail server
    first, second, third, fourth = stopping.claim_due(now, ClaimTerms(LEASE, owner="host-a:101:aaaa"))
    assert first.attempt_id is not None and second.attempt_id is not None
    assert stopping.mark_handed(first.key, first.attempt_id, now, LEASE)
    # When it stops, releasing its claims
    released = stopping.release_claims(now, "released: stopped before sending it", owner="host-a:101:aaaa")
    # Then those not handed over are planned again, as if never claimed, with the reason
    assert sorted(released) == sorted([second.key, third.key, fourth.key])
    for key in released:
        record = stopping.send(key)
        assert record is not None
        assert (record.status, record.attempts, record.claimed_by, record.attempt_id) == (
            Status.PLANNED,
            0,
            None,
            None,
        )
        assert stopping.transitions(key)[-1].reason == "released: stopped before sending it"
    # And the handed one is left as it was: it may be out, so only the orphan rules may settle it
    record = stopping.send(first.key)
    assert record is not None and (record.status, record.claimed_by) == (Status.CLAIMED, "host-a:101:aaaa")
    # And another instance sends them at once, without waiting for the lease
    taken = other.claim_due(now, ClaimTerms(LEASE, owner="host-a:202:bbbb"))
    assert sorted(s.key for s in taken) == sorted(released)
    # And the stopping instance can no longer hand one over under its old claim
    assert not stopping.mark_handed(second.key, second.attempt_id, now, LEASE)


def test_release_by_attempt_touches_only_those_attempts(open_ledger: OpenLedger) -> None:
    ledger = open_ledger()
    now = T - 23 * H
    plan(
        ledger,
        *(prompt(f"call-{i}", "closing-prep", T - 24 * H + i * timedelta(minutes=1)) for i in range(3)),
        at=now,
    )
    first, second, third = ledger.claim_due(now, ClaimTerms(LEASE, owner="host-a:101:aaaa"))
    assert first.attempt_id is not None and second.attempt_id is not None
    # Given the first was sent, when the pass releases its batch, only the one still claimed moves
    assert ledger.mark_handed(first.key, first.attempt_id, now, LEASE)
    assert ledger.record(first.key, first.attempt_id, Sent(None, delivered(now)), now)
    assert ledger.release_claims(now, "released", attempt_ids=[first.attempt_id, second.attempt_id]) == [
        second.key
    ]
    assert [status(ledger, s.key) for s in (first, second, third)] == [
        Status.SENT,
        Status.PLANNED,
        Status.CLAIMED,
    ]
    # And asking to release nothing releases nothing
    assert ledger.release_claims(now, "released") == []


# -- the calendar sync lease --------------------------------------------------------------------
def test_the_sync_lease_is_exclusive_until_it_expires_or_is_released(open_ledger: OpenLedger) -> None:
    a, b = open_ledger(), open_ledger()
    # Given instance A takes the lease on a calendar
    assert a.take_sync_lease("sales", "a", T, SYNC_TTL)
    # Then B cannot take it while it runs, and A may renew it
    assert not b.take_sync_lease("sales", "b", T + timedelta(minutes=1), SYNC_TTL)
    assert a.take_sync_lease("sales", "a", T + timedelta(minutes=5), SYNC_TTL)
    assert not b.take_sync_lease("sales", "b", T + timedelta(minutes=16), SYNC_TTL)  # renewed: until 20
    # And another calendar is not held by it
    assert b.take_sync_lease("support", "b", T + timedelta(minutes=16), SYNC_TTL)
    # When A's renewed lease runs out, B takes it, and A cannot
    assert b.take_sync_lease("sales", "b", T + timedelta(minutes=21), SYNC_TTL)
    assert not a.take_sync_lease("sales", "a", T + timedelta(minutes=21), SYNC_TTL)
    # And only the holder can release it
    a.release_sync_lease("sales", "a")
    assert not a.take_sync_lease("sales", "a", T + timedelta(minutes=22), SYNC_TTL)
    b.release_sync_lease("sales", "b")
    assert a.take_sync_lease("sales", "a", T + timedelta(minutes=22), SYNC_TTL)


def test_two_instances_taking_a_new_calendars_sync_lease_at_once_get_it_once(open_ledger: OpenLedger) -> None:
    # Given two instances starting on calendars nobody has synced yet (no cursor row exists)
    a, b = open_ledger(), open_ledger()
    failures: list[BaseException] = []
    for n in range(20):
        calendar = f"calendar-{n}"
        # When both try to take its lease at the same moment
        taken, errors = at_once(
            partial(a.take_sync_lease, calendar, "a", T, SYNC_TTL),
            partial(b.take_sync_lease, calendar, "b", T, SYNC_TTL),
        )
        failures += errors
        # Then exactly one of them holds it
        assert errors or taken.count(True) == 1, (calendar, taken)
    # And neither was met with an error
    assert not failures, f"{len(failures)} of 40 attempts failed; first: {failures[0]}"


def test_two_instances_setting_a_new_meta_value_at_once_both_succeed(open_ledger: OpenLedger) -> None:
    # Given two instances starting on a new ledger: each records the rules' digest it planned with
    a, b = open_ledger(), open_ledger()
    failures: list[BaseException] = []
    for n in range(20):
        key = f"policy-{n}"
        # When both record it at the same moment
        _, errors = at_once(partial(a.set_meta, key, "digest"), partial(b.set_meta, key, "digest"))
        failures += errors
        # Then it is recorded
        assert a.get_meta(key) == "digest"
    # And neither was met with an error
    assert not failures, f"{len(failures)} of 40 attempts failed; first: {failures[0]}"


def test_events_a_live_instance_is_planning_are_not_mistaken_for_a_crashed_passes(
    open_ledger: OpenLedger,
) -> None:
    ledger = open_ledger()

    def call(uid: str) -> CalendarEvent:
        return CalendarEvent(
            uid=uid,
            start=T,
            end=T + H,
            title="Globex terms #closing",
            organizer=ALICE,
            attendees=(Attendee(DANA),),
        )

    # Given an instance syncing "sales" has stored an event and not yet planned it
    assert ledger.take_sync_lease("sales", "host-a:101:aaaa", T, SYNC_TTL)
    ledger.apply_sync(CalendarChanges("sales", [call("call-1")]), T)
    # And a pass over "support", which no one syncs now, stored one and crashed before planning it
    ledger.apply_sync(CalendarChanges("support", [call("call-2")]), T)
    # When another instance asks who syncs what, and which events are left to plan
    later = T + timedelta(minutes=1)
    assert ledger.sync_leases(later) == {"sales": "host-a:101:aaaa"}
    # Then, skipping the calendars being synced, it finds only the crashed pass's event
    assert ledger.unsettled_events(skip_sources=["sales"]) == ["call-2"]
    assert sorted(ledger.unsettled_events()) == ["call-1", "call-2"]
    # And once the syncing instance's lease has run out, no calendar counts as being synced
    assert ledger.sync_leases(T + SYNC_TTL + timedelta(seconds=1)) == {}


def test_an_event_reads_back_as_stored_and_the_same_again_changes_nothing(
    open_ledger: OpenLedger,
) -> None:
    ledger = open_ledger()
    # Given an event whose text is not all ASCII, with quotes, backslashes, control characters and properties
    call = CalendarEvent(
        uid="call-ü",
        start=T,
        end=T + H,
        title='Müller & Søn "terms" \\ 東京 #closing',
        description="line one\nline\ttwo \x01 😀",
        organizer=ALICE,
        attendees=(Attendee(DANA, status="ACCEPTED"),),
        properties={"z": "last", "a": "first ü"},
        categories=("Closing",),
    )
    # When a sync stores it
    assert ledger.apply_sync(CalendarChanges("sales", [call]), T) == (["call-ü"], [], [])
    # Then it reads back as it was
    stored = ledger.event("call-ü")
    assert stored is not None and stored.event == call
    # And the next sync of the same event, in another instance, finds nothing changed
    assert open_ledger().apply_sync(CalendarChanges("sales", [call]), T + H) == ([], [], [])


# -- re-engagement ------------------------------------------------------------------------------
def test_pending_sequences_are_found_by_the_customers_domain(open_ledger: OpenLedger) -> None:
    ledger = open_ledger()
    # Given a lost deal's call with Globex, stored from the calendar, and its planned follow-ups
    call = CalendarEvent(
        uid="call-1",
        start=T,
        end=T + H,
        title="Globex terms #closing #lost",
        organizer=ALICE,
        attendees=(Attendee(ALICE), Attendee(DANA)),
    )
    ledger.apply_sync(
        CalendarChanges(
            "sales", [call], filings={"call-1": Filing("globex.com", frozenset({"globex.com"}), call=True)}
        ),
        T - 30 * H,
    )
    thank_you = replace(
        prompt("call-1", "lost-thank-you", T + 25 * H),
        to=(DANA,),
        audience=Audience.CUSTOMER,
        stop_on_reengagement=True,
    )
    nudge = prompt("call-1", "outcome-nudge", T + 3 * H)
    ledger.reconcile(EventPlan("call-1", [thank_you, nudge]), T + 2 * H)
    # When Globex meets us again, then its sequence is found under its domain, and only that
    found = ledger.pending_sequences(["globex.com", "initech.com"])
    assert {domain: [s.key for s in sends] for domain, sends in found.items()} == {
        "globex.com": [thank_you.key]
    }
    assert ledger.pending_sequences(["initech.com"]) == {}
    # And asked only for losses known before a moment, it is found once the loss was recorded before it
    ledger.record_outcome("call-1", Outcome.LOST, "cli", T + 2 * H)
    assert ledger.pending_sequences(["globex.com"], lost_before=T + 2 * H) == {}
    later = ledger.pending_sequences(["globex.com"], lost_before=T + 2 * H + timedelta(seconds=1))
    assert [s.key for s in later["globex.com"]] == [thank_you.key]
    # And once stopped, it is no longer pending
    assert ledger.stop_sequence(thank_you.key, "customer re-engaged", T + 3 * H)
    assert ledger.pending_sequences(["globex.com"]) == {}
    assert status(ledger, thank_you.key) is Status.STOPPED


# -- a send that went to some of its recipients -------------------------------------------------
LEE = Person("lee@globex.com", "Lee Park")
MAILBOX_FULL = "452 4.2.2 Mailbox full, try later"
NOT_TO_DANA = f"sent to the others; not to {DANA.email} (put off: {MAILBOX_FULL}): gave up, "


def thank_you(due: datetime) -> PlannedSend:
    """A thank-you to two customers, which ends the sequence when they come back."""
    return replace(
        prompt("call-1", "lost-thank-you", due, expires=due + 72 * H),
        to=(DANA, LEE),
        audience=Audience.CUSTOMER,
        stop_on_reengagement=True,
    )


def partly_sent(ledger: Ledger, send: PlannedSend, now: datetime) -> None:
    """What a dispatcher records when the server took Lee and put Dana off: pending again, sent at
    `now`, to be retried to Dana alone a minute later."""
    [claimed] = ledger.claim_due(now, CLAIM)
    assert claimed.attempt_id is not None
    assert ledger.mark_handed(send.key, claimed.attempt_id, now, LEASE)
    put_off = PutOff(
        f"will retry: sent to the others; the server put off {DANA.email}: {MAILBOX_FULL}",
        now + timedelta(minutes=1),
        Delivered(now, "Thank you for your time", f"<{send.key}@acme.example>", {DANA.email: MAILBOX_FULL}),
    )
    assert ledger.record(send.key, claimed.attempt_id, put_off, now)


@pytest.mark.parametrize(
    "ending",
    ["event deleted", "rule dropped", "event moved", "customer re-engaged", "failed", "skipped"],
)
def test_a_send_that_went_to_some_recipients_can_only_end_sent(open_ledger: OpenLedger, ending: str) -> None:
    ledger = open_ledger()
    due = T + 25 * H
    planned = thank_you(due)
    subjects = {planned.key: "Thank you for your time"}
    # Given a thank-you that went to Lee, while the server put Dana off: pending, to retry her alone
    ledger.reconcile(EventPlan("call-1", [planned], subjects), due - H)
    partly_sent(ledger, planned, due)
    # And the same plan again leaves the retry alone
    at = due + timedelta(seconds=30)
    counts = ledger.reconcile(EventPlan("call-1", [planned], subjects), at)
    assert counts == {"planned": 0, "updated": 0, "cancelled": 0}
    assert status(ledger, planned.key) is Status.PLANNED

    # When what would end a pending send comes before the retry
    if ending == "event deleted":
        ledger.reconcile(EventPlan("call-1", cancel_all_reason="event deleted from every calendar"), at)
        why = "event deleted from every calendar"
    elif ending == "rule dropped":
        ledger.reconcile(EventPlan("call-1", dropped={planned.key: "outcome recorded: won"}), at)
        why = "outcome recorded: won"
    elif ending == "event moved":
        ledger.reconcile(EventPlan("call-1", [thank_you(due + 2 * H)]), at)
        why = f"the event changed (moved to {(due + 2 * H).isoformat()})"
    elif ending == "customer re-engaged":
        assert ledger.stop_sequence(planned.key, "customer re-engaged: new event", at)
        why = "customer re-engaged: new event"
    else:  # a dispatcher's retry ends it: a template error at the deadline, or too late after downtime
        [retry] = ledger.claim_due(due + H, CLAIM)
        assert retry.attempt_id is not None
        end = Failed if ending == "failed" else Skipped
        assert ledger.record(planned.key, retry.attempt_id, end("it cannot go out"), due + H)
        why = "it cannot go out"

    # Then it is sent, at its first delivery, naming who never got it and why
    record = ledger.send(planned.key)
    assert record is not None
    assert (record.status, record.reason) == (Status.SENT, NOT_TO_DANA + why)
    assert (record.sent_at, record.due) == (due, due)
    assert record.refused == {DANA.email: MAILBOX_FULL}
    assert ledger.transitions(planned.key)[-1].to_status == "sent"
    # And no later plan brings it back
    ledger.reconcile(EventPlan("call-1", [planned]), at + H)
    assert status(ledger, planned.key) is Status.SENT
    assert ledger.claim_due(due + 96 * H, CLAIM) == []


def test_a_send_that_went_to_some_recipients_keeps_its_first_sent_at(open_ledger: OpenLedger) -> None:
    ledger = open_ledger()
    due = T + 25 * H
    planned = thank_you(due)
    # Given a thank-you that went to Lee, while the server put Dana off
    ledger.reconcile(EventPlan("call-1", [planned]), due - H)
    partly_sent(ledger, planned, due)
    # And a plan without subjects (for `plan`) changes nothing: the one it was sent with stands
    counts = ledger.reconcile(EventPlan("call-1", [planned]), due + timedelta(seconds=30))
    assert counts == {"planned": 0, "updated": 0, "cancelled": 0}
    # When the retry reaches Dana an hour later and is recorded sent
    [retry] = ledger.claim_due(due + H, CLAIM)
    assert retry.attempt_id is not None
    assert ledger.record(planned.key, retry.attempt_id, Sent(None, delivered(due + H)), due + H)
    # Then it was sent when it first went out
    record = ledger.send(planned.key)
    assert record is not None and (record.status, record.sent_at) == (Status.SENT, due)


# -- resolved by hand ---------------------------------------------------------------------------
@pytest.mark.parametrize("outcome", [Status.FAILED, Status.UNKNOWN])
def test_a_send_resent_by_hand_is_due_at_once_with_a_fresh_window(
    open_ledger: OpenLedger, outcome: Status
) -> None:
    ledger = open_ledger()
    due = T + 25 * H
    planned = thank_you(due)
    ledger.reconcile(EventPlan("call-1", [planned]), due - H)
    # Given a thank-you that failed or was left unknown after three tries
    for n in range(3):
        [claimed] = ledger.claim_due(due + n * H, CLAIM)
        assert claimed.attempt_id is not None
        end = (
            {Status.FAILED: Failed("no"), Status.UNKNOWN: Unknown("no")}[outcome]
            if n == 2
            else Retry("no", due + n * H)
        )
        assert ledger.record(planned.key, claimed.attempt_id, end, due + n * H)

    # When a person asks, three days later, for it to be sent again
    later = due + 72 * H
    assert ledger.resend(planned.key, later, f"resolved by hand: send again (was {outcome.value})")

    # Then it is pending, due at that moment, with no deadline of its own and no tries counted
    record = ledger.send(planned.key)
    assert record is not None
    assert (record.status, record.due, record.expires, record.next_attempt, record.attempts) == (
        Status.PLANNED,
        later,
        None,
        None,
        0,
    )
    assert ledger.transitions(planned.key)[-1].reason == f"resolved by hand: send again (was {outcome.value})"
    # And it is claimed at once
    assert [s.key for s in ledger.claim_due(later, CLAIM)] == [planned.key]
    # And only a failed or unknown send can be resent
    assert not ledger.resend(planned.key, later, "again")


# -- test sends -----------------------------------------------------------------------------------
def trial_send(event_id: str, at: datetime) -> PlannedSend:
    """A test of the closing prep for `event_id`, to a colleague, as `preview --send-to` makes it."""
    return replace(
        prompt(event_id, "closing-prep", at),
        key=f"test:closing-prep:{event_id}:20261202T150000Z:abc123",
        to=(Person("ann@acme.example", "Ann Lee"),),
    )


def test_a_test_send_is_recorded_as_a_test_and_never_claimed_counted_or_moved(
    open_ledger: OpenLedger,
) -> None:
    ledger = open_ledger()
    # Given a closing call with its prompts planned and the prep sent
    ledger.reconcile(EventPlan("call-1", [*call_plan("call-1", T).values()]), T - 30 * H)
    deliver(ledger, "closing-prep:call-1", T - 24 * H)
    at = T - 20 * H
    test = trial_send("call-1", at)

    # When a test of its prep is recorded as sent
    sent = Sent(None, Delivered(at, "[TEST] Prep: Globex terms", "<t@acme.example>", {}))
    ledger.record_test(test, "[TEST] Prep: Globex terms", sent, at)

    # Then it is in the ledger under its key, marked a test, sent, with its subject and one move
    record = ledger.send(test.key)
    assert record is not None and record.test
    assert (record.status, record.sent_at, record.subject, record.to, record.attempts) == (
        Status.SENT,
        at,
        "[TEST] Prep: Globex terms",
        test.to,
        1,
    )
    assert [(t.from_status, t.to_status) for t in ledger.transitions(test.key)] == [(None, "sent")]
    assert [s.key for s in ledger.tests()] == [test.key]
    # And the playbook's sends never include it, nor does a sender's count for its limits
    assert test.key not in {s.key for s in ledger.sends()}
    assert not any(s.test for s in ledger.sends())
    assert ledger.sent_count(ALICE.email, T - 48 * H, "ft@acme.example") == 0
    assert ledger.sent_count("ft@acme.example", T - 48 * H, "ft@acme.example") == 1  # the prep alone
    # And no dispatcher claims it, however late, and nothing moves it
    assert test.key not in {s.key for s in ledger.claim_due(T + 400 * H, CLAIM)}
    assert not ledger.stop_sequence(test.key, "customer re-engaged", at + H)
    assert not ledger.confirm_sent(test.key, at + H, "by hand")
    # And re-planning its event neither sees nor touches it
    ledger.reconcile(EventPlan("call-1", cancel_all_reason="event deleted"), at + H)
    assert status(ledger, test.key) is Status.SENT
    assert ledger.with_sends_or_outcome(["call-1", "call-2"]) == {"call-1"}


def test_a_failed_test_send_is_recorded_failed_with_its_reason_and_never_resent(
    open_ledger: OpenLedger,
) -> None:
    ledger = open_ledger()
    at = T - 20 * H
    test = trial_send("call-2", at)
    # When a test is recorded as failed
    ledger.record_test(test, "[TEST] Prep", Failed("550 5.1.1 no such user"), at)

    # Then it is failed with the reason, and its event does not count as having sends
    record = ledger.send(test.key)
    assert record is not None and record.test
    assert (record.status, record.reason, record.sent_at) == (Status.FAILED, "550 5.1.1 no such user", None)
    assert ledger.transitions(test.key)[-1].reason == "550 5.1.1 no such user"
    assert ledger.with_sends_or_outcome(["call-2"]) == set()
    # And asking for it again moves nothing: a test is never sent by the dispatcher
    assert not ledger.resend(test.key, at + H, "again")
    assert status(ledger, test.key) is Status.FAILED
    assert ledger.claim_due(at + 48 * H, CLAIM) == []


# -- opening, and schema versions ---------------------------------------------------------------
def test_three_instances_opening_a_new_ledger_at_once_all_open_it(store_url: str) -> None:
    # Given a store with no ledger in it yet
    # When three instances open it at the same moment (three replicas of one deployment)
    opened, errors = at_once(*[partial(open_store, store_url)] * 3)
    try:
        # Then all of them open it, at the current schema version
        assert not errors, f"{len(errors)} of 3 failed to open the new ledger; first: {errors[0]}"
        assert {ledger.get_meta("schema_version") for ledger in opened} == {str(SCHEMA_VERSION)}
    finally:
        for ledger in opened:
            ledger.close()


# Columns added since version 1 (2: hand-over; 3: claim owners; 4: test sends; 6: calls), and tables
# (5: the outcome log; 6: sync leases, apart from the cursors, which had them as columns from 2 to 5).
V2_COLUMNS = {
    "sends": {"handed_at", "claimed_by", "test"},
    "events": {"unsettled", "is_call"},
}
NEW_TABLES = {"outcome_log", "sync_leases"}


def create_v1_ledger(url: str) -> None:
    """A ledger as version 1 left it: today's tables without the version 2 columns, and some rows."""
    v1 = MetaData()
    for table in ledger_schema.metadata.sorted_tables:
        if table.name in NEW_TABLES:
            continue
        columns = [
            Column(
                c.name,
                c.type,
                primary_key=c.primary_key,
                nullable=c.nullable,
                index=c.index,
                autoincrement=c.autoincrement,
            )
            for c in table.columns
            if c.name not in V2_COLUMNS.get(table.name, set())
        ]
        Table(table.name, v1, *columns)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            v1.create_all(conn)
            conn.execute(insert(v1.tables["meta"]).values(key="schema_version", value="1"))
            conn.execute(insert(v1.tables["meta"]).values(key="policy", value="rules-of-v1"))
            conn.execute(
                insert(v1.tables["events"]).values(
                    id="call-1",
                    data=globex_call("call-1", T).to_dict(),
                    digest="v1",
                    deal="globex.com",
                    start=T,
                    first_seen=T - 30 * H,
                    updated_at=T - 30 * H,
                    deleted=False,
                )
            )
            conn.execute(
                insert(v1.tables["sends"]).values(
                    key="closing-prep:call-1",
                    rule="closing-prep",
                    event_id="call-1",
                    deal="globex.com",
                    status="planned",
                    due=T - 24 * H,
                    expires=T,
                    to=[[ALICE.email, ALICE.name]],
                    cc=[],
                    audience="rep",
                    template="closing-prep",
                    stop_on_reengagement=False,
                    subject="Prep: Globex terms",
                    attempts=0,
                    created_at=T - 30 * H,
                    updated_at=T - 30 * H,
                )
            )
            conn.execute(
                insert(v1.tables["transitions"]).values(
                    key="closing-prep:call-1", from_status=None, to_status="planned", at=T - 30 * H
                )
            )
            conn.execute(
                insert(v1.tables["cursors"]).values(
                    source="sales", state={"etag": '"v1-etag"'}, synced_at=T - 30 * H
                )
            )
    finally:
        engine.dispose()


def test_a_version_1_ledger_is_upgraded_on_open_with_its_rows_intact(
    store_url: str, open_ledger: OpenLedger
) -> None:
    # Given a ledger written by version 1, with a planned send and a calendar cursor in it
    create_v1_ledger(store_url)
    # When this version opens it
    ledger = open_ledger()
    # Then it is at the current schema version, and the rows are all there
    assert ledger.get_meta("schema_version") == str(SCHEMA_VERSION)
    [send] = ledger.sends()
    assert (send.key, send.status, send.due, send.expires) == (
        "closing-prep:call-1",
        Status.PLANNED,
        T - 24 * H,
        T,
    )
    assert (send.to, send.subject, send.handed_at, send.test) == ((ALICE,), "Prep: Globex terms", None, False)
    assert [(t.from_status, t.to_status, t.at) for t in ledger.transitions(send.key)] == [
        (None, "planned", T - 30 * H)
    ]
    assert ledger.cursor("sales") == {"etag": '"v1-etag"'}
    # And its event, not known to be a call or not, is among its deal's calls until a pass files it
    assert ledger.deal_calls(["globex.com"]) == {"globex.com": ["call-1"]}
    assert ledger.unfiled_events() == ["call-1"]
    # And the new columns work: the send is claimed (with its owner) and handed over, the calendar's
    # lease taken
    [claimed] = ledger.claim_due(T - 23 * H, ClaimTerms(LEASE, owner="host:1:me"))
    assert claimed.attempt_id is not None and claimed.claimed_by == "host:1:me"
    assert ledger.mark_handed(claimed.key, claimed.attempt_id, T - 23 * H, LEASE)
    assert ledger.take_sync_lease("sales", "me", T - 23 * H, SYNC_TTL)
    assert not ledger.take_sync_lease("sales", "another", T - 23 * H, SYNC_TTL)
    assert ledger.sync_leases(T - 23 * H) == {"sales": "me"}
    assert ledger.cursor("sales") == {"etag": '"v1-etag"'}
    # And opening it again later finds nothing left to do
    assert open_ledger().get_meta("schema_version") == str(SCHEMA_VERSION)


def test_a_ledger_from_a_newer_version_is_refused_naming_both_versions(
    store_url: str, open_ledger: OpenLedger
) -> None:
    # Given a ledger that a newer followthrough has marked with a higher schema version
    newer = SCHEMA_VERSION + 1
    first = open_ledger()
    first.set_meta("schema_version", str(newer))
    first.close()
    # When this version opens it, then it refuses, naming both versions
    with pytest.raises(LedgerError) as refused:
        open_store(store_url)
    message = str(refused.value)
    assert f"schema version {newer}" in message and f"({SCHEMA_VERSION})" in message
    assert "upgrade followthrough" in message
    # And it has left the ledger as it was
    assert stored_schema_version(store_url) == str(newer)


def stored_schema_version(url: str) -> str | None:
    """The schema version as stored, read without the Ledger (which would refuse to open)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            table = ledger_schema.meta
            value = conn.execute(table.select().where(table.c.key == "schema_version")).first()
            return None if value is None else str(value.value)
    finally:
        engine.dispose()


def test_outcomes_are_logged_with_where_they_came_from(open_ledger: OpenLedger) -> None:
    from daemon.model import Outcome

    ledger = open_ledger()
    # Given a tag that says won, then a rep confirming it from the command line
    assert ledger.record_outcome("call-1", Outcome.WON, "tag", T)
    assert not ledger.record_outcome("call-1", Outcome.WON, "cli", T + H)
    # When the rep changes their mind from the Lost link of an email
    assert ledger.record_outcome("call-1", Outcome.LOST, "link", T + 2 * H, "the Lost link in closing-final")
    # Then the outcome is the link's, and the event's log has each change once, in order, with its link
    record = ledger.outcome("call-1")
    assert record is not None and (record.outcome, record.source) == (Outcome.LOST, "link")
    log = [(e.outcome, e.source, e.detail, e.at) for e in ledger.outcome_log("call-1")]
    assert log == [
        (Outcome.WON, "tag", None, T),
        (Outcome.LOST, "link", "the Lost link in closing-final", T + 2 * H),
    ]
    # and a tag that is gone does not take away an outcome a person recorded
    assert not ledger.clear_outcome("call-1", "tag")
    assert ledger.outcome_log("other") == []


def test_counts_are_the_playbooks_sends_by_state_never_a_test(open_ledger: OpenLedger) -> None:
    ledger = open_ledger()
    # Given nothing yet: no state is counted
    assert ledger.counts() == {}
    # Given two calls' prompts planned, one prep sent and one claimed, and a test send
    ledger.reconcile(EventPlan("call-1", [*call_plan("call-1", T).values()]), T - 30 * H)
    ledger.reconcile(EventPlan("call-2", [*call_plan("call-2", T + H).values()]), T - 30 * H)
    deliver(ledger, "closing-prep:call-1", T - 24 * H)
    assert [s.key for s in ledger.claim_due(T - 23 * H, CLAIM)] == ["closing-prep:call-2"]
    at = T - 20 * H
    test = trial_send("call-1", at)
    sent = Sent(None, Delivered(at, "[TEST] Prep", "<t@acme.example>", {}))
    ledger.record_test(test, "[TEST] Prep", sent, at)
    # Then the counts are the playbook's, by state, the test left out
    assert ledger.counts() == {Status.PLANNED: 4, Status.CLAIMED: 1, Status.SENT: 1}


# -- planning many events at once ---------------------------------------------------------------
def globex_call(event_id: str, start: datetime, title: str = "Globex terms #closing") -> CalendarEvent:
    return CalendarEvent(
        uid=event_id, start=start, end=start + H, title=title, organizer=ALICE, attendees=(Attendee(DANA),)
    )


def test_what_a_pass_plans_against_is_read_for_many_events_at_once(open_ledger: OpenLedger) -> None:
    ledger = open_ledger()
    # Given a Globex deal of three calls in two calendars, one of them deleted since, and an outcome
    calls = [globex_call("call-2", T + 24 * H), globex_call("call-1", T), globex_call("call-3", T + 48 * H)]
    filed = {c.id: Filing("globex.com", call=True) for c in calls}
    ledger.apply_sync(CalendarChanges("sales", calls, filings=filed), T - 48 * H)
    ledger.apply_sync(CalendarChanges("support", calls[:1], filings=filed), T - 30 * H)
    ledger.apply_sync(CalendarChanges("sales", [globex_call("call-4", T)], removed=["call-3"]), T - 20 * H)
    ledger.record_outcome("call-1", Outcome.WON, "cli", T + 2 * H)
    # When a pass reads them by id, by deal, their outcomes and when each was first seen
    stored = ledger.events_by_id(["call-1", "call-2", "call-3", "nothing"])
    # Then each comes as stored, deleted ones too, with every calendar that holds it
    assert set(stored) == {"call-1", "call-2", "call-3"}
    assert stored["call-2"].event == calls[0] and sorted(stored["call-2"].sources) == ["sales", "support"]
    assert stored["call-3"].deleted and not stored["call-1"].deleted
    assert stored["call-1"].first_seen == T - 48 * H
    # And a deal's live events earliest first, as events_of_deal gives them
    assert ledger.deal_calls(["globex.com", "initech.com"]) == {"globex.com": ["call-1", "call-2"]}
    assert [e.id for e in ledger.events_of_deal("globex.com")] == ["call-1", "call-2"]
    outcomes = ledger.outcomes(["call-1", "call-2"])
    assert list(outcomes) == ["call-1"] and outcomes["call-1"].outcome is Outcome.WON
    assert ledger.first_seen(["call-2", "call-4"]) == {"call-2": T - 48 * H, "call-4": T - 20 * H}


def interleaved(
    a: Ledger, changes: CalendarChanges, b: Ledger, meanwhile: CalendarChanges, watcher: Any
) -> None:
    """`a` syncs `changes`; just before it commits, `b` syncs `meanwhile` in another thread. Waits until
    `b` is done or waiting for a lock `a` holds (PostgreSQL), then lets `a` commit."""
    b_done: list[object] = []
    b_sync = threading.Thread(target=lambda: b_done.append(b.apply_sync(meanwhile, T - H)))
    save_cursor = a._save_cursor  # type: ignore[attr-defined]

    def in_the_middle(*args: object) -> None:
        b_sync.start()
        deadline = time.monotonic() + 30
        while not b_done and time.monotonic() < deadline:
            with watcher.connect() as conn:
                waiting = conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                ).scalar()
            if waiting:
                break
            time.sleep(0.01)
        save_cursor(*args)

    a._save_cursor = in_the_middle  # type: ignore[attr-defined]
    try:
        a.apply_sync(changes, T - H)
    finally:
        b_sync.join(30)
    assert b_done, "the other instance's sync did not end"


@pytest.mark.parametrize("meanwhile", ["dropped", "added"])
def test_an_event_one_calendar_drops_while_another_instance_syncs_it_ends_as_the_calendars_say(
    open_ledger: OpenLedger, store_url: str, meanwhile: str
) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite lets one writer in at a time: two syncs never overlap")
    # Given a call held by "sales" (and by "support" too, when support drops it), each calendar synced
    # by its own instance
    a, b = open_ledger(), open_ledger()
    call = globex_call("call-1", T)
    a.apply_sync(CalendarChanges("sales", [call]), T - 2 * H)
    if meanwhile == "dropped":
        a.apply_sync(CalendarChanges("support", [call]), T - 2 * H)
        other = CalendarChanges("support", [], removed=[call.id])
    else:
        other = CalendarChanges("support", [call])
    watcher = create_engine(store_url)
    try:
        # When sales drops it while the other instance syncs support, which drops it too, or adds it
        interleaved(a, CalendarChanges("sales", [], removed=[call.id]), b, other, watcher)
    finally:
        watcher.dispose()
    # Then it ends as the calendars say: gone from both and deleted (its sends cancelled at the next
    # planning), or held by support and live
    stored = a.events_by_id([call.id])[call.id]
    if meanwhile == "dropped":
        assert (stored.sources, stored.deleted) == ((), True)
    else:
        assert (stored.sources, stored.deleted) == (("support",), False)


def test_many_events_removed_at_once_are_gone_only_from_the_calendars_that_dropped_them(
    open_ledger: OpenLedger,
) -> None:
    ledger = open_ledger()
    # Given more calls than a chunk in the sales calendar, every third one in support's too
    calls = [globex_call(f"call-{n:04d}", T + n * H) for n in range(CHUNK + 30)]
    ledger.apply_sync(CalendarChanges("sales", calls), T - 48 * H)
    ledger.apply_sync(CalendarChanges("support", calls[::3]), T - 48 * H)
    # When sales drops them all at once (a moved series), one of them twice and one it never had
    removed = [c.id for c in calls] + ["call-0001", "never-held"]
    _, _, gone = ledger.apply_sync(CalendarChanges("sales", [], removed=removed), T - 20 * H)
    # Then only those no other calendar holds are gone, each named once, in the order given
    expected = [c.id for n, c in enumerate(calls) if n % 3]
    assert gone == expected
    stored = ledger.events_by_id([c.id for c in calls])
    assert [i for i, s in stored.items() if s.deleted] == expected
    assert stored["call-0000"].sources == ("support",) and not stored["call-0000"].deleted
    # And dropping them again changes nothing
    assert ledger.apply_sync(CalendarChanges("sales", [], removed=removed), T - 10 * H)[2] == []


def test_a_deals_calls_are_read_without_its_meetings_and_edited_rules_file_events_again(
    open_ledger: OpenLedger,
) -> None:
    ledger = open_ledger()
    # Given a Globex deal of a closing call and a weekly meeting, filed as a sync files them
    call, sync = globex_call("call-1", T), globex_call("sync-1", T - 24 * H, "Globex weekly sync")
    filed = {
        "call-1": Filing("globex.com", frozenset({"globex.com"}), call=True),
        "sync-1": Filing("globex.com", frozenset({"globex.com"}), call=False),
    }
    ledger.apply_sync(CalendarChanges("sales", [call, sync], filings=filed), T - 48 * H)
    # Then only the call is read as the deal's, while the meeting still counts for its customer's domain
    assert ledger.deal_calls(["globex.com"]) == {"globex.com": ["call-1"]}
    assert [e.id for e in ledger.events_of_deal("globex.com")] == ["sync-1", "call-1"]
    # When edited rules make the meeting a call of another deal, meeting another customer
    stored = ledger.events_by_id(["sync-1"])["sync-1"]
    refiled = Filing("globex-emea", frozenset({"globex.de"}), call=True)
    assert ledger.refile({"sync-1": (refiled, stored.digest), "call-1": (filed["call-1"], "stale")}) == 1
    # Then it is read as that deal's call, and filed under its new customer's domain alone
    assert ledger.deal_calls(["globex.com", "globex-emea"]) == {
        "globex.com": ["call-1"],
        "globex-emea": ["sync-1"],
    }
    check_in = replace(prompt("sync-1", "lost-check-in", T), stop_on_reengagement=True)
    ledger.reconcile(EventPlan("sync-1", [check_in]), T - 2 * H)
    assert set(ledger.pending_sequences(["globex.com", "globex.de"])) == {"globex.de"}
    # And filing it the same way again writes nothing
    assert ledger.refile({"sync-1": (refiled, stored.digest)}) == 0


def test_a_filing_made_from_an_event_a_sync_changed_since_is_not_written(open_ledger: OpenLedger) -> None:
    ledger = open_ledger()
    # Given a weekly meeting, read to be filed again under edited rules
    sync = globex_call("sync-1", T, "Globex weekly")
    ledger.apply_sync(CalendarChanges("sales", [sync], filings={"sync-1": Filing("globex.com")}), T - 48 * H)
    read = ledger.events_by_id(["sync-1"])["sync-1"]
    # When a sync stores it, edited into a kickoff, before the filing made from what was read is written
    kickoff = globex_call("sync-1", T, "Globex #kickoff")
    ledger.apply_sync(
        CalendarChanges("sales", [kickoff], filings={"sync-1": Filing("globex.com", call=True)}), T - 47 * H
    )
    written = ledger.refile({"sync-1": (Filing("globex.com", call=False), read.digest)})
    # Then the sync's filing stays: the kickoff is among the deal's calls
    assert written == 0
    assert ledger.deal_calls(["globex.com"]) == {"globex.com": ["sync-1"]}


def test_many_events_plans_and_their_tags_outcomes_are_written_at_once(open_ledger: OpenLedger) -> None:
    ledger = open_ledger()
    ids = ["call-1", "call-2", "call-3"]
    calls = [globex_call(event_id, T) for event_id in ids]
    ledger.apply_sync(CalendarChanges("sales", calls), T - 48 * H)
    # Given a call whose #lost tag was seen, and one whose outcome a rep recorded
    ledger.record_outcome("call-2", Outcome.LOST, "tag", T - 40 * H)
    ledger.record_outcome("call-3", Outcome.WON, "cli", T - 40 * H)
    # When a pass writes the three plans, call-1 now tagged #won, the others' tags gone
    plans = [EventPlan(event_id, [*call_plan(event_id, T).values()]) for event_id in ids]
    tags = {"call-1": Outcome.WON, "call-2": None, "call-3": None}
    written = ledger.write_plans(plans, T - 30 * H, tags)
    # Then each event's sends are planned, and the outcomes are what the tags say now, not a person's
    assert written.counts == {i: {"planned": 3, "updated": 0, "cancelled": 0} for i in ids}
    assert dict(written.outcomes) == {"call-1": Outcome.WON, "call-2": None}
    now_known = ledger.outcomes(ids)
    assert {i: (o.outcome, o.source, o.seen_at) for i, o in now_known.items()} == {
        "call-1": (Outcome.WON, "tag", T - 30 * H),
        "call-3": (Outcome.WON, "cli", T - 40 * H),
    }
    assert [(e.outcome, e.source) for e in ledger.outcome_log("call-1")] == [(Outcome.WON, "tag")]
    assert ledger.unsettled_events() == []
    assert len(ledger.sends([Status.PLANNED])) == 9
    # When the next pass moves call-1, drops call-2's nudge and call-3 is deleted, its tag unchanged
    moved = call_plan("call-1", T + H)
    kept = call_plan("call-2", T)
    plans = [
        EventPlan("call-1", [*moved.values()]),
        EventPlan(
            "call-2", [kept["closing-prep"], kept["closing-final"]], dropped={"outcome-nudge:call-2": "why"}
        ),
        EventPlan("call-3", cancel_all_reason="event deleted from every calendar"),
    ]
    written = ledger.write_plans(plans, T - 29 * H, {"call-1": Outcome.WON})
    # Then each send moves as reconcile says, once, and an outcome already known is not news
    assert written.counts == {
        "call-1": {"planned": 0, "updated": 3, "cancelled": 0},
        "call-2": {"planned": 0, "updated": 0, "cancelled": 1},
        "call-3": {"planned": 0, "updated": 0, "cancelled": 3},
    }
    assert dict(written.outcomes) == {}
    prep = ledger.send("closing-prep:call-1")
    assert prep is not None and prep.due == T + H - 24 * H and prep.status is Status.PLANNED
    nudge = ledger.send("outcome-nudge:call-2")
    assert nudge is not None and (nudge.status, nudge.reason) == (Status.CANCELLED, "why")
    assert {status(ledger, f"{rule}:call-3") for rule in call_plan("call-3", T)} == {Status.CANCELLED}
    moves = [(t.from_status, t.to_status) for t in ledger.transitions("closing-prep:call-1")]
    assert moves == [(None, "planned"), ("planned", "planned")]
