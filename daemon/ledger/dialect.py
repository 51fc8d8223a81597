"""What SQLite and PostgreSQL do differently, decided once when a ledger is opened.

The store asks these flags, never the dialect's name: row locks, skip-locked claims, advisory locks for
schema changes, insert-or-ignore, and SQLite's pragmas and write locks taken at BEGIN.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, Select, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert

SCHEMA_LOCK = 7244911  # the advisory lock instances take to create or upgrade the schema


@dataclass(frozen=True)
class Capabilities:
    """What the database can do, as the store needs to know it."""

    row_locks: bool  # SELECT ... FOR UPDATE: nobody moves a row between our read and our write
    skip_locked: bool  # claims pass over rows another transaction is claiming
    advisory_locks: bool  # instances creating or upgrading the schema at once take turns
    upsert: Any  # the dialect module whose insert() knows ON CONFLICT DO NOTHING

    def locked(self, query: Select[Any]) -> Select[Any]:
        """`query` holding its rows until the transaction ends (SQLite's BEGIN IMMEDIATE already does)."""
        return query.with_for_update() if self.row_locks else query

    def claimable(self, query: Select[Any]) -> Select[Any]:
        """`query` taking only rows no other transaction is claiming right now."""
        return query.with_for_update(skip_locked=True) if self.skip_locked else query

    def insert_or_ignore(self, table: Table) -> Insert:
        """An insert that skips rows whose key another instance has just inserted."""
        statement: Insert = self.upsert.insert(table).on_conflict_do_nothing()
        return statement

    def lock_schema(self, conn: Connection) -> None:
        """Several instances starting at once: one creates or upgrades, the others wait and see it."""
        if self.advisory_locks:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")


POSTGRESQL = Capabilities(row_locks=True, skip_locked=True, advisory_locks=True, upsert=postgresql)
SQLITE = Capabilities(row_locks=False, skip_locked=False, advisory_locks=False, upsert=sqlite)


def prepare(engine: Engine, busy_timeout: timedelta) -> Capabilities | None:
    """The capabilities of the engine's database, its connections set up; None if it is neither."""
    if engine.dialect.name == "postgresql":
        return POSTGRESQL
    if engine.dialect.name != "sqlite":
        return None
    timeout_ms = int(busy_timeout.total_seconds() * 1000)
    event.listen(engine, "connect", lambda dbapi, _: _sqlite_pragmas(dbapi, timeout_ms))
    # Writers take the lock at BEGIN: two processes never both read, then both fail to write.
    event.listen(
        engine,
        "begin",
        lambda conn: conn.exec_driver_sql("BEGIN" if conn.info.get("reading") else "BEGIN IMMEDIATE"),
    )
    return SQLITE


def reason(exc: DBAPIError) -> str:
    """The database's complaint, with what to do about the usual ones."""
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
