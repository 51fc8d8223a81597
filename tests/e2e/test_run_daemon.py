"""`followthrough run` as a real process: it sends what is due, then stops cleanly on SIGTERM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.cli import Daemon, wait_for
from tests.support.ics import vevent
from tests.support.world import World


def test_run_sends_what_is_due_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # Given a closing call 23 hours from now: its prep is due at once.
    now = datetime.now(UTC)
    world = World(tmp_path)
    world.write(vevent("call-run", now + timedelta(hours=23), now + timedelta(hours=24)))
    daemon = Daemon.start(tmp_path / "followthrough.toml", tmp_path / "run.log")
    outbox = tmp_path / "outbox"
    try:
        # When the daemon runs, the prep arrives.
        wait_for(lambda: any(outbox.glob("*.eml")), f"a message in {outbox}", seconds=30)
        assert [f.name for f in sorted(outbox.glob("*.eml"))] == ["closing-prep_call-run.eml"]
        # And the first SIGTERM stops it cleanly, with exit status 0.
        code = daemon.stop(timeout=30)
    finally:
        daemon.kill()
    output = daemon.output()
    assert code == 0, output
    assert "followthrough running" in output and "followthrough stopped" in output
    assert "Traceback" not in output


def test_run_restarted_sends_nothing_twice(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    world = World(tmp_path)
    world.write(vevent("call-run", now + timedelta(hours=23), now + timedelta(hours=24)))
    # Given a closing call 23 hours from now, its prep due at once
    # When the daemon runs until its first pass has ended, then is stopped, and this happens twice
    for run in range(2):
        daemon = Daemon.start(tmp_path / "followthrough.toml", tmp_path / f"run-{run}.log", "-vv")
        try:
            passed = lambda: "next wake-up at" in daemon.output()  # noqa: E731, B023
            wait_for(passed, "a whole pass", daemon.output, seconds=30)
            assert daemon.stop(timeout=30) == 0, daemon.output()
        finally:
            daemon.kill()
    # Then the prep went out once
    sends = world.sends()
    assert sends["closing-prep:call-run"][0].value == "sent"
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
