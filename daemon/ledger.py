"""The ledger: the one durable record of events, outcomes and every send's life.

SQLAlchemy Core over SQLite (default) or PostgreSQL. A send moves planned -> claimed -> sent | failed |
cancelled | skipped | stopped; every move is written to `transitions` with its time and reason. A send
that went out to some of its recipients (`sent_at` set) can only end sent.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from daemon.errors import LedgerError, UserError
from daemon.model import CalendarEvent, Outcome, Person, PlannedSend, Status
from daemon.playbook import OutcomeRecord

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
# Each step brings a database from the version before it; run in order, in one transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE sends ADD COLUMN handed_at TIMESTAMP",
        "ALTER TABLE cursors ADD COLUMN lease_owner VARCHAR(200)",
        "ALTER TABLE cursors ADD COLUMN lease_until TIMESTAMP",
        "ALTER TABLE events ADD COLUMN unsettled BOOLEAN NOT NULL DEFAULT FALSE",
    ),
    3: ("ALTER TABLE sends ADD COLUMN claimed_by VARCHAR(200)",),
}
REVIVABLE = (Status.PLANNED, Status.CANCELLED, Status.SKIPPED)  # re-planning may bring these back
# Ends of a send that did not go out: one that already went to some of its recipients ends sent instead.
UNSENT_ENDS = (Status.FAILED, Status.SKIPPED, Status.STOPPED, Status.CANCELLED)


def put_off(refused: Mapping[str, str]) -> dict[str, str]:
    """Of the recipients a server refused (address: answer, "452 4.5.3 ..."), those it put off: a 4xx,
    or a 5.7.x policy refusal ("554 5.7.1 <x>: Relay access denied") that a fix of the mail settings
    lifts. A send that went to the others is retried to them alone; the rest are refused for good."""
    return {r: a for r, a in refused.items() if _put_off_answer(a)}


def _put_off_answer(answer: str) -> bool:
    code, _, text = answer.partition(" ")
    return code[:1] == "4" or (code[:1] == "5" and text.startswith("5.7."))


def gave_up(refused: Mapping[str, str], why: str) -> str:
    """The note of a send that went to some recipients and will not be tried again for the others."""
    later = put_off(refused)
    missed = [f"{r} (put off: {a})" for r, a in later.items()]
    missed += [f"{r} (refused: {a})" for r, a in refused.items() if r not in later]
    why = why if why.startswith("gave up") else f"gave up, {why}"
    return f"sent to the others; not to {', '.join(missed)}: {why}" if missed else f"sent; {why}"


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC, always handed back aware: one convention on every database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


metadata = MetaData()

meta = Table("meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text))

events = Table(
    "events",
    metadata,
    Column("id", String(600), primary_key=True),
    Column("data", JSON, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("deal", String(300), index=True),
    Column("start", UTCDateTime, index=True),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # Stored, but its plan not yet committed: a crash in between is finished by the next pass.
    Column("unsettled", Boolean, nullable=False, default=False, index=True),
)

# Which calendars hold each event: the same meeting in two reps' calendars is one event.
event_sources = Table(
    "event_sources",
    metadata,
    Column("event_id", String(600), primary_key=True),
    Column("source", String(300), primary_key=True),
)

event_domains = Table(
    "event_domains",
    metadata,
    Column("event_id", String(600), primary_key=True),
    Column("domain", String(255), primary_key=True, index=True),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("event_id", String(600), primary_key=True),
    Column("outcome", String(16), nullable=False),
    Column("source", String(16), nullable=False),  # "tag" or "cli"
    Column("recorded_at", UTCDateTime, nullable=False),
)

sends = Table(
    "sends",
    metadata,
    Column("key", String(700), primary_key=True),
    Column("rule", String(100), nullable=False),
    Column("event_id", String(600), nullable=False, index=True),
    Column("deal", String(300), index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("due", UTCDateTime, nullable=False, index=True),
    Column("expires", UTCDateTime),
    Column("sender", JSON),
    Column("reply_to", JSON),
    Column("to", JSON, nullable=False),
    Column("cc", JSON, nullable=False),
    Column("audience", String(20), nullable=False),
    Column("template", String(200), nullable=False),
    Column("stop_on_reengagement", Boolean, nullable=False, default=False),
    Column("subject", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", UTCDateTime),
    Column("attempt_id", String(40)),
    Column("lease_until", UTCDateTime),
    # The instance (`host:pid:nonce`) holding the claim: a dead one's claims are taken at once.
    Column("claimed_by", String(200)),
    Column("message_id", String(300)),
    Column("handed_at", UTCDateTime),  # set, and committed, just before the transport gets it
    Column("refused", JSON),
    Column("reason", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(700), nullable=False, index=True),
    Column("from_status", String(16)),
    Column("to_status", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("reason", Text),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("address", String(320), primary_key=True),
    Column("added_at", UTCDateTime, nullable=False),
    Column("reason", Text),
)

cursors = Table(
    "cursors",
    metadata,
    Column("source", String(300), primary_key=True),
    Column("state", JSON, nullable=False),
    Column("synced_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(200)),  # the instance syncing this calendar now, if any
    Column("lease_until", UTCDateTime),
)


def _people(people: Iterable[Person]) -> list[list[str]]:
    return [[p.email, p.name] for p in people]


def _person(value: list[str] | None) -> Person | None:
    return Person(value[0], value[1]) if value else None


@dataclass(frozen=True)
class SendRecord:
    """A send as the ledger holds it."""

    key: str
    rule: str
    event_id: str
    deal: str
    status: Status
    due: datetime
    expires: datetime | None
    sender: Person | None
    reply_to: Person | None
    to: tuple[Person, ...]
    cc: tuple[Person, ...]
    audience: str
    template: str
    stop_on_reengagement: bool
    subject: str | None
    attempts: int
    next_attempt: datetime | None
    attempt_id: str | None
    message_id: str | None
    refused: dict[str, str]
    reason: str | None
    updated_at: datetime
    sent_at: datetime | None
    handed_at: datetime | None = None
    claimed_by: str | None = None  # while claimed: the instance holding it, until lease_until
    lease_until: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> SendRecord:
        return cls(
            key=row.key,
            rule=row.rule,
            event_id=row.event_id,
            deal=row.deal,
            status=Status(row.status),
            due=row.due,
            expires=row.expires,
            sender=_person(row.sender),
            reply_to=_person(row.reply_to),
            to=tuple(Person(e, n) for e, n in row.to),
            cc=tuple(Person(e, n) for e, n in row.cc),
            audience=row.audience,
            template=row.template,
            stop_on_reengagement=row.stop_on_reengagement,
            subject=row.subject,
            attempts=row.attempts,
            next_attempt=row.next_attempt,
            attempt_id=row.attempt_id,
            message_id=row.message_id,
            refused=row.refused or {},
            reason=row.reason,
            updated_at=row.updated_at,
            sent_at=row.sent_at,
            handed_at=row.handed_at,
            claimed_by=row.claimed_by,
            lease_until=row.lease_until,
        )


@dataclass(frozen=True)
class Transition:
    key: str
    from_status: str | None
    to_status: str
    at: datetime
    reason: str | None


@dataclass(frozen=True)
class StoredEvent:
    event: CalendarEvent
    first_seen: datetime
    deleted: bool
    sources: tuple[str, ...]


def event_digest(event: CalendarEvent) -> str:
    import hashlib

    text = json.dumps(event.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class Ledger:
    """All reads and writes of the durable state. Each public method is one transaction."""

    def __init__(self, url: str, busy_timeout: timedelta = timedelta(seconds=10)) -> None:
        self.url = url
        try:
            self.engine: Engine = create_engine(url, future=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise UserError(f"store url {url!r} cannot be used: {exc}") from None
        if self.engine.dialect.name not in ("sqlite", "postgresql"):
            raise UserError(f"store url {url!r}: followthrough keeps its ledger in SQLite or PostgreSQL")
        if self.engine.dialect.name == "sqlite":
            timeout_ms = int(busy_timeout.total_seconds() * 1000)
            event.listen(self.engine, "connect", lambda dbapi, _: _sqlite_pragmas(dbapi, timeout_ms))
            # Writers take the lock at BEGIN: two processes never both read, then both fail to write.
            event.listen(
                self.engine,
                "begin",
                lambda conn: conn.exec_driver_sql("BEGIN" if conn.info.get("reading") else "BEGIN IMMEDIATE"),
            )
        with self._read() as conn:
            current = inspect(conn).has_table("meta") and conn.execute(
                select(meta.c.value).where(meta.c.key == "schema_version")
            ).scalar() == str(SCHEMA_VERSION)
        if not current:  # only then write: a read-only ledger can still be read
            with self._tx() as conn:
                self._upgrade(conn)

    def _upgrade(self, conn: Connection) -> None:
        """Create a new ledger, or bring an older one up to this version's schema."""
        if self.engine.dialect.name == "postgresql":
            # Several instances starting at once: one creates or upgrades, the others wait and see it.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7244911)")
        inspector = inspect(conn)
        if not inspector.has_table("meta"):
            metadata.create_all(conn)
            conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            return
        version = int(conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar() or 1)
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger at {self._where} has schema version {version}, newer than this "
                f"followthrough understands ({SCHEMA_VERSION}): upgrade followthrough"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                conn.exec_driver_sql(statement)
            log.warning("ledger at %s upgraded to schema version %d", self._where, step)
        metadata.create_all(conn)  # tables added since: created empty
        conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One transaction; database trouble becomes a LedgerError that says what and where."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise LedgerError(f"the ledger at {self._where}: {_reason(exc)}") from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn.info["reading"] = True
                try:
                    yield conn
                finally:
                    conn.info.pop("reading", None)
        except DBAPIError as exc:
            raise LedgerError(f"the ledger at {self._where}: {_reason(exc)}") from None

    @property
    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def get_meta(self, key: str) -> str | None:
        with self._read() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as conn:
            self._ensure(conn, meta, {"key": key, "value": value})
            conn.execute(update(meta).where(meta.c.key == key).values(value=value))

    def _ensure(self, conn: Connection, table: Table, row: dict[str, Any]) -> None:
        """Insert the row unless one with its key exists; safe when several instances race."""
        self._insert_new(conn, table, [row])

    def _insert_new(self, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows, skipping any whose key another instance has just inserted."""
        module = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        conn.execute(module.insert(table).on_conflict_do_nothing(), rows)

    # -- cursors --------------------------------------------------------------------------
    def cursor(self, source: str) -> dict[str, Any] | None:
        with self._read() as conn:
            return conn.execute(select(cursors.c.state).where(cursors.c.source == source)).scalar()

    def _save_cursor(self, conn: Connection, source: str, state: dict[str, Any], at: datetime) -> None:
        self._ensure(conn, cursors, {"source": source, "state": state, "synced_at": at})
        conn.execute(update(cursors).where(cursors.c.source == source).values(state=state, synced_at=at))

    # -- events ---------------------------------------------------------------------------
    def apply_sync(
        self,
        source: str,
        upserted: list[CalendarEvent],
        removed: list[str],
        state: dict[str, Any],
        deals: dict[str, str | None],
        domains: dict[str, set[str]],
        at: datetime,
    ) -> tuple[list[str], list[str], list[str]]:
        """Store one calendar's changes and its new cursor together.

        Returns the ids of events that are new, changed, and gone from every calendar.
        """
        new: list[str] = []
        changed: list[str] = []
        gone: list[str] = []
        with self._tx() as conn:
            ids = [e.id for e in upserted]
            known: dict[str, tuple[str, bool]] = {}
            for chunk in _chunks(ids, 500):
                for row in conn.execute(
                    select(events.c.id, events.c.digest, events.c.deleted).where(events.c.id.in_(chunk))
                ):
                    known[row.id] = (row.digest, row.deleted)
            held: set[str] = set()
            for chunk in _chunks(ids, 500):
                held.update(
                    conn.execute(
                        select(event_sources.c.event_id).where(
                            event_sources.c.source == source, event_sources.c.event_id.in_(chunk)
                        )
                    ).scalars()
                )
            new_rows, new_links, new_domains = [], [], []
            for ev in upserted:
                digest = event_digest(ev)
                values = {
                    "data": ev.to_dict(),
                    "digest": digest,
                    "deal": deals.get(ev.id),
                    "start": ev.start,
                    "updated_at": at,
                    "deleted": False,
                    "unsettled": True,
                }
                if ev.id not in known:
                    new_rows.append({"id": ev.id, "first_seen": at, **values})
                    new.append(ev.id)
                    new_domains += [{"event_id": ev.id, "domain": d} for d in sorted(domains.get(ev.id, ()))]
                elif known[ev.id] != (digest, False):
                    conn.execute(update(events).where(events.c.id == ev.id).values(**values))
                    conn.execute(delete(event_domains).where(event_domains.c.event_id == ev.id))
                    new_domains += [{"event_id": ev.id, "domain": d} for d in sorted(domains.get(ev.id, ()))]
                    changed.append(ev.id)
                if ev.id not in held:
                    new_links.append({"event_id": ev.id, "source": source})
                    held.add(ev.id)
            for chunk in _chunks(new_rows, 500):
                self._insert_new(conn, events, chunk)
            for chunk in _chunks(new_links, 500):
                self._insert_new(conn, event_sources, chunk)
            for chunk in _chunks(new_domains, 500):
                self._insert_new(conn, event_domains, chunk)
            for event_id in removed:
                conn.execute(
                    delete(event_sources).where(
                        event_sources.c.event_id == event_id, event_sources.c.source == source
                    )
                )
                still = conn.execute(
                    select(event_sources.c.source).where(event_sources.c.event_id == event_id)
                ).first()
                if still is None:
                    result = conn.execute(
                        update(events)
                        .where(events.c.id == event_id, events.c.deleted.is_(False))
                        .values(deleted=True, unsettled=True, updated_at=at)
                    )
                    if result.rowcount:
                        gone.append(event_id)
            self._save_cursor(conn, source, state, at)
        return new, changed, gone

    def with_sends_or_outcome(self, event_ids: list[str]) -> set[str]:
        """Which of these events have sends or an outcome: the ones whose changes matter."""
        found: set[str] = set()
        with self._read() as conn:
            for chunk in _chunks(event_ids, 500):
                found.update(
                    conn.execute(select(sends.c.event_id).where(sends.c.event_id.in_(chunk))).scalars()
                )
                found.update(
                    conn.execute(select(outcomes.c.event_id).where(outcomes.c.event_id.in_(chunk))).scalars()
                )
        return found

    def mark_settled(self, event_ids: list[str]) -> None:
        with self._tx() as conn:
            for chunk in _chunks(event_ids, 500):
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

    def sync_leases(self, now: datetime) -> dict[str, str]:
        """The calendars being synced right now, and by which instance."""
        with self._read() as conn:
            rows = conn.execute(
                select(cursors.c.source, cursors.c.lease_owner).where(
                    cursors.c.lease_owner.is_not(None), cursors.c.lease_until >= now
                )
            ).all()
        return {row.source: row.lease_owner for row in rows}

    def event(self, event_id: str) -> StoredEvent | None:
        with self._read() as conn:
            row = conn.execute(select(events).where(events.c.id == event_id)).first()
            if row is None:
                return None
            sources = conn.execute(
                select(event_sources.c.source).where(event_sources.c.event_id == event_id)
            ).scalars()
            return StoredEvent(CalendarEvent.from_dict(row.data), row.first_seen, row.deleted, tuple(sources))

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
                .order_by(events.c.start)
            ).scalars()
            return [CalendarEvent.from_dict(data) for data in rows]

    def all_event_ids(self) -> list[str]:
        with self._read() as conn:
            return list(conn.execute(select(events.c.id).where(events.c.deleted.is_(False))).scalars())

    # -- outcomes -------------------------------------------------------------------------
    def outcome(self, event_id: str) -> OutcomeRecord | None:
        with self._read() as conn:
            row = conn.execute(select(outcomes).where(outcomes.c.event_id == event_id)).first()
        return OutcomeRecord(Outcome(row.outcome), row.recorded_at, row.source) if row else None

    def record_outcome(self, event_id: str, outcome: Outcome, source: str, at: datetime) -> bool:
        """Store an outcome; True if it is new or different from the one already known."""
        with self._tx() as conn:
            row = conn.execute(select(outcomes).where(outcomes.c.event_id == event_id)).first()
            if row is not None and row.outcome == outcome.value:
                if source == "cli" and row.source != "cli":
                    conn.execute(update(outcomes).where(outcomes.c.event_id == event_id).values(source="cli"))
                return False
            conn.execute(delete(outcomes).where(outcomes.c.event_id == event_id))
            conn.execute(
                insert(outcomes).values(
                    event_id=event_id, outcome=outcome.value, source=source, recorded_at=at
                )
            )
            return True

    def clear_outcome(self, event_id: str, source: str) -> bool:
        """Forget a tag's outcome once the tag is gone; an outcome from the command line stays."""
        with self._tx() as conn:
            result = conn.execute(
                delete(outcomes).where(outcomes.c.event_id == event_id, outcomes.c.source == source)
            )
            return bool(result.rowcount)

    # -- sends ----------------------------------------------------------------------------
    def _move(
        self, conn: Connection, key: str, old: str | None, new: Status, at: datetime, reason: str | None
    ) -> None:
        conn.execute(
            insert(transitions).values(key=key, from_status=old, to_status=new.value, at=at, reason=reason)
        )

    def reconcile(
        self,
        event_id: str,
        planned: Iterable[PlannedSend],
        dropped: dict[str, str],
        subjects: dict[str, str],
        at: datetime,
        cancel_all_reason: str | None = None,
    ) -> dict[str, int]:
        """Bring an event's sends in line with its new plan. Sent mail is never touched.

        A pending send whose rule no longer applies is cancelled with the reason; one that comes back
        (the event moved again, the outcome changed back) is planned again under the same key. A send
        pending only for recipients a server put off, having gone to the others, is recorded sent
        (counted as cancelled: its retry is) when its rule no longer applies or its plan changes: the
        others got the message of the old plan.
        """
        counts = {"planned": 0, "updated": 0, "cancelled": 0}
        planned = list(planned)
        with self._tx() as conn:
            existing = {
                row.key: row for row in conn.execute(select(sends).where(sends.c.event_id == event_id))
            }
            for send in planned:
                values = {
                    "rule": send.rule,
                    "event_id": send.event_id,
                    "deal": send.deal,
                    "due": send.due,
                    "expires": send.expires,
                    "sender": [send.sender.email, send.sender.name] if send.sender else None,
                    "reply_to": [send.reply_to.email, send.reply_to.name] if send.reply_to else None,
                    "to": _people(send.to),
                    "cc": _people(send.cc),
                    "audience": send.audience.value,
                    "template": send.template,
                    "stop_on_reengagement": send.stop_on_reengagement,
                    "subject": subjects.get(send.key),
                    "updated_at": at,
                }
                row = existing.get(send.key)
                if row is None:
                    conn.execute(
                        insert(sends).values(
                            key=send.key, status=Status.PLANNED.value, attempts=0, created_at=at, **values
                        )
                    )
                    self._move(conn, send.key, None, Status.PLANNED, at, f"due {send.due.isoformat()}")
                    counts["planned"] += 1
                elif row.sent_at is not None:  # it went to some recipients: never planned anew
                    changed = [
                        k
                        for k, v in values.items()
                        # Without a subject for `plan`, the one it was sent with stands.
                        if k != "updated_at" and not (k == "subject" and v is None) and getattr(row, k) != v
                    ]
                    if row.status == Status.PLANNED.value and changed:
                        why = f"moved to {send.due.isoformat()}" if "due" in changed else "details changed"
                        if self._end_sent(conn, row, at, f"the event changed ({why})"):
                            counts["cancelled"] += 1
                elif row.status in REVIVABLE:
                    comparable = {k: v for k, v in values.items() if k != "updated_at"}
                    if row.status != Status.PLANNED.value or any(
                        getattr(row, k) != v for k, v in comparable.items()
                    ):
                        conn.execute(
                            update(sends)
                            .where(sends.c.key == send.key, sends.c.status == row.status)
                            .values(status=Status.PLANNED.value, reason=None, next_attempt=None, **values)
                        )
                        why = (
                            f"moved to {send.due.isoformat()}"
                            if row.due != send.due
                            else "planned again"
                            if row.status != Status.PLANNED.value
                            else "details changed"
                        )
                        self._move(conn, send.key, row.status, Status.PLANNED, at, why)
                        counts["updated"] += 1
            keep = {s.key for s in planned}
            for key, row in existing.items():
                if key in keep or row.status != Status.PLANNED.value:
                    continue
                reason = cancel_all_reason or dropped.get(key) or "rule no longer applies"
                if row.sent_at is not None:
                    if self._end_sent(conn, row, at, reason):
                        counts["cancelled"] += 1
                    continue
                conn.execute(
                    update(sends)
                    .where(sends.c.key == key, sends.c.status == Status.PLANNED.value)
                    .values(status=Status.CANCELLED.value, reason=reason, updated_at=at)
                )
                self._move(conn, key, row.status, Status.CANCELLED, at, reason)
                counts["cancelled"] += 1
            # In the same transaction as the plan: settled means planned, never half of it.
            conn.execute(update(events).where(events.c.id == event_id).values(unsettled=False))
        return counts

    def _end_sent(self, conn: Connection, row: Any, at: datetime, why: str) -> bool:
        """Record sent a pending send that went to some of its recipients, and will not be retried for
        the others: the reason names them, and why."""
        note = gave_up(row.refused or {}, why)
        result = conn.execute(
            update(sends)
            .where(sends.c.key == row.key, sends.c.status == Status.PLANNED.value)
            .values(status=Status.SENT.value, reason=note, updated_at=at)
        )
        if not result.rowcount:
            return False
        self._move(conn, row.key, Status.PLANNED.value, Status.SENT, at, note)
        log.warning("send %s: %s", row.key, note)
        return True

    def stop_sequence(self, key: str, reason: str, at: datetime) -> bool:
        """Stop a pending send; one that already went to some of its recipients is recorded sent."""
        return self.finish(key, Status.STOPPED, at, reason, only_from=(Status.PLANNED,))

    def resend(self, key: str, at: datetime, reason: str) -> bool:
        """A person asks for a failed or unknown send to go out again: due at once, with a window for
        retries counted from now and no deadline of its own (a person asked: never too late)."""
        return self.finish(
            key,
            Status.PLANNED,
            at,
            reason,
            only_from=(Status.UNKNOWN, Status.FAILED),
            due=at,
            expires=None,
            next_attempt=None,
            handed_at=None,
            attempts=0,
        )

    def pending_sequences(self, domains: Iterable[str]) -> list[SendRecord]:
        """Pending sends that stop when the customer re-engages, for deals with these domains."""
        domains = list(domains)
        with self._read() as conn:
            rows = conn.execute(
                select(sends).where(
                    sends.c.status == Status.PLANNED.value,
                    sends.c.stop_on_reengagement.is_(True),
                    sends.c.event_id.in_(
                        select(event_domains.c.event_id).where(event_domains.c.domain.in_(domains))
                    ),
                )
            ).all()
        return [SendRecord.from_row(r) for r in rows]

    def claim_due(
        self,
        now: datetime,
        lease: timedelta,
        limit: int = 100,
        *,
        owner: str | None = None,
        from_dead: Iterable[str] = (),
    ) -> list[SendRecord]:
        """Atomically take the sends due now; each gets a fresh attempt id, a lease and its `owner`.

        Claims not yet handed over are taken again once their lease has run out, or at once when
        their owner is in `from_dead` (instances known to be dead).
        """
        dead = [d for d in from_dead if d and d != owner]
        claimed: list[SendRecord] = []
        with self._tx() as conn:
            query = (
                select(sends.c.key, sends.c.status, sends.c.claimed_by)
                .where(
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
                            _lapsed(now, dead),
                        ),
                    )
                )
                .order_by(sends.c.due)
                .limit(limit)
            )
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            for row in conn.execute(query).all():
                attempt = uuid.uuid4().hex
                result = conn.execute(
                    update(sends)
                    .where(sends.c.key == row.key, sends.c.status == row.status)
                    .values(
                        status=Status.CLAIMED.value,
                        attempt_id=attempt,
                        lease_until=now + lease,
                        claimed_by=owner,
                        attempts=sends.c.attempts + 1,
                        updated_at=now,
                    )
                )
                if result.rowcount:
                    if row.status == Status.PLANNED.value:
                        why = "claimed"
                    elif row.claimed_by in dead:
                        why = f"claimed again: {row.claimed_by} is no longer running"
                    else:
                        why = "claimed again: lease expired"
                    self._move(conn, row.key, row.status, Status.CLAIMED, now, why)
                    claimed.append(self._get(conn, row.key))
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
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update()  # a concurrent mark_handed waits, then finds it gone
            for key in conn.execute(query).scalars().all():
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
                        attempts=func.max(sends.c.attempts - 1, 0)
                        if self.engine.dialect.name == "sqlite"
                        else func.greatest(sends.c.attempts - 1, 0),
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
            result = conn.execute(
                update(sends)
                .where(
                    sends.c.key == key,
                    sends.c.attempt_id == attempt_id,
                    sends.c.status == Status.CLAIMED.value,
                )
                .values(handed_at=at, lease_until=at + lease, updated_at=at)
            )
            return bool(result.rowcount)

    def orphans(self, now: datetime, from_dead: Iterable[str] = ()) -> list[SendRecord]:
        """Sends handed to the transport by a process that stopped before recording the result: its
        lease ran out, or its owner is in `from_dead`."""
        with self._read() as conn:
            rows = conn.execute(
                select(sends).where(
                    sends.c.status == Status.CLAIMED.value,
                    sends.c.handed_at.is_not(None),
                    _lapsed(now, [d for d in from_dead if d]),
                )
            ).all()
        return [SendRecord.from_row(r) for r in rows]

    def sync_lease_owner(self, source: str) -> str | None:
        with self._read() as conn:
            return conn.execute(select(cursors.c.lease_owner).where(cursors.c.source == source)).scalar()

    def take_sync_lease(
        self, source: str, owner: str, now: datetime, ttl: timedelta, *, from_dead: str | None = None
    ) -> bool:
        """Only one instance syncs a calendar at a time; a dead instance's lease runs out, or is
        taken at once from `from_dead`, an owner known to be dead."""
        with self._tx() as conn:
            self._ensure(conn, cursors, {"source": source, "state": {}, "synced_at": now})
            result = conn.execute(
                update(cursors)
                .where(
                    cursors.c.source == source,
                    or_(
                        cursors.c.lease_until.is_(None),
                        cursors.c.lease_until < now,
                        cursors.c.lease_owner == owner,
                        cursors.c.lease_owner == (from_dead or owner),
                    ),
                )
                .values(lease_owner=owner, lease_until=now + ttl)
            )
            return bool(result.rowcount)

    def release_sync_lease(self, source: str, owner: str) -> None:
        with self._tx() as conn:
            conn.execute(
                update(cursors)
                .where(cursors.c.source == source, cursors.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def _get(self, conn: Connection, key: str) -> SendRecord:
        return SendRecord.from_row(conn.execute(select(sends).where(sends.c.key == key)).one())

    def send(self, key: str) -> SendRecord | None:
        with self._read() as conn:
            row = conn.execute(select(sends).where(sends.c.key == key)).first()
        return SendRecord.from_row(row) if row else None

    def finish(
        self,
        key: str,
        status: Status,
        at: datetime,
        reason: str | None = None,
        *,
        attempt_id: str | None = None,
        only_from: tuple[Status, ...] = (Status.CLAIMED,),
        **values: Any,
    ) -> bool:
        """Move a send to `status` if it is still where we left it; False if someone else moved it.

        A send that already went to some of its recipients (`sent_at`) ends sent, never failed, skipped,
        stopped or cancelled: then the reason says who never got it, and `sent_at` stays its first.
        """
        with self._tx() as conn:
            condition = [sends.c.key == key, sends.c.status.in_([s.value for s in only_from])]
            if attempt_id is not None:
                condition.append(sends.c.attempt_id == attempt_id)
            query = select(sends.c.status, sends.c.sent_at, sends.c.refused).where(*condition)
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update()  # no one else moves it between this read and the write
            row = conn.execute(query).first()
            if row is None:
                return False
            old = row.status
            if row.sent_at is not None:
                if status in UNSENT_ENDS:
                    status, reason = Status.SENT, gave_up(row.refused or {}, reason or status.value)
                if status is Status.SENT:
                    values["sent_at"] = row.sent_at
            result = conn.execute(
                update(sends)
                .where(*condition)
                .values(
                    status=status.value,
                    reason=reason,
                    updated_at=at,
                    lease_until=None,
                    claimed_by=None,
                    **values,
                )
            )
            if not result.rowcount:
                return False
            self._move(conn, key, old, status, at, reason)
            return True

    def retry_later(self, key: str, attempt_id: str, at: datetime, when: datetime, reason: str) -> bool:
        return self.finish(
            key,
            Status.PLANNED,
            at,
            f"will retry at {when.isoformat()}: {reason}",
            attempt_id=attempt_id,
            next_attempt=when,
            handed_at=None,
        )

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
            for chunk in _chunks(keys, 500):
                conn.execute(
                    update(sends)
                    .where(due, sends.c.key.in_(chunk))
                    .values(reason=reason, next_attempt=until, updated_at=now)
                )
                for key in chunk:
                    self._move(conn, key, Status.PLANNED.value, Status.PLANNED, now, reason)
        return len(keys)

    def release_held(self) -> int:
        """Make sends held for a person's fix (reason "held: ...") due again: at start-up, since the
        settings may have been fixed meanwhile."""
        with self._tx() as conn:
            result = conn.execute(
                update(sends)
                .where(
                    sends.c.status == Status.PLANNED.value,
                    sends.c.reason.startswith("held: ", autoescape=True),
                    sends.c.next_attempt.is_not(None),
                )
                .values(next_attempt=None)
            )
            return int(result.rowcount or 0)

    def sent_count(self, sender: str, since: datetime, service_sender: str) -> int:
        """How many messages went out from `sender` since a moment: for per-sender daily limits."""
        with self._read() as conn:
            rows = conn.execute(
                select(sends.c.sender).where(sends.c.status == Status.SENT.value, sends.c.sent_at >= since)
            ).scalars()
            return sum(1 for row in rows if (row[0] if row else service_sender) == sender)

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

    def sends(
        self, statuses: Iterable[Status] | None = None, event_id: str | None = None
    ) -> list[SendRecord]:
        query = select(sends).order_by(sends.c.due, sends.c.key)
        if statuses is not None:
            query = query.where(sends.c.status.in_([s.value for s in statuses]))
        if event_id is not None:
            query = query.where(sends.c.event_id == event_id)
        with self._read() as conn:
            return [SendRecord.from_row(r) for r in conn.execute(query)]

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
        addresses = list(addresses)
        domains = {a.rsplit("@", 1)[-1] for a in addresses}
        with self._read() as conn:
            listed = set(
                conn.execute(
                    select(suppressions.c.address).where(
                        suppressions.c.address.in_(addresses + list(domains))
                    )
                ).scalars()
            )
        return {a for a in addresses if a in listed or a.rsplit("@", 1)[-1] in listed}


def _lapsed(now: datetime, dead: list[str]) -> Any:
    """A claim no one is working on: its lease ran out, or its owner is known to be dead."""
    if not dead:
        return sends.c.lease_until < now
    return or_(sends.c.lease_until < now, sends.c.claimed_by.in_(dead))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _reason(exc: DBAPIError) -> str:
    text = str(exc.orig).strip() if exc.orig is not None else str(exc)
    if "locked" in text:
        return f"{text} (another process holds it; it was retried for the busy timeout)"
    if "readonly" in text or "read-only" in text:
        return f"{text} (check the file's permissions and the mount)"
    if "full" in text:
        return f"{text} (free some disk space; nothing was lost, the pass will be retried)"
    return text


def _sqlite_pragmas(dbapi_connection: Any, busy_timeout_ms: int) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (IMMEDIATE)
    cursor = dbapi_connection.cursor()
    # The timeout first: switching to WAL needs a lock that another process may hold right now.
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    # SQLite does not always wait for that lock (several processes opening a new ledger at once can
    # get "database is locked" at once): ask again within the busy timeout, and only switch once.
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
