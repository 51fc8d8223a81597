"""The store's claims: taking due sends, handing them over, releasing them, and finding orphans.

A claim is a lease with a fresh attempt id; every later write of the attempt is conditional on that id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.engine import Connection

from daemon.ledger.abc import ClaimTerms, Known
from daemon.ledger.base import Base, chunks, listed, read_outcomes
from daemon.ledger.moves import HELD
from daemon.ledger.schema import events, record, sends
from daemon.model import CalendarEvent, SendRecord, Status

# A claim given back without trying to send: it does not count as an attempt.
UNCOUNTED = case((sends.c.attempts > 0, sends.c.attempts - 1), else_=0)


def lapsed(now: datetime, dead: list[str]) -> Any:
    """A claim no one is working on: its lease ran out, or its owner is known to be dead."""
    if not dead:
        return sends.c.lease_until < now
    return or_(sends.c.lease_until < now, sends.c.claimed_by.in_(dead))


class ClaimStore(Base):
    """Claims, hand-overs, releases, orphans, and sends held for a pass."""

    def claim_due(self, now: datetime, terms: ClaimTerms) -> list[SendRecord]:
        """Atomically take the sends due now; each gets a fresh attempt id, a lease and its owner.

        Claims not yet handed over are taken again once their lease has run out, or at once when
        their owner is in `terms.from_dead` (instances known to be dead).
        """
        owner = terms.owner
        dead = [d for d in terms.from_dead if d and d != owner]
        claimed: list[SendRecord] = []
        with self._tx() as conn:
            query = (
                select(sends.c.key, sends.c.status, sends.c.claimed_by)
                .where(
                    sends.c.test.is_(False),  # a test was sent when it was recorded: never again
                    or_(
                        and_(
                            sends.c.status == Status.PLANNED.value,
                            sends.c.due <= now,
                            or_(sends.c.next_attempt.is_(None), sends.c.next_attempt <= now),
                        ),
                        # A claim whose lease ran out belongs to a process that died before it
                        # handed the message over: safe to take. (Handed ones: see `orphans`.)
                        and_(
                            sends.c.status == Status.CLAIMED.value,
                            sends.c.handed_at.is_(None),
                            lapsed(now, dead),
                        ),
                    ),
                )
                .order_by(sends.c.due)
                .limit(terms.limit)
            )
            rows = conn.execute(self.caps.claimable(query)).all()
            if not rows:
                return []
            attempts = {row.key: uuid.uuid4().hex for row in rows}
            # One statement for the batch: each row still only if it is in the state it was read in.
            conn.execute(
                update(sends)
                .where(sends.c.key == bindparam("k"), sends.c.status == bindparam("was"))
                .values(
                    status=Status.CLAIMED.value,
                    attempt_id=bindparam("attempt"),
                    lease_until=now + terms.lease,
                    claimed_by=owner,
                    attempts=sends.c.attempts + 1,
                    updated_at=now,
                ),
                [{"k": row.key, "was": row.status, "attempt": attempts[row.key]} for row in rows],
            )
            # Ours are those that carry our attempt id now (rowcounts of a batch differ by driver).
            taken = {
                r.key: record(r)
                for r in conn.execute(
                    select(sends).where(
                        sends.c.key.in_(list(attempts)), sends.c.attempt_id.in_(list(attempts.values()))
                    )
                )
            }
            moves = []
            for row in rows:
                if row.key not in taken:
                    continue
                if row.status == Status.PLANNED.value:
                    why = "claimed"
                elif row.claimed_by in dead:
                    why = f"claimed again: {row.claimed_by} is no longer running"
                else:
                    why = "claimed again: lease expired"
                moves.append((row.key, row.status, why))
                claimed.append(taken[row.key])
            self._moves(conn, moves, Status.CLAIMED, now)
        return claimed

    def claim_owners(self) -> set[str]:
        """The instances holding claims now: the dispatcher asks which of them are dead."""
        with self._read() as conn:
            return set(
                conn.execute(
                    select(sends.c.claimed_by)
                    .where(sends.c.status == Status.CLAIMED.value, sends.c.claimed_by.is_not(None))
                    .distinct()
                ).scalars()
            )

    def release_claims(
        self,
        at: datetime,
        reason: str,
        *,
        owner: str | None = None,
        attempt_ids: Iterable[str] = (),
    ) -> list[str]:
        """Put claims back to planned at once, due as before: those of `owner`, or with these attempt
        ids. Only claims not handed over: a handed one may have gone out (see `orphans`).

        Returns the keys released. The claim did not try to send, so it does not count as an attempt.
        """
        ids = list(attempt_ids)
        if owner is None and not ids:
            return []
        whose = sends.c.claimed_by == owner if owner is not None else sends.c.attempt_id.in_(ids)
        released: list[str] = []
        with self._tx() as conn:
            query = select(sends.c.key).where(
                sends.c.status == Status.CLAIMED.value, sends.c.handed_at.is_(None), whose
            )
            # Locked: a concurrent mark_handed waits, then finds it gone.
            for key in conn.execute(self.caps.locked(query)).scalars().all():
                result = conn.execute(
                    update(sends)
                    .where(
                        sends.c.key == key,
                        sends.c.status == Status.CLAIMED.value,
                        sends.c.handed_at.is_(None),
                        whose,
                    )
                    .values(
                        status=Status.PLANNED.value,
                        attempt_id=None,
                        lease_until=None,
                        claimed_by=None,
                        attempts=UNCOUNTED,
                        updated_at=at,
                    )
                )
                if result.rowcount:
                    self._move(conn, key, Status.CLAIMED.value, Status.PLANNED, at, reason)
                    released.append(key)
        return released

    def mark_handed(self, key: str, attempt_id: str, at: datetime, lease: timedelta) -> bool:
        """Commit, before the transport sees the message, that this attempt is handing it over.

        False if the claim is no longer ours (its lease ran out and another process took it).
        """
        with self._tx() as conn:
            return hand(conn, key, attempt_id, at, lease)

    def known(self, batch: Sequence[SendRecord]) -> Known:
        if not batch:
            return Known()
        event_ids = sorted({s.event_id for s in batch})
        deals = sorted({s.deal for s in batch if s.deal})
        found: dict[str, CalendarEvent] = {}
        by_deal: dict[str, list[CalendarEvent]] = {deal: [] for deal in deals}
        with self._read() as conn:
            for chunk in chunks(event_ids):
                rows = conn.execute(select(events.c.id, events.c.data).where(events.c.id.in_(chunk)))
                found.update((row.id, CalendarEvent.from_dict(row.data)) for row in rows)
            outcome = read_outcomes(conn, event_ids)
            for chunk in chunks(deals):
                rows = conn.execute(
                    select(events.c.id, events.c.deal, events.c.data)
                    .where(events.c.deal.in_(chunk), events.c.deleted.is_(False))
                    .order_by(events.c.start, events.c.id)  # as planning orders them: ties alike
                )
                for row in rows:
                    # A send's own event is parsed once.
                    event = found.get(row.id) or CalendarEvent.from_dict(row.data)
                    by_deal[row.deal].append(event)
            on_list = listed(conn, {p.email for s in batch for p in (*s.to, *s.cc)})
        return Known(found, {d: tuple(e) for d, e in by_deal.items()}, outcome, frozenset(on_list))

    def orphans(self, now: datetime, from_dead: Iterable[str] = ()) -> list[SendRecord]:
        """Sends handed to the transport by a process that stopped before recording the result: its
        lease ran out, or its owner is in `from_dead`."""
        with self._read() as conn:
            rows = conn.execute(
                select(sends).where(
                    sends.c.status == Status.CLAIMED.value,
                    sends.c.handed_at.is_not(None),
                    lapsed(now, [d for d in from_dead if d]),
                )
            ).all()
        return [record(r) for r in rows]

    def hold_due(self, now: datetime, until: datetime, reason: str) -> int:
        """Give every pending send due now the reason it waits and its next try, without claiming it:
        sending stopped for a pass (the server refused our account) and these were not tried."""
        due = and_(
            sends.c.status == Status.PLANNED.value,
            sends.c.due <= now,
            or_(sends.c.next_attempt.is_(None), sends.c.next_attempt <= now),
        )
        with self._tx() as conn:
            keys = list(conn.execute(select(sends.c.key).where(due)).scalars())
            for chunk in chunks(keys):
                conn.execute(
                    update(sends)
                    .where(due, sends.c.key.in_(chunk))
                    .values(reason=HELD + reason, next_attempt=until, updated_at=now)
                )
                for key in chunk:
                    self._move(conn, key, Status.PLANNED.value, Status.PLANNED, now, HELD + reason)
        return len(keys)

    def release_held(self) -> int:
        """Make sends held for a person's fix (reason "held: ...") due again: at start-up, since the
        settings may have been fixed meanwhile."""
        with self._tx() as conn:
            result = conn.execute(
                update(sends)
                .where(
                    sends.c.status == Status.PLANNED.value,
                    sends.c.reason.startswith(HELD, autoescape=True),
                    sends.c.next_attempt.is_not(None),
                )
                .values(next_attempt=None)
            )
            return int(result.rowcount or 0)

    def next_due(self) -> datetime | None:
        with self._read() as conn:
            due = conn.execute(
                select(func.min(func.coalesce(sends.c.next_attempt, sends.c.due))).where(
                    sends.c.status == Status.PLANNED.value
                )
            ).scalar()
            lease = conn.execute(
                select(func.min(sends.c.lease_until)).where(sends.c.status == Status.CLAIMED.value)
            ).scalar()
        times = [t for t in (due, lease) if t is not None]
        return min(times) if times else None


# Built once: a message's hand-over is the dispatcher's most frequent write.
HAND = (
    update(sends)
    .where(
        sends.c.key == bindparam("k"),
        sends.c.attempt_id == bindparam("attempt"),
        sends.c.status == Status.CLAIMED.value,
    )
    .values(handed_at=bindparam("at"), lease_until=bindparam("until"), updated_at=bindparam("at"))
)


def hand(conn: Connection, key: str, attempt_id: str, at: datetime, lease: timedelta) -> bool:
    """In `conn`'s transaction: this attempt hands its message over now; False if the claim is gone."""
    result = conn.execute(HAND, {"k": key, "attempt": attempt_id, "at": at, "until": at + lease})
    return bool(result.rowcount)
