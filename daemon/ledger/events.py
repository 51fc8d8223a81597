"""The store's calendar side: meta values, sync cursors and leases, events, and their outcomes.

What sources and the engine write after each sync; the send side is in `sends.py` and `claims.py`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from daemon.errors import UserError
from daemon.ledger.abc import CalendarChanges, Filing, OutcomeEntry, StoredEvent
from daemon.ledger.base import CHUNK, Base, Encoded, Inserts, chunks, read_outcomes
from daemon.ledger.schema import (
    cursors,
    event_domains,
    event_sources,
    events,
    meta,
    outcome_log,
    outcomes,
    sends,
    sync_leases,
)
from daemon.model import CalendarEvent, Outcome
from daemon.playbook import OutcomeRecord


def event_record(event: CalendarEvent) -> tuple[Encoded, str]:
    """The event as the ledger stores it, and a digest of everything known of it: a sync tells a changed
    event by it. The one encoding serves both."""
    text = json.dumps(event.to_dict(), sort_keys=True, ensure_ascii=False)
    return Encoded(text), hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


# What a sync writes of each event, new or edited.
EVENT_VALUES = ("data", "digest", "deal", "is_call", "start", "updated_at", "deleted", "unsettled")
# Built once: a pass writes every edited event with them, a chunk of events at a time.
_EDIT_EVENT = (
    update(events)
    .where(events.c.id == bindparam("id_"))
    .values({name: bindparam(name) for name in EVENT_VALUES})
)
_FORGET_DOMAINS = delete(event_domains).where(event_domains.c.event_id == bindparam("id_"))
_REFILE = (
    update(events)
    .where(events.c.id == bindparam("id_"))
    .values(deal=bindparam("deal"), is_call=bindparam("is_call"))
)


_LEAVE_SOURCE = delete(event_sources).where(
    event_sources.c.event_id == bindparam("id_"), event_sources.c.source == bindparam("source_")
)
_GONE = (
    update(events)
    .where(events.c.id == bindparam("id_"))
    .values(deleted=True, unsettled=True, updated_at=bindparam("at_"))
)


def _remove(conn: Connection, source: str, event_ids: list[str], at: datetime) -> list[str]:
    """Take these events out of `source`; those no other calendar holds are marked deleted, and
    returned. A chunk at a time, with statements built once: a moved series removes many at once.
    Their rows are locked already (`apply_sync`)."""
    conn.execute(_LEAVE_SOURCE, [{"id_": i, "source_": source} for i in event_ids])
    held = set(
        conn.execute(
            select(event_sources.c.event_id).where(event_sources.c.event_id.in_(event_ids))
        ).scalars()
    )
    live = set(
        conn.execute(
            select(events.c.id).where(events.c.id.in_(event_ids), events.c.deleted.is_(False))
        ).scalars()
    )
    gone = [i for i in event_ids if i in live and i not in held]
    if gone:
        conn.execute(_GONE, [{"id_": i, "at_": at} for i in gone])
    return gone


def _replace_domains(conn: Connection, rows: Inserts, domains: Mapping[str, frozenset[str]]) -> None:
    """These events' customer domains in place of those filed before: the old rows go first."""
    conn.execute(_FORGET_DOMAINS, [{"id_": event_id} for event_id in domains])
    for event_id, found in domains.items():
        for domain in sorted(found):
            rows.add(event_domains, {"event_id": event_id, "domain": domain})


class EventStore(Base):
    """Meta, cursors, sync leases, events and outcomes."""

    def get_meta(self, key: str) -> str | None:
        with self._read() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as conn:
            self._insert_new(conn, meta, [{"key": key, "value": value}])
            conn.execute(update(meta).where(meta.c.key == key).values(value=value))

    def cursor(self, source: str) -> dict[str, Any] | None:
        with self._read() as conn:
            return conn.execute(select(cursors.c.state).where(cursors.c.source == source)).scalar()

    def _save_cursor(self, conn: Connection, source: str, state: dict[str, Any], at: datetime) -> None:
        # The row first (empty), then the state: a large cursor is serialized and written once.
        self._insert_new(conn, cursors, [{"source": source, "state": {}, "synced_at": at}])
        conn.execute(update(cursors).where(cursors.c.source == source).values(state=state, synced_at=at))

    def sync_lease_owner(self, source: str) -> str | None:
        with self._read() as conn:
            return conn.execute(select(sync_leases.c.owner).where(sync_leases.c.source == source)).scalar()

    def sync_leases(self, now: datetime) -> dict[str, str]:
        """The calendars being synced right now, and by which instance."""
        with self._read() as conn:
            rows = conn.execute(
                select(sync_leases.c.source, sync_leases.c.owner).where(
                    sync_leases.c.owner.is_not(None), sync_leases.c.until >= now
                )
            ).all()
        return {row.source: row.owner for row in rows}

    def take_sync_lease(
        self, source: str, owner: str, now: datetime, ttl: timedelta, *, from_dead: str | None = None
    ) -> bool:
        """Only one instance syncs a calendar at a time; a dead instance's lease runs out, or is
        taken at once from `from_dead`, an owner known to be dead."""
        with self._tx() as conn:
            self._insert_new(conn, sync_leases, [{"source": source}])
            result = conn.execute(
                update(sync_leases)
                .where(
                    sync_leases.c.source == source,
                    or_(
                        sync_leases.c.until.is_(None),
                        sync_leases.c.until < now,
                        sync_leases.c.owner == owner,
                        sync_leases.c.owner == (from_dead or owner),
                    ),
                )
                .values(owner=owner, until=now + ttl)
            )
            return bool(result.rowcount)

    def release_sync_lease(self, source: str, owner: str) -> None:
        with self._tx() as conn:
            conn.execute(
                update(sync_leases)
                .where(sync_leases.c.source == source, sync_leases.c.owner == owner)
                .values(owner=None, until=None)
            )

    def apply_sync(self, changes: CalendarChanges, at: datetime) -> tuple[list[str], list[str], list[str]]:
        """Store one calendar's changes and its new cursor together.

        Returns the ids of events that are new, changed, and gone from every calendar.
        """
        source, upserted, filings = changes.source, changes.upserted, changes.filings
        unfiled = Filing()
        new: list[str] = []
        changed: list[str] = []
        gone: list[str] = []
        with self._tx() as conn:
            ids = [e.id for e in upserted]
            removed = list(dict.fromkeys(changes.removed))
            known: dict[str, tuple[str, bool]] = {}
            # Every event this sync touches is locked first, in one order (by id), so that two instances
            # syncing two calendars at once take turns on the events both hold: otherwise one dropping
            # an event would not see the other's calendar holding it, and mark it deleted.
            for chunk in chunks(sorted({*ids, *removed})):
                for row in self._locked(conn, chunk, events.c.digest, events.c.deleted):
                    known[row.id] = (row.digest, row.deleted)
            held: set[str] = set()
            for chunk in chunks(ids):
                held.update(
                    conn.execute(
                        select(event_sources.c.event_id).where(
                            event_sources.c.source == source, event_sources.c.event_id.in_(chunk)
                        )
                    ).scalars()
                )
            rows = Inserts(self, conn)  # written a chunk at a time: the encoded events are never all held
            edits: list[dict[str, Any]] = []  # so are edited events, each chunk with one statement

            def write_edits() -> None:
                conn.execute(_EDIT_EVENT, edits)
                _replace_domains(
                    conn, rows, {e["id_"]: filings.get(e["id_"], unfiled).domains for e in edits}
                )
                edits.clear()

            for ev in upserted:
                data, digest = event_record(ev)
                filed = filings.get(ev.id, unfiled)
                values = {
                    "data": data,
                    "digest": digest,
                    "deal": filed.deal,
                    "is_call": filed.call,
                    "start": ev.start,
                    "updated_at": at,
                    "deleted": False,
                    "unsettled": True,
                }
                if ev.id not in known:
                    rows.add(events, {"id": ev.id, "first_seen": at, **values})
                    new.append(ev.id)
                    for d in sorted(filed.domains):
                        rows.add(event_domains, {"event_id": ev.id, "domain": d})
                elif known[ev.id] != (digest, False):
                    edits.append({"id_": ev.id, **values})
                    if len(edits) >= CHUNK:
                        write_edits()
                    changed.append(ev.id)
                if ev.id not in held:
                    rows.add(event_sources, {"event_id": ev.id, "source": source})
                    held.add(ev.id)
            if edits:
                write_edits()
            rows.flush()
            for chunk in chunks(removed):
                gone += _remove(conn, source, chunk, at)
            self._save_cursor(conn, source, changes.state, at)
        return new, changed, gone

    def with_sends_or_outcome(self, event_ids: list[str]) -> set[str]:
        """Which of these events have sends or an outcome: the ones whose changes matter."""
        found: set[str] = set()
        with self._read() as conn:
            for chunk in chunks(event_ids):
                found.update(
                    conn.execute(
                        select(sends.c.event_id).where(sends.c.event_id.in_(chunk), sends.c.test.is_(False))
                    ).scalars()
                )
                found.update(
                    conn.execute(select(outcomes.c.event_id).where(outcomes.c.event_id.in_(chunk))).scalars()
                )
        return found

    def mark_settled(self, event_ids: list[str]) -> None:
        with self._tx() as conn:
            for chunk in chunks(event_ids):
                conn.execute(update(events).where(events.c.id.in_(chunk)).values(unsettled=False))

    def unsettled_events(self, skip_sources: Iterable[str] = ()) -> list[str]:
        """Events stored but not yet planned, except those of `skip_sources`: calendars another
        instance is syncing right now, and so planning."""
        query = select(events.c.id).where(events.c.unsettled.is_(True))
        skip = list(skip_sources)
        if skip:
            busy = select(event_sources.c.event_id).where(event_sources.c.source.in_(skip))
            query = query.where(events.c.id.not_in(busy))
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def event(self, event_id: str) -> StoredEvent | None:
        return self.events_by_id([event_id]).get(event_id)

    def events_by_id(self, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
        """These events as stored, deleted ones too; an id not in the ledger is left out."""
        found: dict[str, StoredEvent] = {}
        with self._read() as conn:
            for chunk in chunks(list(dict.fromkeys(event_ids))):
                held: dict[str, list[str]] = {}
                for row in conn.execute(select(event_sources).where(event_sources.c.event_id.in_(chunk))):
                    held.setdefault(row.event_id, []).append(row.source)
                for row in conn.execute(select(events).where(events.c.id.in_(chunk))):
                    event = CalendarEvent.from_dict(row.data)
                    found[row.id] = StoredEvent(
                        event, row.first_seen, row.deleted, tuple(held.get(row.id, ())), row.digest
                    )
        return found

    def first_seen(self, event_ids: Iterable[str]) -> dict[str, datetime]:
        """When each of these events was first stored."""
        seen: dict[str, datetime] = {}
        with self._read() as conn:
            for chunk in chunks(list(dict.fromkeys(event_ids))):
                query = select(events.c.id, events.c.first_seen).where(events.c.id.in_(chunk))
                seen.update((row.id, row.first_seen) for row in conn.execute(query))
        return seen

    def find_event(self, text: str) -> StoredEvent:
        """An event by its id, or by a unique prefix of it; UserError otherwise."""
        found = self.event(text)
        if found:
            return found
        with self._read() as conn:
            pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            ids = (
                conn.execute(select(events.c.id).where(events.c.id.like(pattern, escape="\\")).limit(6))
                .scalars()
                .all()
            )
        if len(ids) == 1:
            stored = self.event(ids[0])
            assert stored is not None
            return stored
        if not ids:
            raise UserError(f"no event with id {text!r} (see `followthrough plan` for event ids)")
        raise UserError(f"{text!r} matches several events: {', '.join(ids[:5])}; give more of the id")

    def events_of_deal(self, deal: str) -> list[CalendarEvent]:
        """The deal's live events, earliest first: for a template's kickoff and closing call."""
        with self._read() as conn:
            rows = conn.execute(
                select(events.c.data)
                .where(events.c.deal == deal, events.c.deleted.is_(False))
                .order_by(events.c.start, events.c.id)
            ).scalars()
            return [CalendarEvent.from_dict(data) for data in rows]

    def deal_calls(self, deals: Iterable[str]) -> dict[str, list[str]]:
        members: dict[str, list[str]] = {}
        with self._read() as conn:
            for chunk in chunks(list(dict.fromkeys(deals))):
                rows = conn.execute(
                    select(events.c.id, events.c.deal)
                    .where(
                        events.c.deal.in_(chunk), events.c.deleted.is_(False), events.c.is_call.is_not(False)
                    )
                    .order_by(events.c.start, events.c.id)
                )
                for row in rows:
                    members.setdefault(row.deal, []).append(row.id)
        return members

    def refile(self, filings: Mapping[str, tuple[Filing, str]]) -> int:
        written = 0
        with self._tx() as conn:
            rows = Inserts(self, conn)
            for chunk in chunks(sorted(filings)):
                # Locked as read: a sync cannot change an event between this look and the write.
                found = self._locked(conn, chunk, events.c.digest, events.c.deal, events.c.is_call)
                stored = {r.id: r for r in found}
                domains: dict[str, set[str]] = {}
                for held in conn.execute(select(event_domains).where(event_domains.c.event_id.in_(chunk))):
                    domains.setdefault(held.event_id, set()).add(held.domain)
                changed = [
                    i
                    for i in chunk
                    if (row := stored.get(i)) is not None
                    and row.digest == filings[i][1]
                    and (row.deal, row.is_call, domains.get(i, set()))
                    != (filings[i][0].deal, filings[i][0].call, filings[i][0].domains)
                ]
                if not changed:
                    continue
                conn.execute(
                    _REFILE,
                    [{"id_": i, "deal": filings[i][0].deal, "is_call": filings[i][0].call} for i in changed],
                )
                _replace_domains(conn, rows, {i: filings[i][0].domains for i in changed})
                written += len(changed)
            rows.flush()
        return written

    def _locked(self, conn: Connection, chunk: list[str], *columns: Any) -> Iterable[Any]:
        """These events' rows (id and `columns`), held until the transaction ends, in id order: whatever
        locks events locks them in that order, a sorted chunk at a time, so two transactions never wait
        on each other in a circle."""
        query = select(events.c.id, *columns).where(events.c.id.in_(chunk)).order_by(events.c.id)
        return conn.execute(self.caps.locked(query))

    def unfiled_events(self) -> list[str]:
        with self._read() as conn:
            query = select(events.c.id).where(events.c.is_call.is_(None), events.c.deleted.is_(False))
            return list(conn.execute(query).scalars())

    def all_event_ids(self) -> list[str]:
        with self._read() as conn:
            return list(conn.execute(select(events.c.id).where(events.c.deleted.is_(False))).scalars())

    def outcome(self, event_id: str) -> OutcomeRecord | None:
        return self.outcomes([event_id]).get(event_id)

    def outcomes(self, event_ids: Iterable[str]) -> dict[str, OutcomeRecord]:
        """The outcomes known of these events; one without is left out."""
        with self._read() as conn:
            return read_outcomes(conn, event_ids)

    def record_outcome(
        self, event_id: str, outcome: Outcome, source: str, at: datetime, detail: str | None = None
    ) -> bool:
        """Store an outcome; True if it is new or different from the one already known."""
        with self._tx() as conn:
            row = conn.execute(select(outcomes).where(outcomes.c.event_id == event_id)).first()
            if row is not None and row.outcome == outcome.value:
                if source != "tag" and row.source == "tag":  # a person confirmed what the tag says
                    where = outcomes.c.event_id == event_id
                    conn.execute(update(outcomes).where(where).values(source=source))
                return False
            conn.execute(delete(outcomes).where(outcomes.c.event_id == event_id))
            values = {"event_id": event_id, "outcome": outcome.value, "source": source, "recorded_at": at}
            conn.execute(insert(outcomes).values(**values))
            conn.execute(insert(outcome_log).values(**values, detail=detail))
            return True

    def outcome_log(self, event_id: str) -> list[OutcomeEntry]:
        with self._read() as conn:
            rows = conn.execute(
                select(outcome_log).where(outcome_log.c.event_id == event_id).order_by(outcome_log.c.id)
            )
            return [OutcomeEntry(Outcome(r.outcome), r.source, r.detail, r.recorded_at) for r in rows]

    def clear_outcome(self, event_id: str, source: str) -> bool:
        """Forget a tag's outcome once the tag is gone; an outcome from the command line stays."""
        with self._tx() as conn:
            result = conn.execute(
                delete(outcomes).where(outcomes.c.event_id == event_id, outcomes.c.source == source)
            )
            return bool(result.rowcount)

    def _note_tags(
        self, conn: Connection, tagged: Mapping[str, Outcome | None], at: datetime
    ) -> dict[str, Outcome | None]:
        """`record_outcome` of each event's tagged outcome, or `clear_outcome` of a tag's that is gone, for
        many events in this transaction. Returns those whose outcome changed, and to what."""
        known: dict[str, Any] = {}
        for chunk in chunks(list(tagged)):
            known.update(
                (r.event_id, r) for r in conn.execute(select(outcomes).where(outcomes.c.event_id.in_(chunk)))
            )
        changed: dict[str, Outcome | None] = {}
        rows: list[dict[str, Any]] = []
        for event_id, outcome in tagged.items():
            row = known.get(event_id)
            if outcome is not None and (row is None or row.outcome != outcome.value):
                rows.append(
                    {"event_id": event_id, "outcome": outcome.value, "source": "tag", "recorded_at": at}
                )
                changed[event_id] = outcome
            elif outcome is None and row is not None and row.source == "tag":
                changed[event_id] = None
        gone = [event_id for event_id in changed if event_id in known]
        for chunk in chunks(gone):
            conn.execute(delete(outcomes).where(outcomes.c.event_id.in_(chunk)))
        if rows:
            conn.execute(insert(outcomes), rows)
            conn.execute(insert(outcome_log), [{**row, "detail": None} for row in rows])
        return changed
