"""Google Calendar's event resources into CalendarEvents: times and zones, people, tags from properties.

One resource at a time, shaped like the ICS source's events (same ids, same fields); syncing lives in
google.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from daemon.model import Attendee, CalendarEvent, EventStatus, Person, clean_id, clean_line, parse_address
from daemon.sources.ics_events import MAX_DESCRIPTION
from daemon.sources.zones import iana_zone

PROPERTY_PREFIX = "followthrough."
MAX_PROPERTIES = 50
_RESPONSE_STATUS = {
    "needsAction": "NEEDS-ACTION",
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
}
_EVENT_STATUS = {"confirmed": EventStatus.CONFIRMED, "tentative": EventStatus.TENTATIVE}


def _zone(name: Any) -> ZoneInfo | None:
    """Google writes IANA names, but events imported from Outlook can carry Windows ones."""
    key = iana_zone(name) if isinstance(name, str) else None
    return ZoneInfo(key) if key else None


class EventMapper:
    """Turns Google event resources into CalendarEvents with the ICS source's ids."""

    def __init__(self, default_zone: str) -> None:
        self.zone = ZoneInfo(default_zone)

    def moment(self, value: Any, what: str) -> tuple[datetime, bool]:
        """An aware datetime from `{"dateTime": …}` or `{"date": …}` (midnight in the event's zone or
        the default one), and whether it was a date."""
        if not isinstance(value, dict):
            raise ValueError(f"it has no {what} time")
        if value.get("dateTime"):
            moment = datetime.fromisoformat(str(value["dateTime"]))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_zone(value.get("timeZone")) or self.zone)
            return moment, False
        if value.get("date"):
            day = date.fromisoformat(str(value["date"]))
            return datetime.combine(day, time(0), tzinfo=_zone(value.get("timeZone")) or self.zone), True
        raise ValueError(f"its {what} time has neither dateTime nor date")

    def recurrence_id(self, item: dict[str, Any]) -> str | None:
        original = item.get("originalStartTime")
        if not item.get("recurringEventId") and not original:
            return None
        if not isinstance(original, dict):
            raise ValueError("it is an instance of a series without its originalStartTime")
        moment, all_day = self.moment(original, "original start")
        if all_day:
            return date.fromisoformat(str(original["date"])).strftime("%Y%m%d")
        return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    def event_id(self, item: dict[str, Any]) -> str:
        """Our id for a Google event; raises ValueError if it cannot have one."""
        uid = clean_id(str(item.get("iCalUID") or ""), 500)
        if not uid:
            raise ValueError("it has no iCalUID")
        rid = self.recurrence_id(item)
        return f"{uid}/{rid}" if rid else uid

    @staticmethod
    def _person(data: Any) -> Person | None:
        if not isinstance(data, dict):
            return None
        email = parse_address(str(data.get("email") or ""))
        if email is None:
            return None
        return Person(email=email, name=clean_line(str(data.get("displayName") or ""), 100))

    def event(self, item: dict[str, Any]) -> CalendarEvent:
        """Raises ValueError naming what is wrong when the event cannot be used."""
        uid = clean_id(str(item.get("iCalUID") or ""), 500)
        if not uid:
            raise ValueError("it has no iCalUID")
        start, all_day = self.moment(item.get("start"), "start")
        try:
            end, _ = self.moment(item.get("end"), "end")
        except ValueError:
            end = start + (timedelta(days=1) if all_day else timedelta(0))
        if end < start:
            raise ValueError(f"it ends ({end.isoformat()}) before it starts ({start.isoformat()})")
        zone = _zone((item.get("start") or {}).get("timeZone"))
        timezone = zone.key if zone is not None and zone.key != "UTC" else None
        attendees = []
        for data in item.get("attendees") or ():
            person = self._person(data)
            if person is None:
                continue  # no address to write to
            attendees.append(
                Attendee(
                    person,
                    role="OPT-PARTICIPANT" if data.get("optional") else "REQ-PARTICIPANT",
                    status=_RESPONSE_STATUS.get(str(data.get("responseStatus")), "NEEDS-ACTION"),
                    kind="RESOURCE" if data.get("resource") else "INDIVIDUAL",
                )
            )
        status = str(item.get("status") or "confirmed")
        return CalendarEvent(
            uid=uid,
            recurrence_id=self.recurrence_id(item),
            start=start.astimezone(UTC),
            end=end.astimezone(UTC),
            title=clean_line(str(item.get("summary") or ""), 300),
            description=str(item.get("description") or "")[:MAX_DESCRIPTION],
            timezone=timezone,
            all_day=all_day,
            organizer=self._person(item.get("organizer")),
            attendees=tuple(attendees),
            status=EventStatus.CANCELLED
            if status == "cancelled"
            else _EVENT_STATUS.get(status, EventStatus.CONFIRMED),
            properties=self.properties(item),
        )

    @staticmethod
    def properties(item: dict[str, Any]) -> dict[str, str]:
        """The private extended properties meant for us (`followthrough.*`)."""
        private = (item.get("extendedProperties") or {}).get("private") or {}
        if not isinstance(private, dict):
            return {}
        found = {
            clean_line(str(k), 100): clean_line(str(v), 500)
            for k, v in private.items()
            if str(k).startswith(PROPERTY_PREFIX)
        }
        return dict(sorted(found.items())[:MAX_PROPERTIES])
