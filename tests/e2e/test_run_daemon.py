"""`followthrough run` as a real process: it sends what is due, then stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.helpers import World, vevent

ROOT = Path(__file__).resolve().parents[2]


def start(config: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWTHROUGH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", "--config", str(config), "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_file(folder: Path, seconds: float = 30.0) -> list[Path]:
    for _ in range(int(seconds / 0.1)):
        found = sorted(folder.glob("*.eml")) if folder.is_dir() else []
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"nothing arrived in {folder}")


def test_run_sends_what_is_due_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # Given a closing call 23 hours from now: its prep is due at once.
    now = datetime.now(UTC)
    world = World(tmp_path)
    world.write(vevent("call-run", now + timedelta(hours=23), now + timedelta(hours=24)))
    process = start(tmp_path / "followthrough.toml")
    try:
        # When the daemon runs, the prep arrives.
        files = wait_for_file(tmp_path / "outbox")
        assert [f.name for f in files] == ["closing-prep_call-run.eml"]
        # And the first SIGTERM stops it cleanly, with exit status 0.
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "followthrough running" in output and "followthrough stopped" in output
    assert "Traceback" not in output


def test_run_restarted_sends_nothing_twice(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    world = World(tmp_path)
    world.write(vevent("call-run", now + timedelta(hours=23), now + timedelta(hours=24)))
    for _ in range(2):
        process = start(tmp_path / "followthrough.toml")
        try:
            wait_for_file(tmp_path / "outbox")
            time.sleep(1.0)  # give a second pass, if there were one, the chance to misbehave
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    sends = world.sends()
    assert sends["closing-prep:call-run"][0].value == "sent"
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
