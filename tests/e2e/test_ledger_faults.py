"""The ledger in trouble, as the CLI says it: locked by another process, or read-only. One line that
names the ledger and the cause (exit status 5), no traceback, and nothing lost.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time

from daemon.errors import LedgerError
from tests.support.cli import run_cli
from tests.support.ics import vevent
from tests.support.world import World

T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
CALL = vevent("call-1", T, T + timedelta(hours=1))
PREP = "closing-prep:call-1"


def test_a_locked_database_is_a_clear_error_and_nothing_is_lost(tmp_path: Path) -> None:
    # Given a ledger with a plan in it
    world = World(tmp_path, extra='[store]\nbusy_timeout = "0.3s"\n')
    world.write(CALL)
    with freeze_time(T - timedelta(hours=30)):
        world.tick()
    # Given another process holds the database's write lock
    holder = sqlite3.connect(tmp_path / "followthrough.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        # When a pass runs, then it fails with one line that says the ledger is locked
        result = run_cli("tick", config=tmp_path / "followthrough.toml")
        assert result.code == 5
        assert "error: the ledger at" in result.stderr and "database is locked" in result.stderr
        assert "Traceback" not in result.stderr
        with pytest.raises(LedgerError, match="locked"):
            world.tick()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # And once the lock is gone, the pending prompts are all still there and go out
    with freeze_time(T - timedelta(hours=2)):
        sent = {s.key for s in world.tick().dispatch.sent}
    assert sent == {PREP}


def test_a_read_only_database_is_a_clear_error(tmp_path: Path) -> None:
    # Given a ledger with a plan in it, opened read-only
    world = World(tmp_path)
    world.write(CALL)
    with freeze_time(T - timedelta(hours=30)):
        world.tick()
    config = tmp_path / "followthrough.toml"
    db = tmp_path / "followthrough.db"
    read_only = config.read_text() + f'\n[store]\nurl = "sqlite:///file:{db}?mode=ro&uri=true"\n'
    (tmp_path / "ro.toml").write_text(read_only, encoding="utf-8")
    # When a pass runs, then it fails with one line that says so
    result = run_cli("tick", config=tmp_path / "ro.toml")
    assert result.code == 5, result.stderr
    assert "readonly" in result.stderr and "Traceback" not in result.stderr
    # And reading still works, and shows the plan unchanged
    shown = run_cli("plan", "--json", config=tmp_path / "ro.toml")
    assert shown.code == 0 and PREP in shown.stdout
