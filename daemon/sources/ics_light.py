"""A light reader for the plain events of an ICS feed: the few fields planning uses, read straight
from one VEVENT's text, or None ("not sure") and the full icalendar parse reads the event instead.

It reads only what it reads exactly as icalendar and EventReader would (one event, no recurrence, no
tag, times in UTC, floating, all-day or an IANA zone icalendar resolves to the same ZoneInfo, plain
parameters); anything else is left to icalendar. tests/integration/test_ics_light.py holds the two
to the same results over the real-world corpus, generated feeds and hand-written odd cases.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterable
from datetime import date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from icalendar.timezone import tzp

from daemon.model import CalendarEvent
from daemon.sources.ics_events import EventReader
from daemon.sources.zones import KNOWN

# icalendar's own unfolding (icalendar/parser/content_line.py).
_UFOLD = re.compile(r"(?:(?<!\n)\r\n|(?<![\r\n])\n)(?:\r?\n)*[ \t]")
# A content line whose parameters need none of icalendar's special cases: no backslashes, carets,
# percent signs or control characters in them, quoted values without ; or :, unquoted ones without
# commas (a list) or quotes.
_PARAM_VALUE = r'(?:"[^"\\^%;:\x00-\x1f\x7f]*"|[^"\\^%;:,\x00-\x1f\x7f]*)'
_PARAM = re.compile(rf";([A-Za-z0-9-]+)=({_PARAM_VALUE})")
_ESCAPE = re.compile(r"\\([\\,;:nN])")  # icalendar's unescape_backslash, applied to every value
_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_DATETIME = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})(Z?)")
_DURATION = re.compile(r"P(?:([0-9]+)W)?(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?")
_IANA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*")
# The properties EventReader reads of a single event, which must be there once at most.
_ONCE = frozenset({"DTSTART", "DTEND", "DURATION", "SUMMARY", "DESCRIPTION", "ORGANIZER", "STATUS"})
_RECURRENCE = frozenset({"RRULE", "RDATE", "EXDATE", "RECURRENCE-ID", "BEGIN", "END"})
_WANTED = re.compile(
    rf"^({'|'.join(sorted(_ONCE | _RECURRENCE | {'ATTENDEE'}, key=len, reverse=True))})([;:][^\n]*)$",
    re.MULTILINE | re.IGNORECASE,
)
_REST = re.compile(rf"((?:;[A-Za-z0-9-]+={_PARAM_VALUE})*):(.*)", re.DOTALL)
_BAD_LINE = re.compile(r"^(?![A-Za-z0-9-]+[;:]|\r?$)", re.MULTILINE)


def tag_words(words: Iterable[str]) -> tuple[str, ...]:
    """The policy's tag words as the light reader looks for them: lower-cased and without their
    `#`, so that "closing" anywhere sends an event to the full parse, not only "#closing"."""
    return tuple(dict.fromkeys(w.strip().lower().lstrip("#") for w in words if w.strip().lstrip("#")))


def unfold(text: str) -> str:
    """The text with its folded lines joined, as icalendar joins them."""
    if "\n\r" not in text and text.count("\n") == text.count("\r\n"):
        # CR LF throughout and no blank line: a fold is CR LF and one blank, nothing else
        return text.replace("\r\n ", "").replace("\r\n\t", "")
    return _UFOLD.sub("", text)


class _Value(str):
    """A property value with its parameters, as EventReader reads icalendar's."""

    params: dict[str, str]


class _When:
    def __init__(self, value: date | datetime) -> None:
        self.dt = value
        self.params: dict[str, str] = {}


class _Event(dict[str, Any]):
    """The few properties of one VEVENT that EventReader reads, and its end as icalendar gives it."""

    end: date | datetime


@functools.lru_cache(maxsize=256)
def _zone(tzid: str) -> tzinfo | None:
    """The zone a TZID names, when it is an IANA name that icalendar resolves to that very ZoneInfo
    whatever the calendar defines: one it knows, never one a calendar's VTIMEZONE makes (the answer
    is kept for the process, and each calendar is read with its own VTIMEZONEs)."""
    if not _IANA_NAME.fullmatch(tzid) or not KNOWN.knows_timezone_id(tzid):
        return None
    zone = ZoneInfo(tzid)  # loads: the lookup just loaded it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = tzp.timezone(tzid)
    return zone if theirs is zone else None  # ZoneInfo keeps one object per key


def _moment(value: str, params: dict[str, str]) -> date | datetime | None:
    """A DTSTART or DTEND value as icalendar reads it, or None when not sure."""
    kind = params.get("VALUE", "").upper()
    tzid = params.get("TZID")
    found = _DATETIME.fullmatch(value)
    if found and kind in ("", "DATE-TIME"):
        year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
        moment = datetime(year, month, day, hour, minute, second)  # ValueError: no such day or hour
        if tzid is None:
            return tzp.localize_utc(moment) if found.group(7) else moment
        zone = _zone(tzid)
        return None if zone is None or found.group(7) else tzp.localize(moment, zone)
    found = _DATE.fullmatch(value)
    if found and kind in ("", "DATE") and tzid is None:
        return date(*(int(part) for part in found.groups()))
    return None


def _end(start: date | datetime, props: dict[str, tuple[dict[str, str], str]]) -> date | datetime | None:
    """The end icalendar's Event.end gives, or None when not sure (or when it would raise)."""
    if "DTEND" in props:
        if "DURATION" in props:
            return None
        end = _moment(props["DTEND"][1], props["DTEND"][0])
        return end if end is not None and isinstance(end, datetime) == isinstance(start, datetime) else None
    if "DURATION" in props:
        params, value = props["DURATION"]
        found = _DURATION.fullmatch(value)
        if "VALUE" in params or found is None or not any(found.groups()):
            return None
        weeks, days, hours, minutes, seconds = (int(part or 0) for part in found.groups())
        length = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
        if length <= timedelta(0) or (not isinstance(start, datetime) and length.seconds):
            return None
        return start + length
    return start if isinstance(start, datetime) else start + timedelta(days=1)


def _lines(unfolded: str) -> list[tuple[str, dict[str, str], str]] | None:
    """The content lines EventReader reads (and those that make it not sure) as name, parameters,
    raw value; None when not sure."""
    # icalendar names a line by what comes before its first ; or :, whatever follows, and sets aside
    # a line it cannot parse: so every line must have a plain name, and the lines read here must be
    # read exactly; the others do not matter.
    if _BAD_LINE.search(unfolded):
        return None
    parsed = []
    marks = 0
    for line in _WANTED.finditer(unfolded):
        name, rest = line.group(1).upper(), line.group(2)
        rest = rest[:-1] if rest.endswith("\r") else rest  # the line ends with CR LF
        if name in ("BEGIN", "END"):  # only the event's own, first and last: nothing nested
            last = name == "END" and not unfolded[line.end() :].strip("\r\n")
            if rest.upper() != ":VEVENT" or not (line.start() == 0 if name == "BEGIN" else last):
                return None
            marks += 1
            continue
        found = _REST.fullmatch(rest)
        if found is None:
            return None
        params: dict[str, str] = {}
        for key, raw in _PARAM.findall(found.group(1)):
            key = key.upper()
            # icalendar strips blanks around ; and =, and keeps one value of a repeated parameter
            if key in params or (not raw.startswith('"') and raw != raw.strip(" ")):
                return None
            params[key] = raw[1:-1] if raw.startswith('"') else raw
        parsed.append((name, params, found.group(2)))
    return parsed if marks == 2 else None


def read_single(
    text: str, uid: str, reader: EventReader, tags: tuple[str, ...]
) -> tuple[CalendarEvent, list[str]] | None:
    """The event one VEVENT block holds and what EventReader noted of it, read without icalendar;
    None when the block is tagged (`tag_words`) or anything in it is out of the ordinary."""
    unfolded = unfold(text)
    lowered = unfolded.lower()
    unescaped = _ESCAPE.sub(r"\1", lowered) if "\\" in lowered else lowered
    if any(tag in lowered or tag in unescaped for tag in tags):
        return None  # the events that drive sends are read by icalendar itself
    lines = _lines(unfolded)
    if lines is None:
        return None
    props: dict[str, tuple[dict[str, str], str]] = {}
    attendees: list[_Value] = []
    for name, params, raw in lines:
        if name in _RECURRENCE:
            return None
        if name not in _ONCE and name != "ATTENDEE":
            continue
        if name in props or (name not in ("DTSTART", "DTEND") and "VALUE" in params):
            return None
        value = _ESCAPE.sub(_unescape, raw) if "\\" in raw else raw
        if name in ("ORGANIZER", "ATTENDEE") and ("\r" in value or "\n" in value):
            return None  # icalendar refuses such an address, and says so in its own words
        if name == "ATTENDEE":
            attendees.append(_person(value, params))
        else:
            props[name] = (params, value)
    if "DTSTART" not in props:
        return None
    try:
        start = _moment(props["DTSTART"][1], props["DTSTART"][0])
        end = _end(start, props) if start is not None else None
    except (ValueError, OverflowError):  # no such day, a duration past the calendar's end
        return None
    if start is None or end is None:
        return None
    component = _Event({"DTSTART": _When(start)})
    component.end = end
    for name in ("SUMMARY", "DESCRIPTION", "STATUS", "ORGANIZER"):
        if name in props:
            component[name] = _person(props[name][1], props[name][0])
    if attendees:
        component["ATTENDEE"] = attendees if len(attendees) > 1 else attendees[0]
    notes: list[str] = []
    try:
        event = reader.event(component, uid, series=False, notes=notes)
    except ValueError:
        return None  # it ends before it starts, say: icalendar's reading names it
    return event, notes


def _unescape(found: re.Match[str]) -> str:
    return "\n" if found.group(1) in "nN" else found.group(1)


def _person(value: str, params: dict[str, str]) -> _Value:
    prop = _Value(value)
    prop.params = params
    return prop
