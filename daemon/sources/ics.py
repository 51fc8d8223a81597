"""ICS calendars from a file or a URL, read incrementally.

An unchanged feed costs one conditional GET (or one hash of the file); a changed one re-parses only
the events whose text changed. Parsing is icalendar's, expansion recurring-ical-events'.

A feed is untrusted and may be cut short, oversized, empty, an error page or another calendar: what is
not a complete calendar fails the sync (the caller keeps its state, so nothing is taken as deleted),
and a feed that suddenly loses most of its events is held until a person confirms the removals.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
from icalendar.timezone import tzid_from_tzinfo

from daemon import __version__
from daemon.errors import SourceError
from daemon.model import Attendee, CalendarEvent, EventStatus, Person, clean_id, clean_line, parse_address
from daemon.sources import CalendarSource, SyncBatch, repeat_unusable
from daemon.sources.zones import iana_zone, zone_like

if TYPE_CHECKING:
    from daemon.backends import Wiring
    from daemon.config.sections import IcsCalendar

log = logging.getLogger(__name__)

MAX_INSTANCES = 1000  # per series and window: a FREQ=SECONDLY rule must not eat the machine
MAX_DESCRIPTION = 20_000
DEFAULT_MAX_BYTES = 50_000_000  # per calendar, `max_bytes` in its [[calendars]] entry
# A feed that loses more events than this at once, and more than half of those it had, is held.
HOLD_REMOVALS_OVER = 10
_CHUNK = 1 << 20
_BLOCK = re.compile(
    r"^BEGIN:VEVENT[ \t]*\r?\n.*?^END:VEVENT[ \t]*(?:\r?\n|\Z)", re.MULTILINE | re.DOTALL | re.I
)
_UID = re.compile(r"^UID(?:;[^:\r\n]*)?:(.*(?:\r?\n[ \t].*)*)", re.MULTILINE | re.I)
_DTSTAMP = re.compile(r"^DTSTAMP[;:].*(?:\r?\n[ \t].*)*\r?\n?", re.MULTILINE | re.I)
_VALARM = re.compile(
    r"^BEGIN:VALARM[ \t]*\r?\n.*?^END:VALARM[ \t]*(?:\r?\n|\Z)", re.MULTILINE | re.DOTALL | re.I
)
_VTIMEZONE = re.compile(
    r"^BEGIN:VTIMEZONE[ \t]*\r?\n.*?^END:VTIMEZONE[ \t]*(?:\r?\n|\Z)", re.MULTILINE | re.DOTALL | re.I
)
_TZID = re.compile(r"^TZID[;:](.*)$", re.MULTILINE | re.I)
_RECURS = re.compile(r"^(?:RRULE|RDATE|RECURRENCE-ID)[;:]", re.MULTILINE | re.I)
_END_CALENDAR = re.compile(r"^END:VCALENDAR", re.MULTILINE | re.I)
# Anchored on the newline, not on ^ with MULTILINE: five times faster over a 100 MB feed.
_MARK = re.compile(r"\n(BEGIN|END):(VCALENDAR|VEVENT)[ \t\r]*(?=\n|\Z)", re.I)
_FIRST_MARK = re.compile(r"(BEGIN|END):(VCALENDAR|VEVENT)[ \t\r]*(?=\n|\Z)", re.I)
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape
_UTF8_BEYOND_ASCII = re.compile("[^\x00-\x7f\udc80-\udcff]")
_URI_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def redact_url(url: str) -> str:
    """Private feed URLs carry their secret in the path or query: show only where they point."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _decode(data: bytes) -> tuple[str, bool]:
    """The text, and whether some of its bytes were not UTF-8: those are kept as lone surrogates,
    for `_replace_invalid` to name the events they are in and replace them there alone."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="surrogateescape")
    if not _UTF8_BEYOND_ASCII.search(text):
        # Not one UTF-8 character beyond ASCII: a file saved in Windows-1252, read whole as such.
        return data.decode("cp1252", errors="replace"), False
    # A UTF-8 file with some bad bytes: one broken event must not garble the others' names.
    return text, True


def _replace_invalid(text: str, problems: list[str]) -> str:
    """Each byte that was not UTF-8 replaced by U+FFFD, and the events that held one named."""
    inside = 0
    for block in _BLOCK.finditer(text):
        found = len(_NOT_UTF8.findall(block.group(0)))
        if found:
            inside += found
            problems.append(
                f"{_event_at(text, block.start(), block.end())}: {found} byte(s) that are not UTF-8, "
                "replaced by U+FFFD"
            )
    if len(_NOT_UTF8.findall(text)) > inside:
        problems.append("bytes that are not UTF-8 outside the events, replaced by U+FFFD")
    return _NOT_UTF8.sub("\ufffd", text)


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _event_at(text: str, start: int, stop: int) -> str:
    """The event that begins at `start`, named by its UID if it has one and by its line."""
    found = _UID.search(text, start, stop)
    uid = clean_line(re.sub(r"\r?\n[ \t]", "", found.group(1)), 200).strip() if found else ""
    uid = _NOT_UTF8.sub("\ufffd", uid)
    line = _line_of(text, start)
    return f"event {uid} (line {line})" if uid else f"the event at line {line} (no UID)"


def _marks(text: str) -> Iterator[tuple[bool, bool, int, int]]:
    """Each BEGIN/END line of a VCALENDAR or VEVENT: begin?, event?, where it starts and ends."""
    first = _FIRST_MARK.match(text)
    for mark in itertools.chain([first] if first else [], _MARK.finditer(text)):
        begin, event = mark.group(1).upper() == "BEGIN", mark.group(2).upper() == "VEVENT"
        yield begin, event, mark.start(1), mark.end()


def completeness(text: str) -> tuple[str | None, int]:
    """What makes `text` not a whole calendar (cut short, an event left open), or None; and where
    the calendar ends, so that text after it can be set aside.

    Only END:VCALENDAR shows that a download arrived whole: without it, events missing from the end
    would be taken as deleted. A file of bare VEVENTs has no such mark; each event must be closed.
    """
    open_event: int | None = None  # where the event being read begins
    in_calendar = False
    calendars = 0
    end = 0
    for begin, event, start, stop in _marks(text):
        if open_event is not None and (begin or not event):
            return f"{_event_at(text, open_event, start)} has no END:VEVENT", 0
        if event and begin:
            if calendars and not in_calendar:
                following = _MARK.search(text, stop)
                where = _event_at(text, start, following.start() if following else len(text))
                return f"{where} is outside BEGIN:VCALENDAR … END:VCALENDAR", 0
            open_event = start
        elif event:
            if open_event is None:
                return f"END:VEVENT at line {_line_of(text, start)} has no BEGIN:VEVENT", 0
            open_event = None
            if not calendars:  # bare VEVENTs: the last one closed ends the file
                end = stop
        elif begin:
            if in_calendar:  # two files joined, the first cut short
                return f"BEGIN:VCALENDAR at line {_line_of(text, start)} opens a calendar inside another", 0
            in_calendar, calendars = True, calendars + 1
        else:
            if not in_calendar:
                return f"END:VCALENDAR at line {_line_of(text, start)} has no BEGIN:VCALENDAR", 0
            in_calendar, end = False, stop
    if open_event is not None:
        event_name = _event_at(text, open_event, len(text))
        return f"it ends inside {event_name}, which has no END:VEVENT: cut short?", 0
    if in_calendar:
        return "it ends before END:VCALENDAR: cut short?", 0
    return None, end


class Group:
    """The VEVENT blocks that share one UID: a single event, or a series with its overrides."""

    __slots__ = ("_digest", "blocks", "uid")

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.blocks: list[str] = []
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        # DTSTAMP is the export time in many feeds: it changes on every download, the event does not.
        if self._digest is None:
            self._digest = _digest("".join(_DTSTAMP.sub("", block) for block in self.blocks))
        return self._digest

    @property
    def recurring(self) -> bool:
        return any(_RECURS.search(block) for block in self.blocks)


def split(text: str) -> tuple[str, dict[str, Group]]:
    """The calendar without its events (time zones and properties), and its events by UID."""
    groups: dict[str, Group] = {}
    gaps: list[str] = []  # the text between the events: the skeleton, cut out in the same pass
    end = 0
    for match in _BLOCK.finditer(text):
        gaps.append(text[end : match.start()])
        end = match.end()
        block = match.group(0)
        # Reminders are never read, and icalendar rejects a malformed one along with its event.
        if "ALARM" in block or "alarm" in block:
            block = _VALARM.sub("", block)
        found = _UID.search(block)
        uid = found.group(1) if found else ""
        if "\n" in uid:
            uid = re.sub(r"\r?\n[ \t]", "", uid)
        uid = uid.strip()
        key = uid or "no-uid-" + _digest(block)
        groups.setdefault(key, Group(key)).blocks.append(block)
    gaps.append(text[end:])
    return "".join(gaps), groups


def _assemble(skeleton: str, blocks: Iterable[str]) -> str:
    body = "".join(b if b.endswith("\n") else b + "\r\n" for b in blocks)
    ends = list(_END_CALENDAR.finditer(skeleton))
    if not ends:  # a truncated file: close it so the events we have still parse
        return skeleton.rstrip("\r\n") + "\r\n" + body + "END:VCALENDAR\r\n"
    cut = ends[-1].start()
    return skeleton[:cut] + body + skeleton[cut:]


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

    @staticmethod
    def _person(prop: Any, role: str, notes: list[str]) -> Person | None:
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
                return Person(email=email, name=clean_line(str(params.get("CN", "")), 100))
        if any(candidates) and str(params.get("CUTYPE", "")).upper() not in ("ROOM", "RESOURCE"):
            shown = clean_line(" ".join(str(c) for c in candidates if c), 100)
            notes.append(f"{role} {shown!r} is not an email address; left out")
        return None  # a room, or a server's URN for someone with no address: nobody to write to

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


class IcsSource(CalendarSource):
    """A calendar published as an .ics file on disk or at an http(s) URL."""

    def __init__(
        self,
        name: str,
        *,
        path: Path | None = None,
        url: str | None = None,
        default_zone: str = "UTC",
        window_past: timedelta = timedelta(days=30),
        window_future: timedelta = timedelta(days=400),
        timeout: float = 30.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if (path is None) == (url is None):
            raise ValueError("an ICS source needs exactly one of path or url")
        self.name = name
        self.path = path
        self.url = url
        self.reader = EventReader(default_zone)
        self.window_past = window_past
        self.window_future = window_future
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._calendar_props: dict[str, Any] = {}  # X-WR-TIMEZONE and kin, for expanding series

    @classmethod
    def from_config(cls, calendar: IcsCalendar, wiring: Wiring) -> list[CalendarSource]:
        settings = wiring.settings
        return [
            cls(
                calendar.label,
                path=settings.resolve(calendar.path) if calendar.path else None,
                url=calendar.url,
                default_zone=settings.company.timezone,
                window_past=timedelta(days=calendar.window_past_days),
                window_future=timedelta(days=calendar.window_future_days),
                timeout=calendar.timeout,
                max_bytes=calendar.max_bytes,
            )
        ]

    @property
    def where(self) -> str:
        return str(self.path) if self.path else redact_url(self.url or "")

    # -- fetching -------------------------------------------------------------------------
    def _fetch(self, state: dict[str, Any]) -> tuple[bytes | None, dict[str, Any]]:
        """The feed's bytes, or None if the server says it has not changed; plus HTTP validators."""
        if self.path is not None:
            try:
                with self.path.open("rb") as file:
                    size = os.fstat(file.fileno()).st_size
                    if size > self.max_bytes:
                        raise self._too_big(size)
                    data = file.read(self.max_bytes + 1)  # it may grow while we read it
            except OSError as exc:
                raise SourceError(
                    f"calendar {self.name!r}: cannot read {self.path}: {exc.strerror}"
                ) from None
            if len(data) > self.max_bytes:
                raise self._too_big()
            return data, {}
        assert self.url is not None
        request = urllib.request.Request(self.url, headers={"User-Agent": f"followthrough/{__version__}"})
        if state.get("etag"):
            request.add_header("If-None-Match", state["etag"])
        if state.get("last_modified"):
            request.add_header("If-Modified-Since", state["last_modified"])
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                headers = response.headers
                data = self._download(response, headers.get("Content-Length"))
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                return None, {}
            raise SourceError(
                f"calendar {self.name!r}: {self.where} answered HTTP {exc.code} {exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceError(f"calendar {self.name!r}: cannot fetch {self.where}: {reason}") from None
        except http.client.HTTPException as exc:  # e.g. a chunked response that broke off
            raise SourceError(
                f"calendar {self.name!r}: the download of {self.where} broke off: {_short(exc)}"
            ) from None
        validators = {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified")}
        return data, {k: v for k, v in validators.items() if v}

    def _download(self, response: Any, length: str | None) -> bytes:
        """The body, read in chunks so that an oversized feed is refused before it fills memory."""
        announced = int(length) if length and length.strip().isdigit() else None
        if announced is not None and announced > self.max_bytes:
            raise self._too_big(announced)
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_big()
            chunks.append(chunk)
        if announced is not None and size < announced:  # the connection closed early
            raise SourceError(
                f"calendar {self.name!r}: the download of {self.where} broke off after {size} of "
                f"{announced} bytes"
            )
        return b"".join(chunks)

    def _too_big(self, size: int | None = None) -> SourceError:
        what = f"{size} bytes" if size is not None else "more than that"
        return SourceError(
            f"calendar {self.name!r}: {self.where} is larger than its max_bytes = {self.max_bytes} "
            f"({what}); not read. If it really is this big, raise max_bytes in its [[calendars]] entry"
        )

    # -- syncing --------------------------------------------------------------------------
    def sync(self, state: dict[str, Any] | None, now: datetime) -> SyncBatch:
        state = state or {}
        data, validators = self._fetch(state)
        window = (now - self.window_past, now + self.window_future)
        items: dict[str, list[Any]] = state.get("items", {})
        due = {uid for uid, item in items.items() if item[2] is not None and item[2] <= now.timestamp()}
        if data is None and not due:
            return self._unchanged(state)
        new_state: dict[str, Any] = {**state, **validators}
        if data is None:  # unchanged feed, but series to re-expand as the window moves: re-read
            data, _ = self._fetch({})
            assert data is not None
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if digest == state.get("digest") and not due:
            return self._unchanged(new_state)
        text, not_utf8 = _decode(data)
        batch = SyncBatch()
        if not_utf8:
            text = _replace_invalid(text, batch.problems)
        text = self._whole(text, batch.problems)
        skeleton, groups = split(text)
        header = _digest(skeleton)
        full = header != state.get("header")  # time zones changed: every event may have moved
        changed = [
            g
            for uid, g in groups.items()
            if full or uid in due or uid not in items or items[uid][0] != g.digest
        ]
        new_items = {uid: item for uid, item in items.items() if uid in groups}
        vanished = 0
        for uid in items.keys() - groups.keys():
            if len(items[uid]) > 3 and items[uid][3]:
                continue  # a feed that drops its old events has not deleted them
            gone = [i for i in items[uid][1] if not self._aged_out(i, window[0])]
            vanished += bool(gone)
            batch.removed += gone
        self._hold_mass_removal(vanished, items)
        to_read = [g.uid for g in changed]
        if changed:
            skeleton, lost_zones = self._usable_zones(skeleton, batch.problems)
            self._check_outside_events(skeleton)
            changed = [g for g in changed if not self._uses_lost_zone(g, lost_zones, batch.problems)]
        read: set[str] = set()
        for group, components in self._parse(skeleton, changed, batch.problems):
            old_ids = set(items.get(group.uid, (None, []))[1])
            expanded = self._expand(group, components, window, batch.problems)
            if expanded is None:
                continue  # unusable: what was known of it stays, and it is read again next time
            read.add(group.uid)
            events, revisit, history = expanded
            ids = [e.id for e in events] + history
            batch.upserted += events
            batch.removed += [i for i in old_ids - set(ids) if not self._aged_out(i, window[0])]
            new_items[group.uid] = [group.digest, ids, revisit, bool(history) and not events]
        batch.unusable = [uid for uid in to_read if uid not in read]
        # Kept in the state, so that a quiet feed still names them at every pass (see _unchanged);
        # a changed one reads them again, since what was known of them was left as it was.
        unusable = {uid: [uid, _problem_of(uid, batch.problems)] for uid in batch.unusable}
        new_state.update(digest=digest, header=header, items=new_items, unusable=unusable)
        batch.state = new_state
        return batch

    @staticmethod
    def _unchanged(state: dict[str, Any]) -> SyncBatch:
        batch = SyncBatch(state=state, unchanged=True)
        repeat_unusable(batch, state.get("unusable") or {})
        return batch

    def _whole(self, text: str, problems: list[str]) -> str:
        """The calendar in `text`; SourceError when it is not one, or not a complete one: an empty
        answer, an error page, a download cut short must never read as "every event was deleted"."""
        if not text.strip():
            raise SourceError(f"calendar {self.name!r}: {self.where} is empty; nothing read, nothing changed")
        enveloped = re.search(r"^BEGIN:VCALENDAR", text, re.MULTILINE | re.I) is not None
        if not enveloped and not re.search(r"^BEGIN:VEVENT", text, re.MULTILINE | re.I):
            raise SourceError(f"calendar {self.name!r}: {self.where} is not an iCalendar file")
        wrong, end = completeness(text)
        if wrong:
            raise SourceError(
                f"calendar {self.name!r}: {self.where} is incomplete: {wrong}; nothing read, nothing changed"
            )
        if text[end:].strip():
            problems.append(f"text after the end of the calendar (line {_line_of(text, end)}) ignored")
            text = text[:end].rstrip() + "\r\n"
        if not enveloped:
            # Bare VEVENTs, as some tools export them: read them as the calendar they mean.
            problems.append("the file has no BEGIN:VCALENDAR; read its events anyway")
            text = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{text.rstrip()}\r\nEND:VCALENDAR\r\n"
        return text

    def _hold_mass_removal(self, vanished: int, items: dict[str, list[Any]]) -> None:
        """A feed that suddenly lacks most of its events is more likely the wrong file, a broken
        export or a server in trouble than a mass cancellation: hold it until a person confirms."""
        known = sum(1 for item in items.values() if not (len(item) > 3 and item[3]))
        if vanished <= HOLD_REMOVALS_OVER or vanished * 2 <= known or self.accept_removals:
            return
        raise SourceError(
            f"calendar {self.name!r}: {self.where} no longer has {vanished} of the {known} events it had; "
            f"held, nothing changed or cancelled. If they really were deleted, confirm with "
            f"`followthrough tick --accept-removals {self.name}`"
        )

    def _check_outside_events(self, skeleton: str) -> None:
        """A broken line between the events would make every event fail to parse, each blamed in
        turn: name the line instead, and read nothing."""
        try:
            icalendar.Calendar.from_ical(skeleton, multiple=True)
        except Exception as exc:
            raise SourceError(
                f"calendar {self.name!r}: {self.where}: outside its events, {_short(exc)}; "
                "nothing read, nothing changed"
            ) from None

    @staticmethod
    def _aged_out(event_id: str, window_start: datetime) -> bool:
        """An instance that slid out of the window's past was not deleted: leave it be."""
        start = instance_start(event_id)
        return start is not None and start < window_start

    def _usable_zones(self, skeleton: str, problems: list[str]) -> tuple[str, set[str]]:
        """The calendar without the VTIMEZONEs icalendar cannot read, so one bad zone does not sink
        every event; and the dropped zones that no IANA zone of the same name can stand in for."""
        lost: set[str] = set()
        for match in list(_VTIMEZONE.finditer(skeleton)):
            block = match.group(0)
            try:
                parsed = icalendar.Calendar.from_ical(f"BEGIN:VCALENDAR\r\n{block}END:VCALENDAR\r\n")
                for zone in parsed.walk("VTIMEZONE"):
                    zone.to_tz()  # type: ignore[attr-defined]
            except Exception as exc:
                found = _TZID.search(block)
                tzid = found.group(1).strip() if found else "?"
                problems.append(f"time zone {tzid}: cannot be read ({_short(exc)}); ignored")
                skeleton = skeleton.replace(block, "", 1)
                if iana_zone(tzid) is None:
                    lost.add(tzid)
        return skeleton, lost

    @staticmethod
    def _uses_lost_zone(group: Group, lost: set[str], problems: list[str]) -> bool:
        for tzid in lost:
            if any(f"TZID={tzid}".lower() in block.lower() for block in group.blocks):
                problems.append(f"event {group.uid}: skipped: its time zone {tzid} cannot be read")
                return True
        return False

    def _read(self, text: str) -> list[Any]:
        """The VEVENTs of a text that may hold several VCALENDARs, as some exports do."""
        calendars = icalendar.Calendar.from_ical(text, multiple=True)
        self._calendar_props = {k: c[k] for c in reversed(calendars) for k in ("X-WR-TIMEZONE",) if k in c}
        return [s for c in calendars for s in c.subcomponents if s.name == "VEVENT"]

    def _parse(
        self, skeleton: str, groups: list[Group], problems: list[str]
    ) -> Iterator[tuple[Group, list[Any]]]:
        """Each group with its parsed components; one broken group never spoils the others."""
        if not groups:
            return
        components: list[Any] = []
        try:
            components = self._read(
                _assemble(skeleton, itertools.chain.from_iterable(g.blocks for g in groups))
            )
        except Exception as exc:
            log.debug("calendar %s: whole parse failed (%s), parsing event by event", self.name, exc)
        if len(components) == sum(len(g.blocks) for g in groups):
            position = 0
            for group in groups:
                yield group, components[position : position + len(group.blocks)]
                position += len(group.blocks)
            return
        for group in groups:
            try:
                found = self._read(_assemble(skeleton, group.blocks))
            except Exception as exc:
                problems.append(f"event {group.uid}: cannot be parsed: {_short(exc)}")
                continue
            if found:
                yield group, found
            else:
                problems.append(f"event {group.uid}: cannot be parsed")

    def _expand(
        self,
        group: Group,
        components: list[Any],
        window: tuple[datetime, datetime],
        problems: list[str],
    ) -> tuple[list[CalendarEvent], float | None, list[str]] | None:
        """The group's events inside the window, when to look at it again even if unchanged, and
        the ids of its events that lie before the window (history, not deletions); None when the
        group cannot be used at all."""
        start, end = window
        notes: list[str] = []
        if not group.recurring:
            try:
                event = self.reader.event(components[0], group.uid, series=False, notes=notes)
            except Exception as exc:
                problems.append(f"event {group.uid}: skipped: {_short(exc)}")
                return None
            if len(components) > 1:
                problems.append(f"event {group.uid}: {len(components)} copies of one event; used the first")
            if event.start > end:
                return [], (event.start - self.window_future).timestamp(), []
            if event.end < start:
                return [], None, [event.id]
            problems += [f"event {group.uid}: {note}" for note in notes]
            return [event], None, []
        calendar = icalendar.Calendar()
        for key, value in self._calendar_props.items():
            calendar.add(key, value)
        for component in components:
            calendar.add_component(component)
        events: list[CalendarEvent] = []
        try:
            query = recurring_ical_events.of(calendar)
            for component in itertools.islice(query.after(start), MAX_INSTANCES + 1):
                if len(events) == MAX_INSTANCES:
                    problems.append(
                        f"event {group.uid}: more than {MAX_INSTANCES} instances in the window; "
                        f"used the first {MAX_INSTANCES}"
                    )
                    break
                event = self.reader.event(component, group.uid, series=True, notes=notes)
                if event.start > end:
                    break
                events.append(event)
        except Exception as exc:
            problems.append(f"event {group.uid}: recurrence cannot be expanded: {_short(exc)}")
            return None
        if events:  # said once for the series, not once per instance
            problems += [f"event {group.uid}: {note}" for note in dict.fromkeys(notes)]
        # The window moves every day: look again tomorrow for instances that come into view.
        return events, (start + self.window_past + timedelta(days=1)).timestamp(), []


def _problem_of(uid: str, problems: list[str]) -> str:
    return next((p for p in problems if p.startswith(f"event {uid}:")), f"event {uid}: cannot be used")


def _short(exc: BaseException) -> str:
    text = clean_line(str(exc) or type(exc).__name__, 200)
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
