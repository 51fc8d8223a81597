"""An ICS feed's bytes: checked whole and cut into its events by UID in one pass, each event's text
decoded only when it is read, its unreadable time zones set aside.

Regular expressions over the raw bytes, before icalendar parses anything: a changed feed re-parses
only the events whose text changed, and a feed cut short is caught before it can read as deletions.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import icalendar

from daemon.model import clean_line
from daemon.sources.ics_events import short_error
from daemon.sources.zones import iana_zone

_BOM = b"\xef\xbb\xbf"
_UID = re.compile(rb"^UID(?:;[^:\r\n]*)?:(.*(?:\r?\n[ \t].*)*)", re.MULTILINE | re.I)
_DTSTAMP = re.compile(rb"^DTSTAMP[;:].*(?:\r?\n[ \t].*)*\r?\n?", re.MULTILINE | re.I)
_VALARM = re.compile(
    rb"^BEGIN:VALARM[ \t]*\r?\n.*?^END:VALARM[ \t]*(?:\r?\n|\Z)", re.MULTILINE | re.DOTALL | re.I
)
_RECURS = re.compile(rb"^(?:RRULE|RDATE|RECURRENCE-ID)[;:]", re.MULTILINE | re.I)
# What an event read in place in the feed is scanned for, in one pass: its DTSTAMP lines (1), a
# recurrence (2), a reminder (3, see `_block`). Anchored on the newline before the name: several times
# faster than ^ with MULTILINE, and an event's text never begins with them. A DTSTAMP line is cut from
# that newline to the one that ends it, which leaves what `_DTSTAMP.sub` leaves.
_SCAN = re.compile(
    rb"\n(?:(DTSTAMP[;:][^\n]*(?:\n[ \t][^\n]*)*)|(RRULE[;:]|RDATE[;:]|RECURRENCE-ID[;:])|(BEGIN:VALARM))",
    re.I,
)
_UID_AT = re.compile(rb"\nUID(?:;[^:\r\n]*)?:([^\n]*(?:\n[ \t][^\n]*)*)", re.I)
_VTIMEZONE = re.compile(
    r"^BEGIN:VTIMEZONE[ \t]*\r?\n.*?^END:VTIMEZONE[ \t]*(?:\r?\n|\Z)", re.MULTILINE | re.DOTALL | re.I
)
_TZID = re.compile(r"^TZID[;:](.*)$", re.MULTILINE | re.I)
_COMPONENT = re.compile(r"^(BEGIN|END):(.*)$", re.MULTILINE | re.I)
_END_CALENDAR = re.compile(r"^END:VCALENDAR", re.MULTILINE | re.I)
_ENVELOPED = re.compile(rb"^BEGIN:VCALENDAR", re.MULTILINE | re.I)
_ANY_EVENT = re.compile(rb"^BEGIN:VEVENT", re.MULTILINE | re.I)
# Anchored on the newline, not on ^ with MULTILINE: five times faster over a 100 MB feed.
# Which mark it is, by the group that matches (see `_KINDS`): no case folding in Python per mark.
_MARK_NAMES = rb"(?:(BEGIN:VEVENT)|(END:VEVENT)|(BEGIN:VCALENDAR)|(END:VCALENDAR))[ \t\r]*(?=\n|\Z)"
_MARK = re.compile(rb"\n" + _MARK_NAMES, re.I)
_FIRST_MARK = re.compile(_MARK_NAMES, re.I)
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape
_UTF8_BEYOND_ASCII = re.compile("[^\x00-\x7f\udc80-\udcff]")
_BLOCK = re.compile(
    r"^BEGIN:VEVENT[ \t]*\r?\n.*?^END:VEVENT[ \t]*(?:\r?\n|\Z)", re.MULTILINE | re.DOTALL | re.I
)
# Small enough that each decoded piece is reused memory, not a fresh mapping: 2-3 times faster.
_CHUNK = 1 << 15


def _utf8(data: bytes) -> bool:
    """Whether `data` is UTF-8, checked in chunks: no decoded copy of the whole feed."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for start in range(0, len(data), _CHUNK):
            decoder.decode(view[start : start + _CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def as_utf8(data: bytes, problems: list[str]) -> bytes:
    """The feed as UTF-8 without a BOM: as it is, almost always. A file saved in Windows-1252 is
    read whole as such; a UTF-8 file with some bad bytes has each replaced by U+FFFD, and the events
    that held one named (one broken event must not garble the others' names)."""
    if data.startswith(_BOM):
        data = data[3:]
    if _utf8(data):
        return data
    text = data.decode("utf-8", errors="surrogateescape")
    if not _UTF8_BEYOND_ASCII.search(text):  # not one UTF-8 character beyond ASCII
        return data.decode("cp1252", errors="replace").encode("utf-8")
    return replace_invalid(text, problems).encode("utf-8")


def replace_invalid(text: str, problems: list[str]) -> str:
    """Each byte that was not UTF-8 replaced by U+FFFD, and the events that held one named."""
    inside = 0
    for block in _BLOCK.finditer(text):
        found = len(_NOT_UTF8.findall(block.group(0)))
        if found:
            inside += found
            data = block.group(0).encode("utf-8", "surrogateescape")
            event = _event_at(data, 0, len(data), text.count("\n", 0, block.start()))
            problems.append(f"{event}: {found} byte(s) that are not UTF-8, replaced by U+FFFD")
    if len(_NOT_UTF8.findall(text)) > inside:
        problems.append("bytes that are not UTF-8 outside the events, replaced by U+FFFD")
    return _NOT_UTF8.sub("\ufffd", text)


def line_of(data: bytes, position: int) -> int:
    return data.count(b"\n", 0, position) + 1


def _event_at(data: bytes, start: int, stop: int, lines_before: int | None = None) -> str:
    """The event that begins at `start`, named by its UID if it has one and by its line."""
    found = _UID.search(data, start, stop)
    raw = found.group(1).decode("utf-8", "surrogateescape") if found else ""
    uid = clean_line(re.sub(r"\r?\n[ \t]", "", raw), 200).strip()
    uid = _NOT_UTF8.sub("\ufffd", uid)
    line = line_of(data, start) if lines_before is None else lines_before + 1
    return f"event {uid} (line {line})" if uid else f"the event at line {line} (no UID)"


_KINDS = (None, (True, True), (False, True), (True, False), (False, False))  # by the group that matched


def _marks(data: bytes) -> Iterator[tuple[bool, bool, int, int]]:
    """Each BEGIN/END line of a VCALENDAR or VEVENT: begin?, event?, where it starts and ends."""
    first = _FIRST_MARK.match(data)
    for mark in itertools.chain([first] if first else [], _MARK.finditer(data)):
        kind = mark.lastindex or 0
        begin, event = _KINDS[kind] or (False, False)
        yield begin, event, mark.start(kind), mark.end()


@dataclass
class Outline:
    """Where a feed's events and its calendar lie, found in one pass over its bytes."""

    wrong: str | None = None  # what makes it not a whole calendar, if anything
    end: int = 0  # where the calendar ends: text after it is set aside
    spans: list[tuple[int, int]] = field(default_factory=list)  # each VEVENT, END line included


def outline(data: bytes) -> Outline:
    """Where the events are, and what makes `data` not a whole calendar (cut short, an event left
    open), if anything.

    Only END:VCALENDAR shows that a download arrived whole: without it, events missing from the end
    would be taken as deleted. A file of bare VEVENTs has no such mark; each event must be closed.
    """
    found = Outline()
    open_event: int | None = None  # where the event being read begins
    in_calendar = False
    calendars = 0
    for begin, event, start, stop in _marks(data):
        if open_event is not None and (begin or not event):
            return Outline(f"{_event_at(data, open_event, start)} has no END:VEVENT")
        if event and begin:
            if calendars and not in_calendar:
                following = _MARK.search(data, stop)
                where = _event_at(data, start, following.start() if following else len(data))
                return Outline(f"{where} is outside BEGIN:VCALENDAR … END:VCALENDAR")
            open_event = start
        elif event:
            if open_event is None:
                return Outline(f"END:VEVENT at line {line_of(data, start)} has no BEGIN:VEVENT")
            found.spans.append((open_event, stop + 1 if data[stop : stop + 1] == b"\n" else stop))
            open_event = None
            if not calendars:  # bare VEVENTs: the last one closed ends the file
                found.end = stop
        elif begin:
            if in_calendar:  # two files joined, the first cut short
                line = line_of(data, start)
                return Outline(f"BEGIN:VCALENDAR at line {line} opens a calendar inside another")
            in_calendar, calendars = True, calendars + 1
        else:
            if not in_calendar:
                return Outline(f"END:VCALENDAR at line {line_of(data, start)} has no BEGIN:VCALENDAR")
            in_calendar, found.end = False, stop
    if open_event is not None:
        event_name = _event_at(data, open_event, len(data))
        return Outline(f"it ends inside {event_name}, which has no END:VEVENT: cut short?")
    if in_calendar:
        return Outline("it ends before END:VCALENDAR: cut short?")
    return found


def enveloped(data: bytes) -> tuple[bool, bool]:
    """Whether the feed has a BEGIN:VCALENDAR, and whether it has any BEGIN:VEVENT at all."""
    if _ENVELOPED.search(data):
        return True, True
    return False, _ANY_EVENT.search(data) is not None


class Group:
    """The VEVENT blocks that share one UID: a single event, or a series with its overrides; where
    they lie in the feed, not their text."""

    __slots__ = ("digest", "recurring", "spans", "uid")

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.spans: list[tuple[int, int]] = []
        self.digest = ""
        self.recurring = False


class Feed:
    """A complete feed's bytes cut into its events: the calendar without them (time zones and
    properties) as text, its events by UID as offsets; an event's text is made when it is read."""

    def __init__(self, data: bytes, spans: list[tuple[int, int]], end: int, trim: bool, bare: bool) -> None:
        self.data = data
        # The last of bare VEVENTs ends as the calendar wrapped around them makes it end.
        self._last = spans[-1][1] if bare and spans else -1
        # By UID, in the feed's order: plain values, not an object per event, so that a large feed
        # leaves the garbage collector next to nothing to walk through (see `group`).
        self.digests: dict[str, str] = {}
        self._first: dict[str, tuple[int, int]] = {}
        self._more: dict[str, list[tuple[int, int]]] = {}  # the overrides of a series
        self._recurring: set[str] = set()
        hashes: dict[str, Any] = {}
        gaps: list[bytes] = [b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"] if bare else []
        position = 0
        view = memoryview(data)
        scan, uid_at = _SCAN.finditer, _UID_AT.search
        for span in spans:
            start, stop = span
            gaps.append(data[position:start])
            position = stop
            # Almost every event is read in place, with one scan and no copy: only one with a
            # reminder to cut out, or the last of bare VEVENTs, needs its text made (see `_block`).
            block: bytes | None = None
            stamps: list[tuple[int, int]] = []
            recurring = False
            for found in scan(data, start, stop):
                kind = found.lastindex
                if kind == 1:
                    stamps.append(found.span())
                elif kind == 2:
                    recurring = True
                else:
                    block = self._block(start, stop)
                    break
            if stop == self._last:
                block = self._block(start, stop)
            if block is not None:
                uid_line = _UID.search(block)
                recurring = _RECURS.search(block) is not None
            else:
                uid_line = uid_at(data, start, stop)
            uid = uid_line.group(1).decode("utf-8", "replace") if uid_line else ""
            if "\n" in uid:
                uid = re.sub(r"\r?\n[ \t]", "", uid)
            uid = uid.strip()
            if not uid:
                whole = data[start:stop] if block is None else block
                uid = "no-uid-" + hashlib.blake2b(whole, digest_size=12).hexdigest()
            digest = hashes.get(uid)
            if digest is None:
                digest = hashes[uid] = hashlib.blake2b(digest_size=12)
                self._first[uid] = span
            else:
                self._more.setdefault(uid, []).append(span)
            # DTSTAMP is the export time in many feeds: it changes on every download, the event does not.
            if block is not None:
                digest.update(_DTSTAMP.sub(b"", block))
            else:  # the same bytes, fed to the hash around the DTSTAMP lines
                at = start
                for cut, resume in stamps:
                    digest.update(view[at:cut])
                    at = resume
                digest.update(view[at:stop])
            if recurring:
                self._recurring.add(uid)
        self.digests = {uid: digest.hexdigest() for uid, digest in hashes.items()}
        if bare:  # read as the calendar they mean, closed right after the last event
            gaps.append(b"END:VCALENDAR\r\n")
        elif trim:  # text after the end set aside
            gaps.append(data[position:end].decode("utf-8").rstrip().encode("utf-8") + b"\r\n")
        else:
            gaps.append(data[position:])
        joined = b"".join(gaps)
        self.header = hashlib.blake2b(joined, digest_size=12).hexdigest()
        self.skeleton = joined.decode("utf-8")

    def _block(self, start: int, stop: int) -> bytes:
        block = self.data[start:stop]
        if stop == self._last:
            block = block.rstrip() + b"\r\n"
        # Reminders are never read, and icalendar rejects a malformed one along with its event.
        if b"ALARM" in block or b"alarm" in block:
            block = _VALARM.sub(b"", block)
        return block

    def group(self, uid: str) -> Group:
        """The events of one UID, where they lie."""
        group = Group(uid)
        group.spans = [self._first[uid], *self._more.get(uid, ())]
        group.digest = self.digests[uid]
        group.recurring = uid in self._recurring
        return group

    def blocks(self, group: Group) -> list[str]:
        return [self._block(start, stop).decode("utf-8") for start, stop in group.spans]


def assemble(skeleton: str, blocks: Iterable[str]) -> str:
    body = "".join(b if b.endswith("\n") else b + "\r\n" for b in blocks)
    ends = list(_END_CALENDAR.finditer(skeleton))
    if not ends:  # a truncated file: close it so the events we have still parse
        return skeleton.rstrip("\r\n") + "\r\n" + body + "END:VCALENDAR\r\n"
    cut = ends[-1].start()
    return skeleton[:cut] + body + skeleton[cut:]


def at_top(skeleton: str) -> bool:
    """Whether the events `assemble` puts into the calendar land directly inside a VCALENDAR, as
    icalendar nests components (an END closes whatever is open): not inside a component left open."""
    ends = list(_END_CALENDAR.finditer(skeleton))
    stack: list[str] = []
    for mark in _COMPONENT.finditer(skeleton, 0, ends[-1].start() if ends else len(skeleton)):
        if mark.group(1).upper() == "BEGIN":
            stack.append(mark.group(2).strip().upper())
        elif not stack:
            return False
        else:
            stack.pop()
    return stack == ["VCALENDAR"]


def usable_zones(skeleton: str, problems: list[str]) -> tuple[str, set[str]]:
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
            problems.append(f"time zone {tzid}: cannot be read ({short_error(exc)}); ignored")
            skeleton = skeleton.replace(block, "", 1)
            if iana_zone(tzid) is None:
                lost.add(tzid)
    return skeleton, lost


def uses_lost_zone(group: Group, blocks: list[str], lost: set[str], problems: list[str]) -> bool:
    for tzid in lost:
        if any(f"TZID={tzid}".lower() in block.lower() for block in blocks):
            problems.append(f"event {group.uid}: skipped: its time zone {tzid} cannot be read")
            return True
    return False
