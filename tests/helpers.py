"""Shared test helpers: write ICS calendars and configs, run passes, read the outbox."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from daemon.config import load
from daemon.engine import Engine, PassReport
from daemon.model import Status

ALICE = ("alice@acme.example", "Alice Moreno")
DANA = ("dana@globex.com", "Dana Fox")
LEE = ("lee@globex.com", "Lee Park")

CONFIG = """
[company]
name = "Acme Analytics"
domains = ["acme.example"]
timezone = "Europe/Berlin"

{calendars}

[mail]
transport = "outbox"
from = "Followthrough <ft@acme.example>"
outbox_dir = "outbox"

[team]
implementation = ["Ivy Chen <ivy@acme.example>"]
{extra}
"""


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def vevent(
    uid: str,
    start: datetime,
    end: datetime,
    summary: str = "Globex terms #closing",
    *,
    description: str = "",
    organizer: tuple[str, str] = ALICE,
    attendees: tuple[tuple[str, str], ...] = (ALICE, DANA, LEE),
    status: str | None = None,
    tzid: str | None = None,
    extra: str = "",
) -> str:
    def when(name: str, moment: datetime) -> str:
        if tzid:
            from zoneinfo import ZoneInfo

            local = moment.astimezone(ZoneInfo(tzid))
            return f"{name};TZID={tzid}:{local:%Y%m%dT%H%M%S}"
        return f"{name}:{stamp(moment)}"

    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20260101T000000Z",
        when("DTSTART", start),
        when("DTEND", end),
        f"SUMMARY:{summary}",
    ]
    if description:
        lines.append("DESCRIPTION:" + description.replace("\n", "\\n"))
    lines.append(f"ORGANIZER;CN={organizer[1]}:mailto:{organizer[0]}")
    lines += [f"ATTENDEE;CN={name}:mailto:{address}" for address, name in attendees]
    if status:
        lines.append(f"STATUS:{status}")
    if extra:
        lines.append(extra)
    lines.append("END:VEVENT")
    return "\r\n".join(lines) + "\r\n"


def calendar(*events: str) -> str:
    return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" + "".join(events) + "END:VCALENDAR\r\n"


class World:
    """A config, calendars and a ledger in a folder; `tick()` runs a pass as a fresh process would."""

    def __init__(self, root: Path, extra: str = "", calendars: tuple[str, ...] = ("cal",)) -> None:
        self.root = root
        blocks = "\n".join(
            f'[[calendars]]\nname = "{name}"\nsource = "ics"\npath = "{name}.ics"\nowner = "{ALICE[0]}"\n'
            for name in calendars
        )
        (root / "followthrough.toml").write_text(
            CONFIG.format(calendars=blocks, extra=extra), encoding="utf-8"
        )
        for name in calendars:
            self.write(name=name)

    def write(self, *events: str, name: str = "cal") -> None:
        (self.root / f"{name}.ics").write_text(calendar(*events), encoding="utf-8")

    def engine(self) -> Engine:
        return Engine(load(self.root / "followthrough.toml"))

    def tick(self) -> PassReport:
        from daemon import clock

        engine = self.engine()
        try:
            return engine.tick(clock.now())
        finally:
            engine.close()

    def outbox(self) -> dict[str, EmailMessage]:
        folder = self.root / "outbox"
        if not folder.is_dir():
            return {}
        messages = {}
        for path in sorted(folder.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            messages[str(message["X-Followthrough-Key"])] = message
        return messages

    def sends(self) -> dict[str, tuple[Status, str | None, datetime]]:
        engine = self.engine()
        try:
            return {s.key: (s.status, s.reason, s.due) for s in engine.ledger.sends()}
        finally:
            engine.close()
