"""Whether a ledger can be used, found without changing it: reachable, writable, its schema version.

For `doctor`: the write that proves it writable (or the schema it would create or upgrade) is rolled back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from daemon.ledger import dialect, schema

PROBE_KEY = "doctor-probe"  # the meta row written, then rolled back, to prove the ledger writable


@dataclass(frozen=True)
class LedgerHealth:
    """What a ledger is like: `problem` says what stops it being used (and what to do), else None."""

    where: str  # the url, its password hidden
    version: int | None = None  # the schema version stored; None: no ledger there yet
    problem: str | None = None
    note: str = ""  # how it was found: "writable", "not created yet", "upgraded at the next start"


def check_ledger(url: str, busy_timeout: timedelta = timedelta(seconds=10)) -> LedgerHealth:
    """Open the ledger at `url`, read its schema version and prove it writable, leaving it as it was.

    A SQLite file that does not exist yet is not created: its folder must be writable instead."""
    try:
        engine = create_engine(url, future=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        return LedgerHealth(url, problem=f"store url cannot be used: {exc}; check [store] url")
    where = engine.url.render_as_string(hide_password=True)
    try:
        return _check(engine, where, busy_timeout)
    except DBAPIError as exc:
        return LedgerHealth(where, problem=dialect.reason(exc))
    except SQLAlchemyError as exc:
        return LedgerHealth(where, problem=f"{type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


def _check(engine: Engine, where: str, busy_timeout: timedelta) -> LedgerHealth:
    new_file = _new_sqlite_file(engine)
    if new_file is not None:
        return _new_file_health(new_file, where)
    if dialect.prepare(engine, busy_timeout) is None:
        return LedgerHealth(
            where, problem="followthrough keeps its ledger in SQLite or PostgreSQL; check [store] url"
        )
    with engine.connect() as conn:
        conn.info["reading"] = True  # a plain BEGIN: reading takes no write lock
        try:
            version = schema.read_version(conn)
            conn.rollback()
        finally:
            conn.info.pop("reading", None)
    if version is not None and version > schema.SCHEMA_VERSION:
        return LedgerHealth(
            where,
            version,
            problem=f"schema version {version} is newer than this followthrough understands "
            f"({schema.SCHEMA_VERSION}): upgrade followthrough",
        )
    with engine.connect() as conn:  # BEGIN IMMEDIATE on SQLite: the write lock a pass takes
        transaction = conn.begin()
        try:
            if version is None:  # what the first start does
                schema.metadata.create_all(conn)
            else:
                conn.execute(insert(schema.meta).values(key=PROBE_KEY, value="rolled back"))
        finally:
            transaction.rollback()
    if version is None:
        note = "empty: writable, its tables are created at the first start"
    elif version < schema.SCHEMA_VERSION:
        note = f"writable; upgraded to schema version {schema.SCHEMA_VERSION} at the next start"
    else:
        note = "writable"
    return LedgerHealth(where, version, note=note)


def _new_sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite url that names a plain file path which does not exist yet, else None."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or not database or database.startswith("file:"):
        return None
    if database == ":memory:" or engine.url.query.get("uri"):
        return None
    path = Path(database)
    return None if path.exists() else path


def _new_file_health(path: Path, where: str) -> LedgerHealth:
    folder = next((p for p in path.parents if p.exists()), None)
    if folder is None or not folder.is_dir():
        return LedgerHealth(where, problem=f"{folder or path.parent} is not a folder; check [store] url")
    if path.parent != folder:
        creatable = f"{path.parent} does not exist yet; its nearest folder, {folder}"
    else:
        creatable = f"its folder {folder}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return LedgerHealth(
            where,
            problem=f"{path} does not exist and cannot be created: {creatable} is not writable; "
            "check [store] url, or the folder's owner and permissions",
        )
    return LedgerHealth(where, note=f"not created yet: the first start creates it ({creatable} is writable)")
