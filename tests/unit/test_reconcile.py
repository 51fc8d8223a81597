"""The reconcile decision as a state machine: plans, deliveries and cancellations in any order.

Hypothesis drives an event's sends through re-plans, claims, deliveries (to all or some recipients),
failures and cancellations, applying each decision to an in-memory ledger, and checks the invariants.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from daemon.ledger.reconcile import Action, Cancel, EndSent, EventPlan, Insert, Replan, reconcile
from daemon.model import Audience, Person, PlannedSend, SendRecord, Status

T = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
RULES = ("closing-prep", "closing-final", "outcome-nudge", "lost-thank-you")
EVENT = "call-1"
UNSENT = (Status.CANCELLED, Status.FAILED, Status.SKIPPED, Status.STOPPED)


def planned(rule: str, shift: int, reader: str) -> PlannedSend:
    return PlannedSend(
        key=f"{rule}:{EVENT}",
        rule=rule,
        event_id=EVENT,
        deal="globex.com",
        due=T + timedelta(hours=shift),
        expires=None,
        sender=None,
        reply_to=None,
        to=(Person(reader),),
        cc=(),
        audience=Audience.REP,
        template=rule,
    )


def applied(records: dict[str, SendRecord], actions: list[Action]) -> dict[str, SendRecord]:
    """The ledger after the store writes these actions (each conditional on the send being pending)."""
    records = dict(records)
    for action in actions:
        if isinstance(action, Insert):
            plan = {f.name: getattr(action.send, f.name) for f in fields(PlannedSend)}
            records[action.send.key] = SendRecord(
                **plan, status=Status.PLANNED, subject=action.subject, updated_at=T
            )
        elif isinstance(action, Replan):
            plan = {f.name: getattr(action.send, f.name) for f in fields(PlannedSend)}
            old = records[action.send.key]
            records[action.send.key] = replace(
                old, **plan, status=Status.PLANNED, subject=action.subject, reason=None, next_attempt=None
            )
        else:
            assert records[action.key].status is Status.PLANNED
            status = Status.CANCELLED if isinstance(action, Cancel) else Status.SENT
            records[action.key] = replace(records[action.key], status=status, reason=action.why)
    return records


def keys(actions: list[Action]) -> list[str]:
    return [a.send.key if isinstance(a, Insert | Replan) else a.key for a in actions]


class EventSends(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, SendRecord] = {}

    def decide(
        self, plan: list[PlannedSend], subjects: dict[str, str], cancel: str | None = None
    ) -> list[Action]:
        """Given the ledger as it is, when the event is re-planned: the decision, checked, then applied."""
        actions = reconcile(self.records.values(), EventPlan(EVENT, plan, subjects, cancel_all_reason=cancel))
        # Then each send is decided on at most once, and only a send not known before is inserted
        assert len(keys(actions)) == len(set(keys(actions)))
        for action in actions:
            if isinstance(action, Insert):
                assert action.send.key not in self.records
                continue
            before = self.records[keys([action])[0]]
            # Sent mail is never touched or planned again; nor is a claim, a failure or an unknown
            assert before.status in (Status.PLANNED, Status.CANCELLED, Status.SKIPPED)
            # A send that went to some recipients is never planned anew or cancelled: it ends sent
            if before.sent_at is not None:
                assert isinstance(action, EndSent)
            else:
                assert not isinstance(action, EndSent)
        self.records = applied(self.records, actions)
        return actions

    @rule(
        chosen=st.sets(st.sampled_from(RULES)),
        shift=st.integers(-2, 2),
        reader=st.sampled_from(["alice@acme.example", "bob@acme.example"]),
        subject=st.sampled_from([None, "Prep", "Prep: Globex"]),
    )
    def replan(self, chosen: set[str], shift: int, reader: str, subject: str | None) -> None:
        plan = [planned(r, shift, reader) for r in sorted(chosen)]
        subjects = {p.key: subject for p in plan if subject is not None}
        self.decide(plan, subjects)
        # Then the same plan a second time changes nothing
        assert self.decide(plan, subjects) == []
        # And every planned send is in the ledger under its key
        assert {p.key for p in plan} <= set(self.records)

    @rule(reason=st.sampled_from(["event cancelled", "event deleted from every calendar"]))
    def cancel_event(self, reason: str) -> None:
        self.decide([], {}, cancel=reason)
        # Then nothing is left pending to be sent later
        assert not [r for r in self.records.values() if r.status is Status.PLANNED]

    def with_status(self, *statuses: Status) -> list[str]:
        return sorted(k for k, r in self.records.items() if r.status in statuses)

    @precondition(lambda self: self.with_status(Status.PLANNED))
    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.with_status(Status.PLANNED)))
        self.records[key] = replace(self.records[key], status=Status.CLAIMED)

    @precondition(lambda self: self.with_status(Status.CLAIMED))
    @rule(data=st.data(), end=st.sampled_from(["sent", "some", "failed", "skipped", "unknown", "retry"]))
    def finish(self, data: st.DataObject, end: str) -> None:
        key = data.draw(st.sampled_from(self.with_status(Status.CLAIMED)))
        record = self.records[key]
        first = record.sent_at or T
        if end == "sent" or (record.sent_at is not None and end in ("failed", "skipped")):
            record = replace(record, status=Status.SENT, sent_at=first)  # the ledger's own rule
        elif end == "some":  # the server put some recipients off: pending, to retry them alone
            record = replace(record, status=Status.PLANNED, sent_at=first, refused={"x@y": "452 full"})
        elif end == "retry":
            record = replace(record, status=Status.PLANNED)
        else:
            record = replace(record, status=Status(end))
        self.records[key] = record

    @invariant()
    def sent_once_sent_for_good(self) -> None:
        # A send that went to some recipients never ends as if it had not gone out
        for record in self.records.values():
            if record.sent_at is not None:
                assert record.status not in UNSENT, record

    @invariant()
    def keys_are_unique_and_their_own(self) -> None:
        assert all(key == record.key for key, record in self.records.items())


TestEventSends = EventSends.TestCase
