"""The ledger's tables, its schema version and the migrations that bring an older ledger up to it.

One place for what is stored: the store reads and writes these tables, and nothing else defines them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection

from daemon.errors import LedgerError
from daemon.model import Audience, Person, PlannedSend, SendRecord, Status

log = logging.getLogger(__name__)

SCHEMA_VERSION = 6
# Each step brings a database from the version before it; run in order, in one transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE sends ADD COLUMN handed_at TIMESTAMP",
        "ALTER TABLE cursors ADD COLUMN lease_owner VARCHAR(200)",
        "ALTER TABLE cursors ADD COLUMN lease_until TIMESTAMP",
        "ALTER TABLE events ADD COLUMN unsettled BOOLEAN NOT NULL DEFAULT FALSE",
    ),
    3: ("ALTER TABLE sends ADD COLUMN claimed_by VARCHAR(200)",),
    4: ("ALTER TABLE sends ADD COLUMN test BOOLEAN NOT NULL DEFAULT FALSE",),
    5: (),  # outcome_log: a new table, created empty
    # sync_leases: a new table, created empty (a lease lasts one pass). The lease columns of cursors stay,
    # unused: SQLite before 3.35 cannot drop a column. Which events are calls is not known yet (NULL):
    # the next pass files them (`Ledger.unfiled_events`).
    6: (
        "ALTER TABLE events ADD COLUMN is_call BOOLEAN",
        "CREATE INDEX ix_events_unfiled ON events (id) WHERE is_call IS NULL",
    ),
}


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
    # A kickoff or closing call (`event_kind`): what planning reads of a deal. None: not known yet.
    Column("is_call", Boolean),
    Column("start", UTCDateTime, index=True),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # Stored, but its plan not yet committed: a crash in between is finished by the next pass.
    Column("unsettled", Boolean, nullable=False, default=False, index=True),
)

# The events not yet known to be calls or not, and only those: a sync's new rows never enter it.
Index(
    "ix_events_unfiled",
    events.c.id,
    sqlite_where=events.c.is_call.is_(None),
    postgresql_where=events.c.is_call.is_(None),
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
    Column("source", String(16), nullable=False),  # "tag", "cli" or "link"
    Column("recorded_at", UTCDateTime, nullable=False),
)

# Every outcome recorded for an event, and how: the event's history of outcomes.
outcome_log = Table(
    "outcome_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(600), nullable=False, index=True),
    Column("outcome", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("detail", Text),  # which link, for an outcome recorded from an email
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
    # A test send (`preview --send-to`), recorded once it was tried: never claimed, moved or counted.
    Column("test", Boolean, nullable=False, default=False),
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
)

# Apart from the cursor: a large feed's cursor is megabytes, and a row is rewritten whole when the
# lease is taken and given back, twice a pass.
sync_leases = Table(
    "sync_leases",
    metadata,
    Column("source", String(300), primary_key=True),
    Column("owner", String(200)),  # the instance syncing this calendar now, if any
    Column("until", UTCDateTime),
)


def read_version(conn: Connection) -> int | None:
    """The schema version stored, None for an empty database."""
    if not inspect(conn).has_table("meta"):
        return None
    return int(conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar() or 1)


def upgrade(conn: Connection, where: str) -> None:
    """Create a new ledger, or bring an older one up to this version's schema, in this transaction."""
    version = read_version(conn)
    if version is None:
        metadata.create_all(conn)
        conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
        return
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"the ledger at {where} has schema version {version}, newer than this "
            f"followthrough understands ({SCHEMA_VERSION}): upgrade followthrough"
        )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[step]:
            conn.exec_driver_sql(statement)
        log.warning("ledger at %s upgraded to schema version %d", where, step)
    metadata.create_all(conn)  # tables added since: created empty
    conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))


def people(group: tuple[Person, ...]) -> list[list[str]]:
    return [[p.email, p.name] for p in group]


def _person(value: list[str] | None) -> Person | None:
    return Person(value[0], value[1]) if value else None


def plan_values(send: PlannedSend, subject: str | None) -> dict[str, Any]:
    """The columns of a send's plan, as `reconcile` writes them."""
    return {
        "rule": send.rule,
        "event_id": send.event_id,
        "deal": send.deal,
        "due": send.due,
        "expires": send.expires,
        "sender": [send.sender.email, send.sender.name] if send.sender else None,
        "reply_to": [send.reply_to.email, send.reply_to.name] if send.reply_to else None,
        "to": people(send.to),
        "cc": people(send.cc),
        "audience": send.audience.value,
        "template": send.template,
        "stop_on_reengagement": send.stop_on_reengagement,
        "subject": subject,
    }


def record(row: Any) -> SendRecord:
    """A row of `sends` as the domain value."""
    return SendRecord(
        key=row.key,
        rule=row.rule,
        event_id=row.event_id,
        deal=row.deal,
        due=row.due,
        expires=row.expires,
        sender=_person(row.sender),
        reply_to=_person(row.reply_to),
        to=tuple(Person(e, n) for e, n in row.to),
        cc=tuple(Person(e, n) for e, n in row.cc),
        audience=Audience(row.audience),
        template=row.template,
        stop_on_reengagement=row.stop_on_reengagement,
        status=Status(row.status),
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
        test=row.test,
    )
