"""The bundled demo: a sales calendar moved to today, a fresh ledger and outbox, one pass.

Its calendar (daemon/bundled/demo/calendar.ics) is written around a fixed moment, its
X-FOLLOWTHROUGH-DEMO-ANCHOR; every event is moved by the same amount so that the anchor becomes the
current hour.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import icalendar

from daemon import bundled
from daemon.errors import UserError


def shifted_calendar(source: bytes, now: datetime) -> bytes:
    calendar = icalendar.Calendar.from_ical(source)
    anchor = datetime.strptime(str(calendar["X-FOLLOWTHROUGH-DEMO-ANCHOR"]), "%Y%m%dT%H%M%SZ").replace(
        tzinfo=UTC
    )
    delta = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - anchor
    for event in calendar.walk("VEVENT"):
        for name in ("DTSTART", "DTEND"):
            if name in event:
                moved = event.pop(name).dt + delta
                event.add(name, moved)
    return bytes(calendar.to_ical())


def prepare(directory: Path, now: datetime) -> Path:
    """Reset `directory` to a fresh demo; return the path of its config."""
    config, calendar = bundled.DEMO / "followthrough.toml", bundled.DEMO / "calendar.ics"
    if not (config.is_file() and calendar.is_file()):
        raise UserError(f"the demo files are missing from {bundled.DEMO}: reinstall followthrough")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in ("followthrough.db", "followthrough.db-wal", "followthrough.db-shm"):
        (directory / stale).unlink(missing_ok=True)
    shutil.rmtree(directory / "outbox", ignore_errors=True)
    (directory / "followthrough.toml").write_bytes(config.read_bytes())
    (directory / "calendar.ics").write_bytes(shifted_calendar(calendar.read_bytes(), now))
    return directory / "followthrough.toml"
