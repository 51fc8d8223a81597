"""Microsoft Graph event resources into CalendarEvents: times asked for in UTC, the event's own zone from
`originalStartTimeZone`, people, Outlook categories.

One resource at a time, shaped like the ICS source's events (the same meeting gets the same id: its
iCalendar UID, plus the original start of an instance); syncing lives in microsoft.py.

Graph v1.0 documents `iCalUId` as "different for each occurrence in a recurring series"; the series-wide
`uid` exists only in beta. So an occurrence's or exception's UID is its series master's `iCalUId`
(microsoft.py reads the master once), and its RECURRENCE-ID is `originalStart`, which Graph gives in UTC
for occurrences and exceptions alike: a moved occurrence keeps the id of the slot it was moved from.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, time, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

from daemon.model import Attendee, CalendarEvent, EventStatus, Person, clean_id, clean_line, parse_address
from daemon.sources.ics_events import MAX_DESCRIPTION
from daemon.sources.zones import iana_zone

MAX_CATEGORIES = 25
_RESPONSE_STATUS = {
    "none": "NEEDS-ACTION",
    "notResponded": "NEEDS-ACTION",
    "organizer": "ACCEPTED",
    "accepted": "ACCEPTED",
    "tentativelyAccepted": "TENTATIVE",
    "declined": "DECLINED",
}
_INSTANCES = ("occurrence", "exception")  # a series' instances; `seriesMaster` never comes in a view
_UTC_NAMES = frozenset({"utc", "tzone://microsoft/utc", "coordinated universal time", "etc/utc", "gmt"})


def zone_of(name: Any) -> ZoneInfo | None:
    """Graph's zone names: Windows ones (`Pacific Standard Time`), IANA ones, `tzone://Microsoft/Utc`."""
    if not isinstance(name, str) or not name.strip():
        return None
    if name.strip().lower() in _UTC_NAMES:
        return ZoneInfo("UTC")
    key = iana_zone(name)
    return ZoneInfo(key) if key else None


def _parse_moment(value: Any, what: str) -> datetime:
    """Graph's `{"dateTime": "2026-12-02T09:00:00.0000000", "timeZone": "UTC"}` as an aware datetime."""
    if not isinstance(value, dict) or not value.get("dateTime"):
        raise ValueError(f"it has no {what} time")
    text = str(value["dateTime"]).rstrip("Z")
    whole, _, fraction = text.partition(".")
    try:
        moment = datetime.fromisoformat(whole + (f".{fraction[:6]}" if fraction else ""))
    except ValueError:
        raise ValueError(f"its {what} time {clean_line(text, 40)!r} is no time") from None
    if moment.tzinfo is None:
        zone = zone_of(value.get("timeZone"))
        if zone is None:
            raise ValueError(
                f"its {what} time zone {clean_line(str(value.get('timeZone')), 60)!r} is unknown"
            )
        moment = moment.replace(tzinfo=zone)
    return moment


class _Text(HTMLParser):
    """An HTML body's text, line breaks kept where blocks end: tags in it stay findable."""

    BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip += 1
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def body_text(body: Any) -> str:
    """An event's body as plain text (Outlook writes HTML)."""
    if not isinstance(body, dict):
        return ""
    content = str(body.get("content") or "")
    if str(body.get("contentType") or "").lower() == "html":
        parser = _Text()
        try:
            parser.feed(content)
            parser.close()
            content = "".join(parser.parts)
        except Exception:  # HTMLParser is lenient; whatever it chokes on loses only the markup
            content = html.unescape(re.sub(r"<[^>]*>", " ", content))
    lines = [" ".join(line.split()) for line in content.replace("\xa0", " ").splitlines()]
    return "\n".join(line for line in lines if line)[:MAX_DESCRIPTION]


class EventMapper:
    """Turns Graph event resources into CalendarEvents with the ICS source's ids."""

    def __init__(self, default_zone: str) -> None:
        self.zone = ZoneInfo(default_zone)

    def _own_zone(self, item: dict[str, Any]) -> ZoneInfo | None:
        return zone_of(item.get("originalStartTimeZone"))

    def _day(self, moment: datetime, zone: ZoneInfo | None) -> datetime:
        """An all-day event's midnight: the date as Outlook wrote it, in the event's zone."""
        return datetime.combine(moment.date(), time(0), tzinfo=zone or self.zone)

    @staticmethod
    def is_instance(item: dict[str, Any]) -> bool:
        """An occurrence or exception of a series: its UID is its series master's."""
        return item.get("type") in _INSTANCES

    @staticmethod
    def series_uid(item: dict[str, Any]) -> str | None:
        """The series-wide UID an instance carries itself: beta's `uid` (v1.0 has none)."""
        return clean_id(str(item.get("uid") or ""), 500) or None

    def uid(self, item: dict[str, Any], series_uid: str | None = None) -> str:
        """The iCalendar UID: an instance's series' (`series_uid`, its master's iCalUId), else `iCalUId`."""
        if self.is_instance(item):
            uid = self.series_uid(item) or clean_id(series_uid or "", 500)
            if not uid:
                raise ValueError("it is an instance of a series whose master's iCalUId is unknown")
            return uid
        uid = clean_id(str(item.get("iCalUId") or ""), 500)
        if not uid:
            raise ValueError("it has no iCalUId")
        return uid

    def recurrence_id(self, item: dict[str, Any]) -> str | None:
        """The ICS source's RECURRENCE-ID: the original start in UTC, or the original date if all-day."""
        if not self.is_instance(item):
            return None
        original = item.get("originalStart")
        if not original:
            raise ValueError("it is an instance of a series without its originalStart")
        try:
            moment = datetime.fromisoformat(str(original).replace("Z", "+00:00")[:32])
        except ValueError:
            raise ValueError(f"its originalStart {clean_line(str(original), 40)!r} is no time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
        if item.get("isAllDay"):
            # The date Outlook shows: local midnight in UTC is read back in the event's zone; a bare
            # UTC midnight is the date itself (either way a zone west of UTC keeps its date).
            if moment.time() == time(0):
                return moment.strftime("%Y%m%d")
            return moment.astimezone(self._own_zone(item) or self.zone).strftime("%Y%m%d")
        return moment.strftime("%Y%m%dT%H%M%SZ")

    @staticmethod
    def _person(data: Any) -> Person | None:
        address = (data or {}).get("emailAddress") if isinstance(data, dict) else None
        if not isinstance(address, dict):
            return None
        email = parse_address(str(address.get("address") or ""))
        if email is None:
            return None
        return Person(email=email, name=clean_line(str(address.get("name") or ""), 100))

    def event(self, item: dict[str, Any], series_uid: str | None = None) -> CalendarEvent:
        """Raises ValueError naming what is wrong when the event cannot be used. `series_uid`: an
        instance's series master's iCalUId."""
        uid = self.uid(item, series_uid)
        own = self._own_zone(item)
        all_day = bool(item.get("isAllDay"))
        start = _parse_moment(item.get("start"), "start")
        try:
            end = _parse_moment(item.get("end"), "end")
        except ValueError:
            end = start
        if all_day:
            # All-day events are dates: what Outlook shows is the date in the event's own zone.
            start_day = start.astimezone(own) if own and start.tzinfo == UTC else start
            end_day = end.astimezone(own) if own and end.tzinfo == UTC else end
            start, end = self._day(start_day, own), self._day(end_day, own)
            if end <= start:
                end = start + timedelta(days=1)
        if end < start:
            raise ValueError(f"it ends ({end.isoformat()}) before it starts ({start.isoformat()})")
        attendees = []
        for data in item.get("attendees") or ():
            person = self._person(data)
            if person is None or not isinstance(data, dict):
                continue
            kind = str(data.get("type") or "required")
            response = (
                (data.get("status") or {}).get("response") if isinstance(data.get("status"), dict) else None
            )
            attendees.append(
                Attendee(
                    person,
                    role="OPT-PARTICIPANT" if kind == "optional" else "REQ-PARTICIPANT",
                    status=_RESPONSE_STATUS.get(str(response), "NEEDS-ACTION"),
                    kind="RESOURCE" if kind == "resource" else "INDIVIDUAL",
                )
            )
        categories = tuple(
            clean_line(str(c), 100) for c in (item.get("categories") or ())[:MAX_CATEGORIES] if str(c).strip()
        )
        return CalendarEvent(
            uid=uid,
            recurrence_id=self.recurrence_id(item),
            start=start.astimezone(UTC),
            end=end.astimezone(UTC),
            title=clean_line(str(item.get("subject") or ""), 300),
            description=body_text(item.get("body")) or str(item.get("bodyPreview") or "")[:MAX_DESCRIPTION],
            timezone=own.key if own is not None and own.key != "UTC" else None,
            all_day=all_day,
            organizer=self._person(item.get("organizer")),
            attendees=tuple(attendees),
            status=EventStatus.CANCELLED if item.get("isCancelled") else EventStatus.CONFIRMED,
            categories=categories,
        )
