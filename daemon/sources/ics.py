"""ICS calendars from a file or a URL, read incrementally.

An unchanged feed costs one conditional GET (or one hash of the file); a changed one re-parses only
the events whose text changed, cut out of the feed's bytes without copying the feed. Plain untagged
events are read by a light reader (ics_light.py); the rest is parsed by icalendar, and series
expanded by recurring-ical-events.

A feed is untrusted and may be cut short, oversized, empty, an error page or another calendar: what is
not a complete calendar fails the sync (the caller keeps its state, so nothing is taken as deleted),
and a feed that suddenly loses most of its events is held until a person confirms the removals.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import icalendar
import recurring_ical_events

from daemon.errors import SourceError
from daemon.model import CalendarEvent
from daemon.sources import CalendarSource, SyncBatch, repeat_unusable
from daemon.sources.ics_events import EventReader, instance_start, short_error
from daemon.sources.ics_fetch import Fetch
from daemon.sources.ics_light import read_single, tag_words
from daemon.sources.ics_state import Item, Known, feed_digest
from daemon.sources.ics_text import (
    Feed,
    Group,
    as_utf8,
    assemble,
    at_top,
    enveloped,
    line_of,
    outline,
    usable_zones,
    uses_lost_zone,
)
from daemon.sources.zones import own_zones

if TYPE_CHECKING:
    from daemon.backends import Wiring
    from daemon.config.sections import IcsCalendar

log = logging.getLogger(__name__)

MAX_INSTANCES = 1000  # per series and window: a FREQ=SECONDLY rule must not eat the machine
PARSE_CHUNK = 200  # event groups icalendar parses at once
DEFAULT_MAX_BYTES = 50_000_000  # per calendar, `max_bytes` in its [[calendars]] entry
# A feed that loses more events than this at once, and more than half of those it had, is held.
HOLD_REMOVALS_OVER = 10
# How events are read. A cursor written by an earlier reading has every event read again once, changed
# or not. Reading 2 reads each calendar with its own zones: events read in another calendar's
# "Customized Time Zone" were stored hours off.
READING = 2


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
        tags: Iterable[str] = (),
        light: bool = True,
    ) -> None:
        if (path is None) == (url is None):
            raise ValueError("an ICS source needs exactly one of path or url")
        self.name = name
        self._fetch = Fetch(name, path, url, timeout, max_bytes)
        self.reader = EventReader(default_zone)
        self.window_past = window_past
        self.window_future = window_future
        # Plain untagged events are read by the light reader, the rest by icalendar; `light=False`
        # reads everything with icalendar (the tests and benchmark compare the two).
        self.tags = tag_words(tags)
        self.light = light
        self._calendar_props: dict[str, Any] = {}  # X-WR-TIMEZONE and kin, for expanding series

    @classmethod
    def from_config(cls, calendar: IcsCalendar, wiring: Wiring) -> list[CalendarSource]:
        settings = wiring.settings
        tags = settings.tags
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
                tags=(*tags.closing, *tags.kickoff, *tags.won, *tags.lost, tags.deal_prefix),
            )
        ]

    @property
    def path(self) -> Path | None:
        return self._fetch.path

    @property
    def url(self) -> str | None:
        return self._fetch.url

    @property
    def where(self) -> str:
        return self._fetch.where

    # -- syncing --------------------------------------------------------------------------
    def sync(self, state: dict[str, Any] | None, now: datetime) -> SyncBatch:
        with own_zones():
            return self._sync(state or {}, now)

    def _sync(self, state: dict[str, Any], now: datetime) -> SyncBatch:
        data, validators = self._fetch(state)
        window = (now - self.window_past, now + self.window_future)
        known = Known(state)
        due = known.due(now.timestamp())
        outdated = bool(state) and state.get("reading") != READING
        reread = bool(due) or outdated  # even if the feed is unchanged
        if data is None and not reread:
            return self._unchanged(state)
        new_state: dict[str, Any] = {**state, **validators}
        if data is None:  # not modified, but series to re-expand or an earlier reading: fetch it whole
            data, _ = self._fetch({})
            assert data is not None
        digest = feed_digest(data, state)
        if digest == state.get("digest") and not reread:
            return self._unchanged(new_state)
        if not digest.startswith("sha256:"):  # a cursor from before: stored with the new digest
            digest = feed_digest(data, {})
        batch = SyncBatch()
        feed = self._whole(as_utf8(data, batch.problems), batch.problems)
        del data  # the feed holds the bytes (or their UTF-8 copy) from here on
        # Time zones changed, or read differently now: every event may have moved.
        full = outdated or feed.header != state.get("header")
        digests = known.digests
        changed = [
            feed.group(uid)
            for uid, digest in feed.digests.items()
            if full or uid in due or digests.get(uid) != digest
        ]
        vanished = 0
        for uid in digests.keys() - feed.digests.keys():
            if known.history(uid):
                continue  # a feed that drops its old events has not deleted them
            gone = [i for i in known.ids(uid) if not self._aged_out(i, window[0])]
            vanished += bool(gone)
            batch.removed += gone
        self._hold_mass_removal(vanished, known)
        to_read = [g.uid for g in changed]
        skeleton = feed.skeleton
        if changed:
            skeleton, lost_zones = usable_zones(skeleton, batch.problems)
            self._check_outside_events(skeleton)
            if lost_zones:
                changed = [
                    g for g in changed if not uses_lost_zone(g, feed.blocks(g), lost_zones, batch.problems)
                ]
        light = self._read_light(feed, changed) if self.light and at_top(skeleton) else {}
        parsed = self._parse(skeleton, feed, [g for g in changed if g.uid not in light], batch.problems)
        pending: tuple[Group, list[Any]] | None = None
        read: set[str] = set()
        new_items: dict[str, Item] = {}
        for group in changed:
            expanded: tuple[list[CalendarEvent], float | None, list[str]] | None
            if group.uid in light:
                expanded = self._single(group, *light[group.uid], window, batch.problems)
            else:
                # Parsed in order; a group that could not be parsed is skipped, its problem noted.
                pending = pending or next(parsed, None)
                if pending is None or pending[0] is not group:
                    continue
                expanded = self._expand(group, pending[1], window, batch.problems)
                pending = None
            if expanded is None:
                continue  # unusable: what was known of it stays, and it is read again next time
            read.add(group.uid)
            events, revisit, history = expanded
            ids = [e.id for e in events] + history
            batch.upserted += events
            old_ids = set(known.ids(group.uid))
            batch.removed += [i for i in old_ids - set(ids) if not self._aged_out(i, window[0])]
            new_items[group.uid] = [group.digest, ids, revisit, bool(history) and not events]
        batch.unusable = [uid for uid in to_read if uid not in read]
        # Kept in the state, so that a quiet feed still names them at every pass (see _unchanged);
        # a changed one reads them again, since what was known of them was left as it was.
        unusable = {uid: [uid, _problem_of(uid, batch.problems)] for uid in batch.unusable}
        new_state.pop("items", None)  # a cursor from before: stored in the compact form
        new_state.update(known.packed(feed.digests, new_items), digest=digest, header=feed.header)
        new_state["reading"] = READING
        new_state["unusable"] = unusable
        batch.state = new_state
        return batch

    @staticmethod
    def _unchanged(state: dict[str, Any]) -> SyncBatch:
        batch = SyncBatch(state=state, unchanged=True)
        repeat_unusable(batch, state.get("unusable") or {})
        return batch

    def _whole(self, data: bytes, problems: list[str]) -> Feed:
        """The calendar in `data`, cut into its events; SourceError when it is not one, or not a
        complete one: an empty answer, an error page, a download cut short must never read as "every
        event was deleted"."""
        if re.match(rb"\s*\Z", data):
            raise SourceError(f"calendar {self.name!r}: {self.where} is empty; nothing read, nothing changed")
        calendar, events = enveloped(data)
        if not calendar and not events:
            raise SourceError(f"calendar {self.name!r}: {self.where} is not an iCalendar file")
        found = outline(data)
        if found.wrong:
            raise SourceError(
                f"calendar {self.name!r}: {self.where} is incomplete: {found.wrong}; "
                "nothing read, nothing changed"
            )
        trim = bool(data[found.end :].decode("utf-8").strip())
        if trim:
            problems.append(f"text after the end of the calendar (line {line_of(data, found.end)}) ignored")
        if not calendar:
            # Bare VEVENTs, as some tools export them: read them as the calendar they mean.
            problems.append("the file has no BEGIN:VCALENDAR; read its events anyway")
        return Feed(data, found.spans, found.end, trim, bare=not calendar)

    def _hold_mass_removal(self, vanished: int, cursor: Known) -> None:
        """A feed that suddenly lacks most of its events is more likely the wrong file, a broken
        export or a server in trouble than a mass cancellation: hold it until a person confirms."""
        if vanished <= HOLD_REMOVALS_OVER:
            return
        known = cursor.current()
        if vanished * 2 <= known or self.accept_removals:
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
                f"calendar {self.name!r}: {self.where}: outside its events, {short_error(exc)}; "
                "nothing read, nothing changed"
            ) from None

    @staticmethod
    def _aged_out(event_id: str, window_start: datetime) -> bool:
        """An instance that slid out of the window's past was not deleted: leave it be."""
        start = instance_start(event_id)
        return start is not None and start < window_start

    def _read(self, text: str) -> list[Any]:
        """The VEVENTs of a text that may hold several VCALENDARs, as some exports do."""
        calendars = icalendar.Calendar.from_ical(text, multiple=True)
        self._calendar_props = {k: c[k] for c in reversed(calendars) for k in ("X-WR-TIMEZONE",) if k in c}
        return [s for c in calendars for s in c.subcomponents if s.name == "VEVENT"]

    def _read_light(self, feed: Feed, groups: list[Group]) -> dict[str, tuple[CalendarEvent, list[str]]]:
        """The plain single events the light reader is sure of, with its notes, by UID."""
        found: dict[str, tuple[CalendarEvent, list[str]]] = {}
        for group in groups:
            if not group.recurring and len(group.spans) == 1:
                event = read_single(feed.blocks(group)[0], group.uid, self.reader, self.tags)
                if event is not None:
                    found[group.uid] = event
        return found

    def _parse(
        self, skeleton: str, feed: Feed, groups: list[Group], problems: list[str]
    ) -> Iterator[tuple[Group, list[Any]]]:
        """Each group with its parsed components, a chunk of groups at a time: icalendar's tree of a
        large feed's calendar events would otherwise be the peak of a first pass."""
        for first in range(0, len(groups), PARSE_CHUNK):
            yield from self._parse_chunk(skeleton, feed, groups[first : first + PARSE_CHUNK], problems)

    def _parse_chunk(
        self, skeleton: str, feed: Feed, groups: list[Group], problems: list[str]
    ) -> Iterator[tuple[Group, list[Any]]]:
        """One broken group never spoils the others: they are parsed one by one if the chunk fails."""
        components: list[Any] = []
        try:
            components = self._read(assemble(skeleton, (b for g in groups for b in feed.blocks(g))))
        except Exception as exc:
            log.debug("calendar %s: a chunk's parse failed (%s), parsing event by event", self.name, exc)
        if len(components) == sum(len(g.spans) for g in groups):
            position = 0
            for group in groups:
                yield group, components[position : position + len(group.spans)]
                position += len(group.spans)
            return
        for group in groups:
            try:
                found = self._read(assemble(skeleton, feed.blocks(group)))
            except Exception as exc:
                problems.append(f"event {group.uid}: cannot be parsed: {short_error(exc)}")
                continue
            if found:
                yield group, found
            else:
                problems.append(f"event {group.uid}: cannot be parsed")

    def _single(
        self,
        group: Group,
        event: CalendarEvent,
        notes: list[str],
        window: tuple[datetime, datetime],
        problems: list[str],
    ) -> tuple[list[CalendarEvent], float | None, list[str]]:
        """A single event as `_expand` gives it: in the window, later, or history."""
        if event.start > window[1]:
            return [], (event.start - self.window_future).timestamp(), []
        if event.end < window[0]:
            return [], None, [event.id]
        problems += [f"event {group.uid}: {note}" for note in notes]
        return [event], None, []

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
                problems.append(f"event {group.uid}: skipped: {short_error(exc)}")
                return None
            if len(components) > 1:
                problems.append(f"event {group.uid}: {len(components)} copies of one event; used the first")
            return self._single(group, event, notes, window, problems)
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
            problems.append(f"event {group.uid}: recurrence cannot be expanded: {short_error(exc)}")
            return None
        if events:  # said once for the series, not once per instance
            problems += [f"event {group.uid}: {note}" for note in dict.fromkeys(notes)]
        # The window moves every day: look again tomorrow for instances that come into view.
        return events, (start + self.window_past + timedelta(days=1)).timestamp(), []


def _problem_of(uid: str, problems: list[str]) -> str:
    return next((p for p in problems if p.startswith(f"event {uid}:")), f"event {uid}: cannot be used")
