"""What the commands do, apart from printing: each operation takes the ledger and returns data.

The CLI opens the ledger, calls one of these and prints the result (khal's cli → controllers split).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from daemon.delivery import suppressed
from daemon.errors import Problem, UserError
from daemon.ledger import Ledger, OutcomeEntry, SendRecord, Transition
from daemon.model import Outcome, Status, parse_address

if TYPE_CHECKING:  # the engine loads templates and backends: commands that need none stay light
    from daemon.engine import Engine, PassReport


TEMPLATES_META = "templates"  # a running daemon's note on its templates: edits refused, files broken


def template_warnings(ledger: Ledger) -> list[str]:
    """What a running daemon noted of its templates: edits it refused (it keeps the last good version)
    and files that were broken when it started (their sends wait until they are fixed)."""
    raw = ledger.get_meta(TEMPLATES_META)
    if not raw:
        return []
    note = json.loads(raw)
    refused = [
        f"{Problem(**p)} (edit refused; the running daemon sends its last good version)"
        for p in note.get("refused", [])
    ]
    broken = [f"{Problem(**p)} (sends that use it wait until it is fixed)" for p in note.get("broken", [])]
    return refused + broken


@dataclass(frozen=True)
class PassSummary:
    """What `tick` and `demo` show of a pass: its report, the sends as recorded, what comes next."""

    report: PassReport
    sent: list[SendRecord]  # as the ledger recorded them: subject, notes
    upcoming: list[SendRecord]  # pending, soonest first


def summarize(ledger: Ledger, report: PassReport) -> PassSummary:
    sent = [ledger.send(s.key) or s for s in report.dispatch.sent]
    return PassSummary(report, sent, ledger.sends([Status.PLANNED]))


@dataclass(frozen=True)
class OutcomeRecorded:
    event_id: str
    planned: list[SendRecord]  # the event's sends now pending
    cancelled: int


def record_outcome(
    engine: Engine,
    event_text: str,
    outcome: Outcome,
    now: datetime,
    source: str = "cli",
    detail: str | None = None,
) -> OutcomeRecorded:
    """`followthrough outcome` (or a link): record it, re-plan the event, say what is planned now."""
    event_id, counts = engine.record_outcome(event_text, outcome, now, source, detail)
    planned = engine.ledger.sends([Status.PLANNED], event_id=event_id)
    return OutcomeRecorded(event_id, planned, counts["cancelled"])


@dataclass(frozen=True)
class EventHistory:
    event_id: str
    outcomes: list[OutcomeEntry]  # each outcome recorded, from where (which link), when
    moves: list[Transition]  # every move of the event's sends, oldest first


def event_history(ledger: Ledger, event_text: str) -> EventHistory:
    """`history --event`: what happened around one event (an id or a unique prefix)."""
    stored = ledger.find_event(event_text)
    keys = {s.key for s in ledger.sends(event_id=stored.event.id)}
    moves = [m for key in sorted(keys) for m in ledger.transitions(key)]
    return EventHistory(
        stored.event.id, ledger.outcome_log(stored.event.id), sorted(moves, key=lambda m: m.at)
    )


def suppress(ledger: Ledger, addresses: Iterable[str], now: datetime, how: str) -> list[str]:
    """Never write to these addresses again (`how`: by hand, from a link); the pending sends that would
    now reach nobody are stopped at once, the others leave them out when they go. The newly added."""
    targets = sorted({a.lower() for a in addresses})
    added = [a for a in targets if ledger.suppress(a, now, how)]
    for send in ledger.sends([Status.PLANNED]):
        to = [p.email for p in send.to]
        if to and any(a in targets or a.rsplit("@", 1)[-1] in targets for a in to):
            blocked = ledger.is_suppressed(to)
            if set(to) <= blocked:
                ledger.stop_sequence(send.key, suppressed(blocked), now)
    return added


@dataclass(frozen=True)
class Resolution:
    key: str
    resent: bool  # False: recorded as sent


def resolve(ledger: Ledger, key: str, decision: str, now: datetime) -> Resolution:
    """A person settles a send a crash left `unknown` (it did arrive, or send it again), or sends a
    `failed` one again. Raises UserError when there is nothing to settle."""
    send = ledger.send(key)
    if send is None:
        raise UserError(f"no send with key {key!r} (see `followthrough plan --status unknown`)")
    if send.test:
        raise UserError(f"send {key} is a test, never sent again: `preview --send-to` sends a new one")
    if send.status is Status.FAILED and decision == "sent":
        raise UserError(f"send {key} failed: the server did not take it; `resend` sends it again")
    if send.status not in (Status.UNKNOWN, Status.FAILED):
        raise UserError(
            f"send {key} is {Status(send.status).public}, not unknown or failed: nothing to resolve"
        )
    if decision == "resend":
        # A person asked for it: due now, never too late, retried within a window counted from now.
        ledger.resend(key, now, f"resolved by hand: send again (was {send.status.value})")
        return Resolution(key, resent=True)
    ledger.confirm_sent(key, now, "resolved by hand: it did arrive")
    return Resolution(key, resent=False)


def sends(ledger: Ledger, public_statuses: tuple[str, ...] = ()) -> list[SendRecord]:
    """Every send, or those whose public status (`plan --status`) is one of these."""
    return [s for s in ledger.sends() if not public_statuses or Status(s.status).public in public_statuses]


def history(ledger: Ledger) -> list[SendRecord]:
    """What was sent, failed or left unknown, test sends too, newest first."""
    return sorted(
        [*ledger.sends([Status.SENT, Status.FAILED, Status.UNKNOWN]), *ledger.tests()],
        key=lambda s: s.sent_at or s.updated_at,
        reverse=True,
    )


def suppression_target(value: str) -> str:
    """An address, or a whole domain (`globex.example` or `@globex.example`), lower-cased."""
    address = parse_address(value)
    if address is None and parse_address("x@" + value.lstrip("@")):
        return value.lstrip("@").lower()
    if address is None:
        raise UserError(f"not an email address or domain: {value!r}")
    return address
