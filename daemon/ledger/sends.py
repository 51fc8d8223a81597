"""The store's sends: re-planning an event's sends, moving a send to where it ends, and reading them.

`reconcile.reconcile` decides what a new plan does and `moves.settle` what a move writes; this writes it.
Test sends (`preview --send-to`) share the table, marked `test`: only `record_test`, `tests` and `send`
see them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from daemon.ledger.abc import Handing, Record, Transition, suppressed_among
from daemon.ledger.base import Base, chunks, listed
from daemon.ledger.claims import hand
from daemon.ledger.moves import UNSENT, Arrived, Current, Failed, Move, Resend, Sent, Stopped, Unknown, settle
from daemon.ledger.reconcile import Cancel, EndSent, EventPlan, Insert, Replan, reconcile
from daemon.ledger.schema import (
    event_domains,
    events,
    outcomes,
    plan_values,
    record,
    sends,
    suppressions,
    transitions,
)
from daemon.model import PlannedSend, SendRecord, Status

PLAYBOOK = sends.c.test.is_(False)  # the playbook's sends: every query but a test's own leaves tests out

# A move of one send, if it is still where it was left (`from_`), and still this attempt's when one is
# named: built once, with and without the attempt (the statements a dispatcher runs for every message).
_WHERE = (sends.c.key == bindparam("k_"), sends.c.status.in_(bindparam("from_", expanding=True)), PLAYBOOK)
_WHERES = {False: _WHERE, True: (*_WHERE, sends.c.attempt_id == bindparam("attempt_"))}
CURRENT = {
    mine: select(sends.c.status, sends.c.sent_at, sends.c.handed_at, sends.c.attempts, sends.c.refused).where(
        *where
    )
    for mine, where in _WHERES.items()
}
MOVE = {mine: update(sends).where(*where) for mine, where in _WHERES.items()}

log = logging.getLogger(__name__)


class SendStore(Base):
    """Plans, moves and reads of sends, and the suppression list."""

    def reconcile(self, plan: EventPlan, at: datetime) -> dict[str, int]:
        with self._tx() as conn:
            return self._reconcile(conn, [plan], at)[plan.event_id]

    def _reconcile(
        self, conn: Connection, plans: Sequence[EventPlan], at: datetime
    ) -> dict[str, dict[str, int]]:
        """`reconcile` many events in this transaction, a few statements for all of them: counts by event."""
        by_event = {plan.event_id: plan for plan in plans}
        existing: dict[str, list[SendRecord]] = {event_id: [] for event_id in by_event}
        for chunk in chunks(list(by_event)):
            for row in conn.execute(select(sends).where(sends.c.event_id.in_(chunk), PLAYBOOK)):
                existing[row.event_id].append(record(row))
        counts: dict[str, dict[str, int]] = {}
        inserts: list[dict[str, Any]] = []
        replans: list[dict[str, Any]] = []
        cancels: list[dict[str, Any]] = []
        moves: list[dict[str, Any]] = []

        def move(key: str, old: str | None, new: Status, why: str) -> None:
            moves.append({"key": key, "from_status": old, "to_status": new.value, "at": at, "reason": why})

        for event_id, plan in by_event.items():
            count = counts[event_id] = {"planned": 0, "updated": 0, "cancelled": 0}
            for action in reconcile(existing[event_id], plan):
                if isinstance(action, Insert):
                    send = action.send
                    values = plan_values(send, action.subject)
                    status = Status.PLANNED.value
                    inserts.append(
                        {
                            "key": send.key,
                            "status": status,
                            "attempts": 0,
                            "created_at": at,
                            "updated_at": at,
                            **values,
                        }
                    )
                    move(send.key, None, Status.PLANNED, f"due {send.due.isoformat()}")
                    count["planned"] += 1
                elif isinstance(action, Replan):
                    values = plan_values(action.send, action.subject)
                    replans.append({"b_key": action.send.key, "b_was": action.was.value, **values})
                    move(action.send.key, action.was.value, Status.PLANNED, action.why)
                    count["updated"] += 1
                elif isinstance(action, Cancel):
                    cancels.append({"b_key": action.key, "reason": action.why})
                    move(action.key, Status.PLANNED.value, Status.CANCELLED, action.why)
                    count["cancelled"] += 1
                elif isinstance(action, EndSent) and self._apply(
                    conn, action.key, Stopped(action.why), at, (Status.PLANNED,)
                ):
                    count["cancelled"] += 1  # its retry is
        if inserts:
            conn.execute(insert(sends), inserts)
        if replans:
            conn.execute(
                update(sends)
                .where(sends.c.key == bindparam("b_key"), sends.c.status == bindparam("b_was"))
                .values(status=Status.PLANNED.value, reason=None, next_attempt=None, updated_at=at),
                replans,
            )
        if cancels:
            conn.execute(
                update(sends)
                .where(sends.c.key == bindparam("b_key"), sends.c.status == Status.PLANNED.value)
                .values(status=Status.CANCELLED.value, updated_at=at),
                cancels,
            )
        if moves:
            conn.execute(insert(transitions), moves)
        # In the same transaction as the plans: settled means planned, never half of it.
        for chunk in chunks(list(by_event)):
            conn.execute(update(events).where(events.c.id.in_(chunk)).values(unsettled=False))
        return counts

    def record(self, key: str, attempt_id: str, move: Move, at: datetime) -> bool:
        with self._tx() as conn:
            return self._apply(conn, key, move, at, (Status.CLAIMED,), attempt_id)

    def record_and_hand(
        self, records: Sequence[Record], handing: Handing | None = None
    ) -> tuple[list[bool], bool, set[str]]:
        with self._tx() as conn:
            made = [self._apply(conn, r.key, r.move, r.at, (Status.CLAIMED,), r.attempt_id) for r in records]
            if handing is None:
                return made, False, set()
            # Checked again as it is handed over: an unsubscribe since the batch was read stops it.
            blocked = _suppressed(conn, handing.recipients) if handing.recipients else set()
            handed = not blocked and hand(conn, handing.key, handing.attempt_id, handing.at, handing.lease)
        return made, handed, blocked

    def stop_sequence(self, key: str, reason: str, at: datetime) -> bool:
        return self._move_one(key, Stopped(reason), at, (Status.PLANNED,))

    def confirm_sent(self, key: str, at: datetime, reason: str) -> bool:
        return self._move_one(key, Arrived(reason), at, (Status.UNKNOWN,))

    def resend(self, key: str, at: datetime, reason: str) -> bool:
        return self._move_one(key, Resend(reason), at, (Status.UNKNOWN, Status.FAILED))

    def _move_one(self, key: str, move: Move, at: datetime, only_from: tuple[Status, ...]) -> bool:
        with self._tx() as conn:
            return self._apply(conn, key, move, at, only_from)

    def _apply(
        self,
        conn: Connection,
        key: str,
        move: Move,
        at: datetime,
        only_from: tuple[Status, ...],
        attempt_id: str | None = None,
    ) -> bool:
        """Make `move` if the send is still where we left it; False if someone else moved it."""
        # A test send is recorded once, as it ended: nothing moves it afterwards (not `resolve` either).
        mine = attempt_id is not None
        params: dict[str, Any] = {"k_": key, "from_": [s.value for s in only_from]}
        if mine:
            params["attempt_"] = attempt_id
        # Locked: no one else moves it between this read and the write.
        row = conn.execute(self.caps.locked(CURRENT[mine]), params).first()
        if row is None:
            return False
        current = Current(row.sent_at, row.handed_at, row.attempts, row.refused or {})
        status, reason, values = settle(move, current, at)
        # The columns to set are the parameters named after them (the statement is built once).
        columns = {
            "status": status.value,
            "reason": reason,
            "updated_at": at,
            "lease_until": None,
            "claimed_by": None,
        }
        result = conn.execute(MOVE[mine], {**params, **columns, **values})
        if not result.rowcount:
            return False
        self._move(conn, key, row.status, status, at, reason)
        if status is Status.SENT and type(move) in UNSENT:  # it went to some: see `settle`
            log.warning("send %s: %s", key, reason)
        return True

    def pending_sequences(
        self, domains: Iterable[str], *, lost_before: datetime | None = None
    ) -> dict[str, list[SendRecord]]:
        found: dict[str, list[SendRecord]] = {}
        with self._read() as conn:
            for chunk in chunks(sorted(set(domains))):
                query = (
                    select(sends, event_domains.c.domain.label("customer_domain"))
                    .join(event_domains, event_domains.c.event_id == sends.c.event_id)
                    .where(
                        PLAYBOOK,
                        sends.c.status == Status.PLANNED.value,
                        sends.c.stop_on_reengagement.is_(True),
                        event_domains.c.domain.in_(chunk),
                    )
                    .order_by(sends.c.key)
                )
                if lost_before is not None:
                    lost = outcomes.c.recorded_at < lost_before
                    query = query.join(outcomes, outcomes.c.event_id == sends.c.event_id).where(lost)
                rows = conn.execute(query)
                for row in rows:
                    found.setdefault(row.customer_domain, []).append(record(row))
        return found

    def send(self, key: str) -> SendRecord | None:
        with self._read() as conn:
            row = conn.execute(select(sends).where(sends.c.key == key)).first()
        return record(row) if row else None

    def sends(
        self, statuses: Iterable[Status] | None = None, event_id: str | None = None
    ) -> list[SendRecord]:
        query = select(sends).where(PLAYBOOK).order_by(sends.c.due, sends.c.key)
        if statuses is not None:
            query = query.where(sends.c.status.in_([s.value for s in statuses]))
        if event_id is not None:
            query = query.where(sends.c.event_id == event_id)
        with self._read() as conn:
            return [record(r) for r in conn.execute(query)]

    def counts(self) -> dict[Status, int]:
        query = select(sends.c.status, func.count()).where(PLAYBOOK).group_by(sends.c.status)
        with self._read() as conn:
            return {Status(status): int(n) for status, n in conn.execute(query)}

    def sent_count(self, sender: str, since: datetime, service_sender: str) -> int:
        """How many messages went out from `sender` since a moment: for per-sender daily limits."""
        with self._read() as conn:
            rows = conn.execute(
                select(sends.c.sender).where(
                    PLAYBOOK, sends.c.status == Status.SENT.value, sends.c.sent_at >= since
                )
            ).scalars()
            return sum(1 for row in rows if (row[0] if row else service_sender) == sender)

    def record_test(self, send: PlannedSend, subject: str, move: Move, at: datetime) -> None:
        if not isinstance(move, Sent | Failed | Unknown):
            raise TypeError(f"a test send ends sent, failed or unknown, not {move!r}")
        status, reason, values = settle(move, Current(None, None, 0, {}), at)
        with self._tx() as conn:
            conn.execute(
                insert(sends).values(
                    **{**plan_values(send, subject), **values},
                    key=send.key,
                    status=status.value,
                    attempts=1,
                    reason=reason,
                    created_at=at,
                    updated_at=at,
                    test=True,
                )
            )
            self._move(conn, send.key, None, status, at, reason or "test, sent at once")

    def tests(self) -> list[SendRecord]:
        query = select(sends).where(sends.c.test.is_(True)).order_by(sends.c.due, sends.c.key)
        with self._read() as conn:
            return [record(r) for r in conn.execute(query)]

    def transitions(self, key: str | None = None) -> list[Transition]:
        query = select(transitions).order_by(transitions.c.id)
        if key is not None:
            query = query.where(transitions.c.key == key)
        with self._read() as conn:
            return [
                Transition(r.key, r.from_status, r.to_status, r.at, r.reason) for r in conn.execute(query)
            ]

    # -- suppression list -----------------------------------------------------------------
    def suppress(self, address: str, at: datetime, reason: str | None = None) -> bool:
        with self._tx() as conn:
            if conn.execute(select(suppressions).where(suppressions.c.address == address)).first():
                return False
            conn.execute(insert(suppressions).values(address=address, added_at=at, reason=reason))
            return True

    def unsuppress(self, address: str) -> bool:
        with self._tx() as conn:
            return bool(conn.execute(delete(suppressions).where(suppressions.c.address == address)).rowcount)

    def suppressed(self) -> list[tuple[str, datetime, str | None]]:
        with self._read() as conn:
            return [
                (r.address, r.added_at, r.reason)
                for r in conn.execute(select(suppressions).order_by(suppressions.c.address))
            ]

    def is_suppressed(self, addresses: Iterable[str]) -> set[str]:
        with self._read() as conn:
            return _suppressed(conn, addresses)


def _suppressed(conn: Connection, addresses: Iterable[str]) -> set[str]:
    """The addresses on the suppression list, themselves or by their domain."""
    addresses = list(addresses)
    return suppressed_among(addresses, listed(conn, addresses))
