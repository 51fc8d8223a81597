"""The SQLAlchemy store's foundation: opening a ledger, its transactions, and the transitions log.

The parts of the store (events, sends, claims) build on this; `store.py` puts them together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from daemon.errors import LedgerError, UserError
from daemon.ledger import dialect, schema
from daemon.ledger.abc import Ledger
from daemon.model import Outcome, Status
from daemon.playbook import OutcomeRecord

TRANSITION = insert(schema.transitions)  # built once: every move of every send writes one


class Encoded(str):
    """A value already encoded as JSON, stored as it is: a sync encodes each event once, for its digest
    and its row."""


def _json(value: Any) -> str:
    return value if isinstance(value, Encoded) else json.dumps(value)


class Base(Ledger):
    """An open ledger: its engine, what its database can do, and one transaction at a time."""

    def __init__(self, url: str, busy_timeout: timedelta = timedelta(seconds=10)) -> None:
        self.url = url
        try:
            self.engine: Engine = create_engine(url, future=True, json_serializer=_json)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise UserError(f"store url {url!r} cannot be used: {exc}") from None
        caps = dialect.prepare(self.engine, busy_timeout)
        if caps is None:
            raise UserError(f"store url {url!r}: followthrough keeps its ledger in SQLite or PostgreSQL")
        self.caps: dialect.Capabilities = caps
        with self._read() as conn:
            current = schema.read_version(conn) == schema.SCHEMA_VERSION
        if not current:  # only then write: a read-only ledger can still be read
            with self._tx() as conn:
                self.caps.lock_schema(conn)
                schema.upgrade(conn, self._where)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One transaction; database trouble becomes a LedgerError that says what and where."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise LedgerError(f"the ledger at {self._where}: {dialect.reason(exc)}") from None

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
            raise LedgerError(f"the ledger at {self._where}: {dialect.reason(exc)}") from None

    @property
    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def _insert_new(self, conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
        """Insert rows, skipping any whose key another instance has just inserted."""
        conn.execute(self.caps.insert_or_ignore(table), rows)

    def _move(
        self, conn: Connection, key: str, old: str | None, new: Status, at: datetime, reason: str | None
    ) -> None:
        """Write one move of a send to `transitions`, in the transaction that makes it."""
        conn.execute(
            TRANSITION, {"key": key, "from_status": old, "to_status": new.value, "at": at, "reason": reason}
        )

    def _moves(
        self, conn: Connection, moves: Sequence[tuple[str, str | None, str | None]], new: Status, at: datetime
    ) -> None:
        """Write several sends' moves to `new` at once: (key, old status, reason) each."""
        if moves:
            conn.execute(
                TRANSITION,
                [
                    {"key": k, "from_status": o, "to_status": new.value, "at": at, "reason": r}
                    for k, o, r in moves
                ],
            )


CHUNK = 500  # rows in one IN (...) or one multi-row insert


class Inserts:
    """Rows to insert in one transaction, skipping those another instance has just inserted (as
    `Base._insert_new`), written a chunk at a time as they come: however many, they are never all held."""

    def __init__(self, store: Base, conn: Connection) -> None:
        self.store = store
        self.conn = conn
        self.pending: dict[Any, list[dict[str, Any]]] = {}

    def add(self, table: Any, row: dict[str, Any]) -> None:
        rows = self.pending.setdefault(table, [])
        rows.append(row)
        if len(rows) >= CHUNK:
            self.store._insert_new(self.conn, table, rows)
            self.pending[table] = []

    def flush(self) -> None:
        for table, rows in self.pending.items():
            if rows:
                self.store._insert_new(self.conn, table, rows)
        self.pending.clear()


def chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    """Pieces small enough for one IN (...) or one multi-row insert."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def read_outcomes(conn: Connection, event_ids: Iterable[str]) -> dict[str, OutcomeRecord]:
    """In `conn`'s transaction: the outcomes known of these events; one without is left out."""
    known: dict[str, OutcomeRecord] = {}
    for chunk in chunks(list(dict.fromkeys(event_ids))):
        for row in conn.execute(select(schema.outcomes).where(schema.outcomes.c.event_id.in_(chunk))):
            known[row.event_id] = OutcomeRecord(Outcome(row.outcome), row.recorded_at, row.source)
    return known


def listed(conn: Connection, addresses: Iterable[str]) -> set[str]:
    """In `conn`'s transaction: which of these addresses, and of their domains, are on the suppression list
    (`suppressed_among` tells which addresses that stops)."""
    addresses = list(addresses)
    candidates = sorted(set(addresses) | {a.rsplit("@", 1)[-1] for a in addresses})
    found: set[str] = set()
    for chunk in chunks(candidates):
        found.update(conn.execute(_LISTED, {"candidates": chunk}).scalars())
    return found


# Built once: the hand-over of every message asks it.
_LISTED = select(schema.suppressions.c.address).where(
    schema.suppressions.c.address.in_(bindparam("candidates", expanding=True))
)
