"""What re-planning an event does to its sends: a pure decision, which the store then writes.

Sent mail is never touched; a pending send whose rule no longer applies is cancelled; one that comes back
is planned again under its key; a send that went to some of its recipients only ever ends sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from daemon.model import PlannedSend, SendRecord, Status

REVIVABLE = (Status.PLANNED, Status.CANCELLED, Status.SKIPPED)  # re-planning may bring these back


@dataclass(frozen=True)
class EventPlan:
    """An event's new plan: what `reconcile` brings its sends in line with."""

    event_id: str
    sends: Sequence[PlannedSend] = ()
    subjects: Mapping[str, str] = field(default_factory=dict)  # the planned sends' subjects, when known
    dropped: Mapping[str, str] = field(default_factory=dict)  # by key: why a rule no longer applies
    cancel_all_reason: str | None = None  # why the whole plan goes: the event was cancelled or deleted


@dataclass(frozen=True)
class Insert:
    """A send not known before: planned."""

    send: PlannedSend
    subject: str | None


@dataclass(frozen=True)
class Replan:
    """A known send, planned again as `send`: it moved, its details changed, or it came back."""

    send: PlannedSend
    subject: str | None
    was: Status
    why: str


@dataclass(frozen=True)
class Cancel:
    """A pending send the plan no longer has."""

    key: str
    why: str


@dataclass(frozen=True)
class EndSent:
    """A pending send that went to some recipients and will not be retried to the others: sent."""

    key: str
    why: str


Action = Insert | Replan | Cancel | EndSent


def reconcile(existing: Iterable[SendRecord], plan: EventPlan) -> list[Action]:
    """The actions that bring an event's sends (`existing`) in line with its new plan."""
    known = {s.key: s for s in existing}
    planned = {s.key: s for s in plan.sends}
    actions: list[Action] = []
    for key, send in planned.items():
        row = known.get(key)
        subject = plan.subjects.get(key)
        if row is None:
            actions.append(Insert(send, subject))
        elif row.sent_at is not None:  # it went to some recipients: never planned anew
            # Without a new subject, the one it was sent with stands.
            moved = row.due != send.due
            changed = moved or row.planned != send or (subject is not None and subject != row.subject)
            if row.status is Status.PLANNED and changed:
                why = f"moved to {send.due.isoformat()}" if moved else "details changed"
                actions.append(EndSent(key, f"the event changed ({why})"))
        elif row.status in REVIVABLE and (
            row.status is not Status.PLANNED or row.planned != send or row.subject != subject
        ):
            if row.due != send.due:
                why = f"moved to {send.due.isoformat()}"
            else:
                why = "planned again" if row.status is not Status.PLANNED else "details changed"
            actions.append(Replan(send, subject, row.status, why))
    for key, row in known.items():
        if key in planned or row.status is not Status.PLANNED:
            continue
        why = plan.cancel_all_reason or plan.dropped.get(key) or "rule no longer applies"
        actions.append(EndSent(key, why) if row.sent_at is not None else Cancel(key, why))
    return actions
