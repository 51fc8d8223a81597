"""iCalendar components into CalendarEvents: times made aware, zones named, people read.

Everything here is about one component at a time; the feed, its cursor and series live in ics.py.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from icalendar.timezone import tzid_from_tzinfo

from daemon.model import Attendee, CalendarEvent, EventStatus, Person, clean_id, clean_line, parse_address
from daemon.sources.zones import iana_zone, zone_like

MAX_DESCRIPTION = 20_000
_URI_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def instance_start(event_id: str) -> datetime | None:
    """The original start encoded in an instance id `UID/20261201T090000Z`, if any."""
    _, _, rid = event_id.rpartition("/")
    for fmt in ("%Y%m%dT%H%M%SZ", "%Y%m%d"):
        try:
            return datetime.strptime(rid, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


class EventReader:
    """Turns icalendar components into CalendarEvents, resolving floating and all-day times."""

    def __init__(self, default_zone: str) -> None:
        self.zone = ZoneInfo(default_zone)
        # The same people come back in event after event: read each address once.
        self._people: dict[tuple[str, ...], tuple[Person | None, str | None]] = {}

    def aware(self, value: date | datetime) -> datetime:
        if not isinstance(value, datetime):
            return datetime.combine(value, time(0), tzinfo=self.zone)
        return value if value.tzinfo else value.replace(tzinfo=self.zone)

    def recurrence_id(self, component: Any) -> str | None:
        prop = component.get("RECURRENCE-ID")
        if prop is None:
            return None
        value = prop.dt
        if not isinstance(value, datetime):
            return value.strftime("%Y%m%d")
        return self.aware(value).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    def _person(self, prop: Any, role: str, notes: list[str]) -> Person | None:
        params = getattr(prop, "params", {})
        key = (role, str(prop), *(repr(params.get(name)) for name in ("EMAIL", "CN", "CUTYPE")))
        found = self._people.get(key)
        if found is None:
            if len(self._people) > 10_000:
                self._people.clear()
            found = self._people[key] = self._read_person(prop, role)
        person, note = found
        if note is not None:
            notes.append(note)
        return person

    @staticmethod
    def _read_person(prop: Any, role: str) -> tuple[Person | None, str | None]:
        """The person a calendar user address names, or None (noted when it was meant to be one).

        CalDAV servers write `ORGANIZER;EMAIL=carol@acme.example:urn:uuid:…`: the address is in
        the EMAIL parameter (RFC 7986), the value is the server's own id for the person.
        """
        params = getattr(prop, "params", {})
        value = str(prop).strip()
        scheme = _URI_SCHEME.match(value)
        candidates = [params.get("EMAIL")]
        if scheme is None or scheme.group(0).lower() == "mailto:":
            candidates.insert(0, value)
        for candidate in candidates:
            email = parse_address(str(candidate)) if candidate else None
            if email is not None:
                return Person(email=email, name=clean_line(str(params.get("CN", "")), 100)), None
        if any(candidates) and str(params.get("CUTYPE", "")).upper() not in ("ROOM", "RESOURCE"):
            shown = clean_line(" ".join(str(c) for c in candidates if c), 100)
            return None, f"{role} {shown!r} is not an email address; left out"
        return None, None  # a room, or a server's URN for someone with no address: nobody to write to

    def event(self, component: Any, uid: str, series: bool, notes: list[str] | None = None) -> CalendarEvent:
        """Raises ValueError naming what is wrong when the component cannot be used; what it had
        to leave out (an address that is none) goes to `notes`."""
        notes = notes if notes is not None else []
        dtstart = component.get("DTSTART")
        if dtstart is None:
            raise ValueError("it has no start time (DTSTART)")
        start_value = dtstart.dt
        try:
            end_value = component.end
        except Exception:  # icalendar raises its own types for inconsistent DTEND/DURATION
            end_value = start_value + (
                timedelta(days=1) if not isinstance(start_value, datetime) else timedelta(0)
            )
        start, end = self.aware(start_value), self.aware(end_value)
        if end < start:
            raise ValueError(f"it ends ({end.isoformat()}) before it starts ({start.isoformat()})")
        tzinfo = start_value.tzinfo if isinstance(start_value, datetime) else None
        # A VTIMEZONE in the file gives a zone object that has no IANA key: its TZID, often a
        # Windows name from Outlook, says which zone it is; failing that, its rules do.
        zone_name = (
            iana_zone(tzid_from_tzinfo(tzinfo)) or zone_like(tzinfo, start.year)
            if tzinfo is not None
            else None
        )
        organizer = component.get("ORGANIZER")
        attendees_raw = component.get("ATTENDEE") or []
        if not isinstance(attendees_raw, list):
            attendees_raw = [attendees_raw]
        attendees = []
        for prop in attendees_raw:
            person = self._person(prop, "attendee", notes)
            if person is None:
                continue
            params = getattr(prop, "params", {})
            attendees.append(
                Attendee(
                    person,
                    role=str(params.get("ROLE", "REQ-PARTICIPANT")).upper(),
                    status=str(params.get("PARTSTAT", "NEEDS-ACTION")).upper(),
                    kind=str(params.get("CUTYPE", "INDIVIDUAL")).upper(),
                )
            )
        status = str(component.get("STATUS", "CONFIRMED")).lower()
        description = str(component.get("DESCRIPTION", ""))[:MAX_DESCRIPTION]
        return CalendarEvent(
            uid=clean_id(uid, 500),
            recurrence_id=self.recurrence_id(component) if series else None,
            start=start.astimezone(UTC),
            end=end.astimezone(UTC),
            title=clean_line(str(component.get("SUMMARY", "")), 300),
            description=description,
            timezone=zone_name if zone_name and zone_name != "UTC" else None,
            all_day=not isinstance(start_value, datetime),
            organizer=self._person(organizer, "organizer", notes) if organizer is not None else None,
            attendees=tuple(attendees),
            status=EventStatus(status) if status in EventStatus._value2member_map_ else EventStatus.CONFIRMED,
        )


def short_error(exc: BaseException) -> str:
    text = clean_line(str(exc) or type(exc).__name__, 200)
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
