"""ICS calendars as a publisher writes them: one VEVENT builder, and the calendar around events.

Text is escaped and long lines folded as RFC 5545 says; DTSTAMP is fixed (the source ignores it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

H = timedelta(hours=1)

ALICE = ("alice@acme.example", "Alice Moreno")  # the rep who owns the calendar
DANA = ("dana@globex.com", "Dana Fox")
LEE = ("lee@globex.com", "Lee Park")
IVY = ("ivy@acme.example", "Ivy Chen")  # the implementation team


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def escape_text(text: str) -> str:
    """RFC 5545 TEXT escaping: a real newline in `text` becomes backslash-n in the file."""
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def fold(line: str) -> str:
    """RFC 5545 line folding at 75 octets."""
    if len(line.encode("utf-8")) <= 75:
        return line
    parts: list[str] = []
    current = ""
    limit = 75
    for char in line:
        if len((current + char).encode("utf-8")) > limit:
            parts.append(current)
            current = ""
            limit = 74  # the leading space of a continuation line counts
        current += char
    parts.append(current)
    return "\r\n ".join(parts)


def _param(value: str) -> str:
    """A parameter value, quoted when it must be and is not yet (a test may pass it quoted)."""
    quoted = value.startswith('"') and value.endswith('"')
    return f'"{value}"' if any(c in value for c in ":;,") and not quoted else value


def vevent(
    uid: str,
    start: datetime,
    end: datetime,
    summary: str = "Globex terms #closing",
    *,
    description: str = "",
    organizer: tuple[str, str] = ALICE,
    attendees: Sequence[tuple[str, str]] = (ALICE, DANA, LEE),
    partstat: str | None = None,
    status: str | None = None,
    tzid: str | None = None,
    extra: str = "",
) -> str:
    """One VEVENT; `attendees` is everyone on the invite (the organizer only if listed), `extra` raw
    lines added as they are, `tzid` writes the times as local times of that zone."""

    def when(name: str, moment: datetime) -> str:
        if tzid:
            return f"{name};TZID={tzid}:{moment.astimezone(ZoneInfo(tzid)):%Y%m%dT%H%M%S}"
        return f"{name}:{stamp(moment)}"

    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20260101T000000Z",
        when("DTSTART", start),
        when("DTEND", end),
        f"SUMMARY:{escape_text(summary)}",
    ]
    if description:
        lines.append(f"DESCRIPTION:{escape_text(description)}")
    lines.append(f"ORGANIZER;CN={_param(organizer[1])}:mailto:{organizer[0]}")
    answer = f";PARTSTAT={partstat}" if partstat else ""
    lines += [f"ATTENDEE;CN={_param(name)}{answer}:mailto:{address}" for address, name in attendees]
    if status:
        lines.append(f"STATUS:{status}")
    body = "\r\n".join(fold(line) for line in lines)
    return body + "\r\n" + (extra + "\r\n" if extra else "") + "END:VEVENT\r\n"


def meeting(
    uid: str,
    start: datetime,
    end: datetime,
    summary: str,
    *,
    description: str = "",
    organizer: tuple[str, str] = ALICE,
    attendees: Sequence[tuple[str, str]] = (),
) -> str:
    """A meeting everyone accepted, the organizer attending too: what a rep's invite looks like."""
    return vevent(
        uid,
        start,
        end,
        summary,
        description=description,
        organizer=organizer,
        attendees=(organizer, *attendees),
        partstat="ACCEPTED",
    )


def calendar(*events: str) -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//followthrough tests//EN\r\n"
        + "".join(event if event.endswith("\r\n") else event + "\r\n" for event in events)
        + "END:VCALENDAR\r\n"
    )
