"""The zones icalendar reads a calendar with (daemon/sources/zones.py): each calendar's own VTIMEZONEs,
and a known zone told by the very answers icalendar's own lookup gives, which lists every zone on disk
first."""

from __future__ import annotations

import os
import zoneinfo
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from icalendar.timezone.zoneinfo import ZONEINFO

from daemon.sources import SyncBatch
from daemon.sources.ics import IcsSource
from daemon.sources.zones import _Zones, zone_like


def _paths_under(root: str) -> list[str]:
    found = []
    for folder, dirnames, files in os.walk(root):
        for name in dirnames + files:
            found.append(os.path.relpath(os.path.join(folder, name), root))
    return found


@pytest.mark.skipif(not any(Path(root).is_dir() for root in zoneinfo.TZPATH), reason="no zone directory")
def test_given_every_path_under_the_zone_directory_then_known_exactly_when_zoneinfo_lists_it() -> None:
    # Given every file and folder of the system's zone directories (zones, tables, right/, posix/, ...)
    listed = zoneinfo.available_timezones()
    candidates = {p for root in zoneinfo.TZPATH if Path(root).is_dir() for p in _paths_under(root)}
    # ... and names a calendar may write that are no zone key at all
    candidates |= {
        "",
        "/etc/localtime",
        "../etc/passwd",
        "Europe//Berlin",
        "Europe/./Berlin",
        "utc",
        "Nowhere/Town",
    }
    candidates |= listed

    # When the lookup is asked about each
    zones = _Zones()
    differing = {name for name in candidates if zones.knows_timezone_id(name) != (name in listed)}

    # Then it knows exactly the zones zoneinfo lists
    assert len(listed) > 300
    assert differing == set()


def test_given_a_calendar_with_time_zones_then_no_zone_list_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a process that has not listed the zones on disk, and a calendar with an IANA VTIMEZONE and a
    # custom one that no IANA zone is named after
    def listing() -> set[str]:
        raise AssertionError("every zone on disk listed")

    monkeypatch.setattr(zoneinfo, "available_timezones", listing)
    monkeypatch.setattr(ZONEINFO, "_available_timezones_cache", None)
    # When it is synced
    batch = sync(tmp_path, "zones", CALENDAR)

    # Then both events are read at their zone's time, without listing the zones
    starts = {event.id: event.start for event in batch.upserted}
    assert starts == {
        "berlin@test": datetime(2026, 3, 5, 9, tzinfo=UTC),
        "custom@test": datetime(2026, 3, 5, 13, tzinfo=UTC),
    }
    assert batch.problems == []


def test_given_two_calendars_with_a_customized_time_zone_each_then_each_is_read_in_its_own(
    tmp_path: Path,
) -> None:
    # Given two Exchange exports whose zones of their own are both "Customized Time Zone": UTC-5 in the
    # first, UTC-3 in the second
    new_york = CALENDAR.replace("-0300", "-0500")

    # When both are synced by one process, one after the other
    first = sync(tmp_path, "new-york", new_york)
    second = sync(tmp_path, "sao-paulo", CALENDAR)

    # Then each calendar's 10:00 is 10:00 in its own zone
    custom = [next(e.start for e in batch.upserted if e.id == "custom@test") for batch in (first, second)]
    assert custom == [datetime(2026, 3, 5, 15, tzinfo=UTC), datetime(2026, 3, 5, 13, tzinfo=UTC)]

    # ... and again when the first is read once more
    again = sync(tmp_path, "new-york-again", new_york)
    assert next(e.start for e in again.upserted if e.id == "custom@test") == datetime(
        2026, 3, 5, 15, tzinfo=UTC
    )


def test_given_a_calendar_defining_its_own_zone_under_a_name_zoneinfo_also_loads_then_its_own_is_used(
    tmp_path: Path,
) -> None:
    # Given a calendar whose event names posix/Europe/Berlin without defining it (zoneinfo loads that
    # file), then one that defines a zone of its own, UTC+5, under that very name
    def calendar(zone: str) -> str:
        event = CALENDAR[CALENDAR.index("BEGIN:VEVENT") : CALENDAR.index("END:VEVENT")]
        event = event.replace("Europe/Berlin", "posix/Europe/Berlin")
        head = "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//followthrough tests//EN\n"
        return f"{head}{zone}{event}END:VEVENT\nEND:VCALENDAR\n"

    own = "BEGIN:VTIMEZONE\nTZID:posix/Europe/Berlin\nBEGIN:STANDARD\nTZOFFSETFROM:+0500\nTZOFFSETTO:+0500\n"
    own += "DTSTART:16010101T000000\nEND:STANDARD\nEND:VTIMEZONE\n"

    # When both are synced by one process, the second with the light reader and without it
    berlin = sync(tmp_path, "berlin", calendar(""))
    light = sync(tmp_path, "own", calendar(own))
    full = sync(tmp_path, "own-full", calendar(own), light=False)

    # Then the first is read in Berlin's time, the second in its own zone both ways
    assert [e.start for e in berlin.upserted] == [datetime(2026, 3, 5, 9, tzinfo=UTC)]
    assert (
        [e.start for e in light.upserted]
        == [e.start for e in full.upserted]
        == [datetime(2026, 3, 5, 5, tzinfo=UTC)]
    )


def test_given_a_calendar_with_a_zone_of_its_own_read_again_then_its_zone_is_matched_once(
    tmp_path: Path,
) -> None:
    # Given a calendar with a "Customized Time Zone", read once (its zone matched to an IANA zone
    # for the mail's local times, which takes tens of milliseconds)
    sync(tmp_path, "custom", CALENDAR)
    before = zone_like.cache_info()

    # When it is read again, as every pass reads a changed calendar
    sync(tmp_path, "custom-again", CALENDAR)

    # Then its zone is the one already matched, not matched again
    after = zone_like.cache_info()
    assert after.misses == before.misses and after.hits > before.hits


def sync(folder: Path, name: str, text: str, **options: Any) -> SyncBatch:
    path = folder / f"{name}.ics"
    path.write_text(text.replace("\n", "\r\n"), encoding="utf-8")
    return IcsSource(name, path=path, **options).sync(None, NOW)


NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
CALENDAR = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//followthrough tests//EN
BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VTIMEZONE
TZID:Customized Time Zone
BEGIN:STANDARD
TZOFFSETFROM:-0300
TZOFFSETTO:-0300
DTSTART:16010101T000000
END:STANDARD
END:VTIMEZONE
BEGIN:VEVENT
UID:berlin@test
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Berlin:20260305T100000
DTEND;TZID=Europe/Berlin:20260305T110000
SUMMARY:Planning
END:VEVENT
BEGIN:VEVENT
UID:custom@test
DTSTAMP:20260101T000000Z
DTSTART;TZID=Customized Time Zone:20260305T100000
DTEND;TZID=Customized Time Zone:20260305T110000
SUMMARY:Review
END:VEVENT
END:VCALENDAR
"""
