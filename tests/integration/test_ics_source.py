"""IcsSource against real .ics files on disk and a real HTTP server: what a user's calendar turns into.

Every sync gets an explicit `now`; nothing reads the clock.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from daemon.errors import SourceError
from daemon.model import CalendarEvent, EventStatus
from daemon.sources import SyncBatch, ics
from daemon.sources.ics import MAX_INSTANCES, IcsSource
from daemon.sources.ics_events import MAX_DESCRIPTION

if TYPE_CHECKING:
    from tests.support.feed import CalendarFeed

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # a Sunday, four weeks before the EU goes to summer time
DAY = timedelta(days=1)

BERLIN = """BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
"""


# -- building calendars ---------------------------------------------------------------------------
def crlf(text: str) -> str:
    # split on LF only: a lone CR inside a line is part of the test data
    return "".join(line + "\r\n" for line in text.strip("\n").split("\n"))


def vevent(uid: str | None, *props: str, dtstamp: str = "20260101T000000Z") -> str:
    head = [f"UID:{uid}"] if uid is not None else []
    return crlf("\n".join(["BEGIN:VEVENT", *head, f"DTSTAMP:{dtstamp}", *props, "END:VEVENT"]))


def vcalendar(*events: str, header: str = "") -> str:
    return (
        crlf("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//followthrough tests//EN\n" + header)
        + "".join(events)
        + "END:VCALENDAR\r\n"
    )


def meeting(uid: str, start: str, end: str, *props: str, dtstamp: str = "20260101T000000Z") -> str:
    return vevent(uid, f"DTSTART:{start}", f"DTEND:{end}", *props, dtstamp=dtstamp)


def weekly_standup(*extra: str, count: int = 6) -> str:
    """Mondays 10:00 Berlin from 2 March 2026: 09:00 UTC until 29 March, 08:00 UTC after."""
    return vevent(
        "standup@test",
        "SUMMARY:Standup",
        "DTSTART;TZID=Europe/Berlin:20260302T100000",
        "DTEND;TZID=Europe/Berlin:20260302T103000",
        f"RRULE:FREQ=WEEKLY;COUNT={count}",
        *extra,
    )


def standup_moved_to(start: str, end: str) -> str:
    """The 9 March standup, moved: an override with RECURRENCE-ID."""
    return vevent(
        "standup@test",
        "SUMMARY:Standup (moved)",
        "RECURRENCE-ID;TZID=Europe/Berlin:20260309T100000",
        f"DTSTART;TZID=Europe/Berlin:{start}",
        f"DTEND;TZID=Europe/Berlin:{end}",
    )


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def ics_source(path: Path, **options: Any) -> IcsSource:
    settings: dict[str, Any] = {
        "default_zone": "Europe/Berlin",
        "window_past": 7 * DAY,
        "window_future": 60 * DAY,
    }
    settings.update(options)
    return IcsSource("team", path=path, **settings)


def by_id(batch: SyncBatch) -> dict[str, CalendarEvent]:
    return {event.id: event for event in batch.upserted}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def assert_one_line(text: str) -> None:
    assert "\r" not in text and "\n" not in text, f"{text!r} spans lines"


# -- first sync -----------------------------------------------------------------------------------
def test_given_a_new_calendar_when_first_synced_then_it_lists_events_in_utc_with_their_people(
    tmp_path: Path,
) -> None:
    # Given a kick-off in Berlin time with an organizer, a customer and a room, and a plain UTC call
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            vevent(
                "kickoff@test",
                "SUMMARY:Kick-off Acme",
                "DTSTART;TZID=Europe/Berlin:20260305T100000",
                "DTEND;TZID=Europe/Berlin:20260305T110000",
                'ORGANIZER;CN="Rita Rep":mailto:Rita.Rep@Example.com',
                'ATTENDEE;CN="Cara Customer";ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED:mailto:cara@acme.io',
                "ATTENDEE;CUTYPE=ROOM;CN=Room Everest:mailto:everest@example.com",
            ),
            meeting("call@test", "20260306T150000Z", "20260306T153000Z", "SUMMARY:Call"),
            header=BERLIN,
        ),
    )

    # When it is synced for the first time
    batch = ics_source(path).sync(None, NOW)

    # Then both events are listed, in UTC, with names from CN and the room kept as a room
    events = by_id(batch)
    assert sorted(events) == ["call@test", "kickoff@test"]
    assert batch.removed == [] and batch.problems == [] and not batch.unchanged
    kickoff = events["kickoff@test"]
    assert kickoff.title == "Kick-off Acme"
    assert (kickoff.start, kickoff.end) == (utc(2026, 3, 5, 9), utc(2026, 3, 5, 10))
    assert kickoff.start.utcoffset() == timedelta(0) and not kickoff.all_day
    assert kickoff.organizer is not None
    assert (kickoff.organizer.email, kickoff.organizer.name) == ("rita.rep@example.com", "Rita Rep")
    people = {a.person.email: a for a in kickoff.attendees}
    assert sorted(people) == ["cara@acme.io", "everest@example.com"]
    assert people["cara@acme.io"].person.name == "Cara Customer"
    assert people["cara@acme.io"].status == "ACCEPTED" and people["cara@acme.io"].is_person
    assert people["everest@example.com"].kind == "ROOM" and not people["everest@example.com"].is_person
    call = events["call@test"]
    assert (call.start, call.end) == (utc(2026, 3, 6, 15), utc(2026, 3, 6, 15, 30))


def test_given_an_all_day_event_then_it_spans_company_zone_midnights(tmp_path: Path) -> None:
    # Given an all-day event and one without DTEND, in a company on New York time (EST in January)
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            vevent("offsite@test", "DTSTART;VALUE=DATE:20260115", "DTEND;VALUE=DATE:20260116"),
            vevent("holiday@test", "DTSTART;VALUE=DATE:20260120"),
        ),
    )

    # When synced
    batch = ics_source(path, default_zone="America/New_York").sync(None, utc(2026, 1, 10))

    # Then each is all-day, from New York midnight to the next midnight, given in UTC
    events = by_id(batch)
    assert events["offsite@test"].all_day
    assert (events["offsite@test"].start, events["offsite@test"].end) == (
        utc(2026, 1, 15, 5),
        utc(2026, 1, 16, 5),
    )
    assert events["holiday@test"].all_day
    assert events["holiday@test"].start == utc(2026, 1, 20, 5)
    assert events["holiday@test"].end == utc(2026, 1, 21, 5)


def test_given_a_floating_time_then_it_is_read_in_the_default_zone(tmp_path: Path) -> None:
    # Given an event at 10:00 with no zone at all
    path = write(
        tmp_path / "team.ics", vcalendar(meeting("floating@test", "20260305T100000", "20260305T110000"))
    )

    # When read by a company on New York time (EST: UTC-5)
    batch = ics_source(path, default_zone="America/New_York").sync(None, NOW)

    # Then it is 10:00 in New York
    event = by_id(batch)["floating@test"]
    assert (event.start, event.end) == (utc(2026, 3, 5, 15), utc(2026, 3, 5, 16))
    assert not event.all_day


def test_given_tzid_events_then_they_keep_their_iana_zone_name(tmp_path: Path) -> None:
    # Given an event in Europe/Berlin (with its VTIMEZONE), one in New York (without) and one in UTC
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            vevent(
                "berlin@test",
                "DTSTART;TZID=Europe/Berlin:20260305T100000",
                "DTEND;TZID=Europe/Berlin:20260305T110000",
            ),
            vevent(
                "newyork@test",
                "DTSTART;TZID=America/New_York:20260305T100000",
                "DTEND;TZID=America/New_York:20260305T110000",
            ),
            meeting("utc@test", "20260305T100000Z", "20260305T110000Z"),
            header=BERLIN,
        ),
    )

    # When synced
    events = by_id(ics_source(path).sync(None, NOW))

    # Then each names its zone, so mail can show the meeting's own local time
    assert events["berlin@test"].timezone == "Europe/Berlin"
    assert events["berlin@test"].start == utc(2026, 3, 5, 9)
    assert events["newyork@test"].timezone == "America/New_York"
    assert events["newyork@test"].start == utc(2026, 3, 5, 15)
    assert events["utc@test"].timezone is None


# -- incremental syncs ----------------------------------------------------------------------------
def three_meetings(dtstamp: str = "20260101T000000Z", call_title: str = "Call") -> str:
    return vcalendar(
        meeting("kickoff@test", "20260305T090000Z", "20260305T100000Z", "SUMMARY:Kick-off", dtstamp=dtstamp),
        meeting(
            "call@test", "20260306T090000Z", "20260306T100000Z", f"SUMMARY:{call_title}", dtstamp=dtstamp
        ),
        meeting("review@test", "20260307T090000Z", "20260307T100000Z", "SUMMARY:Review", dtstamp=dtstamp),
        vevent(
            "standup@test",
            "SUMMARY:Standup",
            "DTSTART;TZID=Europe/Berlin:20260302T100000",
            "DTEND;TZID=Europe/Berlin:20260302T103000",
            "RRULE:FREQ=WEEKLY;COUNT=6",
            dtstamp=dtstamp,
        ),
        header=BERLIN,
    )


def test_given_an_unchanged_file_when_synced_again_then_it_reports_unchanged_and_no_events(
    tmp_path: Path,
) -> None:
    # Given a calendar that was synced once
    path = write(tmp_path / "team.ics", three_meetings())
    source = ics_source(path)
    first = source.sync(None, NOW)
    assert len(first.upserted) == 3 + 6

    # When it is synced again with the file as it was
    again = source.sync(first.state, NOW + timedelta(minutes=5))

    # Then nothing was re-read
    assert again.unchanged
    assert again.upserted == [] and again.removed == [] and again.problems == []


def test_given_an_export_that_only_renews_dtstamp_then_no_event_is_read_as_changed(tmp_path: Path) -> None:
    # Given a calendar that was synced once
    path = write(tmp_path / "team.ics", three_meetings(dtstamp="20260101T000000Z"))
    source = ics_source(path)
    first = source.sync(None, NOW)

    # When the publisher re-exports it and only every DTSTAMP changes
    write(path, three_meetings(dtstamp="20260301T115900Z"))
    again = source.sync(first.state, NOW + timedelta(minutes=5))

    # Then no event is reported as changed or gone
    assert again.upserted == [] and again.removed == [] and again.problems == []


def test_given_one_event_edited_then_only_that_event_is_upserted(tmp_path: Path) -> None:
    # Given a calendar that was synced once
    path = write(tmp_path / "team.ics", three_meetings())
    source = ics_source(path)
    first = source.sync(None, NOW)

    # When one meeting's title is edited
    write(path, three_meetings(call_title="Call (agenda attached)"))
    again = source.sync(first.state, NOW + timedelta(minutes=5))

    # Then only that meeting comes through, with its new title
    assert [(e.id, e.title) for e in again.upserted] == [("call@test", "Call (agenda attached)")]
    assert again.removed == []


def test_given_an_event_deleted_from_the_file_then_its_id_is_removed(tmp_path: Path) -> None:
    # Given a calendar with a kick-off and a call, synced once
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            meeting("kickoff@test", "20260305T090000Z", "20260305T100000Z"),
            meeting("call@test", "20260306T090000Z", "20260306T100000Z"),
        ),
    )
    source = ics_source(path)
    first = source.sync(None, NOW)

    # When the call is deleted
    write(path, vcalendar(meeting("kickoff@test", "20260305T090000Z", "20260305T100000Z")))
    again = source.sync(first.state, NOW + timedelta(minutes=5))

    # Then the call is reported gone and the kick-off is left alone
    assert again.removed == ["call@test"]
    assert again.upserted == []


def test_given_an_exdate_added_to_a_series_then_that_instance_is_removed(tmp_path: Path) -> None:
    # Given a weekly series, synced once
    path = write(tmp_path / "team.ics", vcalendar(weekly_standup(), header=BERLIN))
    source = ics_source(path)
    first = source.sync(None, NOW)
    assert sorted(by_id(first)) == [
        "standup@test/20260302T090000Z",
        "standup@test/20260309T090000Z",
        "standup@test/20260316T090000Z",
        "standup@test/20260323T090000Z",
        "standup@test/20260330T080000Z",  # summer time: still 10:00 in Berlin
        "standup@test/20260406T080000Z",
    ]

    # When the 16 March standup is cancelled with an EXDATE
    write(path, vcalendar(weekly_standup("EXDATE;TZID=Europe/Berlin:20260316T100000"), header=BERLIN))
    again = source.sync(first.state, NOW + timedelta(minutes=5))

    # Then exactly that instance is gone
    assert again.removed == ["standup@test/20260316T090000Z"]
    assert "standup@test/20260316T090000Z" not in by_id(again)


def test_given_a_moved_override_then_that_instance_is_upserted_under_the_same_id(tmp_path: Path) -> None:
    # Given a weekly series whose 9 March standup was already moved to 14:00
    path = write(
        tmp_path / "team.ics",
        vcalendar(weekly_standup(), standup_moved_to("20260309T140000", "20260309T143000"), header=BERLIN),
    )
    source = ics_source(path)
    first = source.sync(None, NOW)
    moved = by_id(first)["standup@test/20260309T090000Z"]
    assert moved.start == utc(2026, 3, 9, 13) and moved.title == "Standup (moved)"

    # When the override is moved again, to Tuesday
    write(
        path,
        vcalendar(weekly_standup(), standup_moved_to("20260310T140000", "20260310T143000"), header=BERLIN),
    )
    again = source.sync(first.state, NOW + timedelta(minutes=5))

    # Then the instance keeps its id (UID + original start in UTC) and has its new time
    instance = by_id(again)["standup@test/20260309T090000Z"]
    assert instance.uid == "standup@test"
    assert (instance.start, instance.end) == (utc(2026, 3, 10, 13), utc(2026, 3, 10, 13, 30))
    assert again.removed == []


def test_given_a_cancelled_event_then_it_comes_through_as_cancelled(tmp_path: Path) -> None:
    # Given a meeting the organizer cancelled, next to a confirmed and a tentative one
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            meeting("cancelled@test", "20260305T090000Z", "20260305T100000Z", "STATUS:CANCELLED"),
            meeting("confirmed@test", "20260306T090000Z", "20260306T100000Z", "STATUS:CONFIRMED"),
            meeting("tentative@test", "20260307T090000Z", "20260307T100000Z", "STATUS:TENTATIVE"),
        ),
    )

    # When synced
    events = by_id(ics_source(path).sync(None, NOW))

    # Then each status is kept
    assert events["cancelled@test"].status is EventStatus.CANCELLED
    assert events["confirmed@test"].status is EventStatus.CONFIRMED
    assert events["tentative@test"].status is EventStatus.TENTATIVE


# -- broken input ---------------------------------------------------------------------------------
BROKEN_ZONE = """BEGIN:VTIMEZONE
TZID:Custom/Broken
BEGIN:STANDARD
DTSTART:19700101T000000
TZOFFSETFROM:+99xx
TZOFFSETTO:+0100
TZNAME:BRK
END:STANDARD
END:VTIMEZONE
"""


@pytest.mark.parametrize(
    ("broken", "header"),
    [
        pytest.param(
            vevent("broken@test", "DTEND:20260305T110000Z", "SUMMARY:No start"), "", id="no-dtstart"
        ),
        pytest.param(
            meeting("broken@test", "20260305T100000Z", "20260305T090000Z"), "", id="end-before-start"
        ),
        pytest.param(
            meeting("broken@test", "20260305T100000Z", "20260305T110000Z", "RRULE:FREQ=SOMETIMES;COUNT=x"),
            "",
            id="bad-rrule",
        ),
        pytest.param(
            vevent(
                "broken@test",
                "DTSTART;TZID=Custom/Broken:20260305T100000",
                "DTEND;TZID=Custom/Broken:20260305T110000",
            ),
            BROKEN_ZONE,
            id="invalid-vtimezone-offset",
        ),
    ],
)
def test_given_a_broken_event_then_it_is_named_and_the_others_still_come_through(
    tmp_path: Path, broken: str, header: str
) -> None:
    # Given a calendar with one broken event between two good ones
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            meeting("before@test", "20260304T090000Z", "20260304T100000Z", "SUMMARY:Before"),
            broken,
            meeting("after@test", "20260306T090000Z", "20260306T100000Z", "SUMMARY:After"),
            header=header,
        ),
    )

    # When synced
    batch = ics_source(path).sync(None, NOW)

    # Then the good events are listed and the broken one is named by its UID, alone
    assert sorted(by_id(batch)) == ["after@test", "before@test"], batch.problems
    assert [p for p in batch.problems if "broken@test" in p], batch.problems
    assert not [p for p in batch.problems if "before@test" in p or "after@test" in p], batch.problems


def test_given_series_parsed_a_few_at_a_time_then_a_broken_one_spoils_only_its_own_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given seven weekly series, read by icalendar two at a time: the fourth broken (a component left
    # open), the fifth with a moved instance (its override another VEVENT of the same UID)
    monkeypatch.setattr(ics, "PARSE_CHUNK", 2)
    parsed: list[int] = []  # how many VEVENTs each parse read
    read = IcsSource._read

    def counting(self: IcsSource, text: str) -> list[Any]:
        parsed.append(text.count("BEGIN:VEVENT"))
        return read(self, text)

    monkeypatch.setattr(IcsSource, "_read", counting)

    def series(n: int, *extra: str) -> str:
        start, end = f"2026030{n + 1}T090000Z", f"2026030{n + 1}T100000Z"
        return meeting(f"s{n}@test", start, end, "RRULE:FREQ=WEEKLY;COUNT=2", *extra)

    moved = vevent(
        "s4@test", "RECURRENCE-ID:20260312T090000Z", "DTSTART:20260312T150000Z", "DTEND:20260312T160000Z"
    )
    calendar = [series(n) for n in range(3)]
    calendar += [series(3, "BEGIN:X-THING"), series(4), moved, series(5), series(6)]
    path = write(tmp_path / "team.ics", vcalendar(*calendar))

    # When synced
    batch = ics_source(path).sync(None, NOW)

    # Then every other series has its two instances, the moved one where it was moved to
    starts = {e.id: e.start for e in batch.upserted}
    series_read = sorted({i.split("/")[0] for i in starts})
    assert series_read == ["s0@test", "s1@test", "s2@test", "s4@test", "s5@test", "s6@test"]
    assert len(starts) == 12
    moved_series = sorted(s for i, s in starts.items() if i.startswith("s4@"))
    assert moved_series == [utc(2026, 3, 5, 9), utc(2026, 3, 12, 15)]
    # ... only the broken one is named
    assert [p for p in batch.problems if "s3@test" in p], batch.problems
    assert all("s3@test" in p for p in batch.problems), batch.problems
    # ... and only its chunk was parsed again, event by event: s2 and s3, then the chunks after it whole
    assert parsed == [2, 2, 1, 1, 3, 1]


def test_given_bare_vevents_without_a_vcalendar_then_they_are_read_with_a_problem_noted(
    tmp_path: Path,
) -> None:
    # Given a file some tool exported as bare VEVENTs
    path = write(
        tmp_path / "team.ics",
        meeting("kickoff@test", "20260305T090000Z", "20260305T100000Z", "SUMMARY:Kick-off")
        + meeting("call@test", "20260306T090000Z", "20260306T100000Z", "SUMMARY:Call"),
    )

    # When synced
    batch = ics_source(path).sync(None, NOW)

    # Then its events are read, and the user is told the file is not a proper calendar
    assert sorted(by_id(batch)) == ["call@test", "kickoff@test"]
    assert any("VCALENDAR" in p for p in batch.problems), batch.problems


def test_given_a_file_that_is_not_a_calendar_then_sync_fails_naming_the_calendar(tmp_path: Path) -> None:
    # Given an HTML login page saved where the calendar should be
    path = write(tmp_path / "team.ics", "<html><body>Please sign in</body></html>\n")

    # When synced, then it fails with an error that names the calendar
    with pytest.raises(SourceError, match=r"calendar 'team'.*not an iCalendar file"):
        ics_source(path).sync(None, NOW)


def test_given_a_missing_file_then_sync_fails_naming_the_calendar_and_path(tmp_path: Path) -> None:
    # Given a path where no file is
    path = tmp_path / "gone.ics"

    # When synced, then it fails with an error that names the calendar and the file
    with pytest.raises(SourceError, match="calendar 'team'") as caught:
        ics_source(path).sync(None, NOW)
    assert str(path) in str(caught.value)


OPEN_CLOSING = crlf(
    "BEGIN:VEVENT\nUID:closing@test\nDTSTAMP:20260101T000000Z\nSUMMARY:Globex #closing\nDTSTART:notadate\n"
    "DTEND:20260305T110000Z\n"
)
GARBAGE = "%%%% exported by SyncTool 2.1 %%%%\r\n\x00\x00\r\n"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            vcalendar(meeting("before@test", "20260304T090000Z", "20260304T100000Z"), OPEN_CLOSING + GARBAGE),
            id="open-event-then-garbage-then-end",
        ),
        pytest.param(
            vcalendar(meeting("before@test", "20260304T090000Z", "20260304T100000Z")).replace(
                "END:VCALENDAR\r\n", ""
            )
            + OPEN_CLOSING
            + GARBAGE,
            id="open-event-then-garbage-to-the-end",
        ),
        pytest.param(
            vcalendar(
                meeting("before@test", "20260304T090000Z", "20260304T100000Z"),
                OPEN_CLOSING,
                meeting("after@test", "20260306T090000Z", "20260306T100000Z"),
            ),
            id="open-event-between-intact-ones",
        ),
        pytest.param(
            meeting("before@test", "20260304T090000Z", "20260304T100000Z") + OPEN_CLOSING,
            id="bare-vevents-the-last-open",
        ),
    ],
)
def test_given_an_event_left_open_then_the_file_fails_naming_the_file_and_that_event(
    tmp_path: Path, text: str
) -> None:
    # Given a calendar file holding a #closing event with a bad start, never closed with END:VEVENT
    path = write(tmp_path / "team.ics", text)

    # When synced, then the calendar fails, naming the file and the open event, and no intact neighbour
    with pytest.raises(SourceError) as caught:
        ics_source(path).sync(None, NOW)
    message = str(caught.value)
    assert "calendar 'team'" in message and str(path) in message, message
    assert "closing@test" in message and "END:VEVENT" in message, message
    assert "before@test" not in message and "after@test" not in message, message
    assert "\n" not in message


def test_given_a_stray_line_between_the_events_then_the_file_fails_and_no_event_is_blamed(
    tmp_path: Path,
) -> None:
    # Given a complete calendar with a line that is no iCalendar line between its two events
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            meeting("before@test", "20260304T090000Z", "20260304T100000Z"),
            "this line is not iCalendar\r\n",
            meeting("after@test", "20260306T090000Z", "20260306T100000Z"),
        ),
    )

    # When synced, then the calendar fails naming the line, and neither event is blamed for it
    with pytest.raises(SourceError) as caught:
        ics_source(path).sync(None, NOW)
    message = str(caught.value)
    assert "calendar 'team'" in message and "this line is not iCalendar" in message, message
    assert "before@test" not in message and "after@test" not in message, message


def test_given_text_after_the_end_of_the_calendar_then_the_events_are_read_and_the_text_noted(
    tmp_path: Path,
) -> None:
    # Given a complete calendar followed by a line of junk, as some exporters leave
    path = write(
        tmp_path / "team.ics",
        vcalendar(meeting("call@test", "20260305T090000Z", "20260305T100000Z")) + GARBAGE,
    )

    # When synced
    batch = ics_source(path).sync(None, NOW)

    # Then the calendar is read whole, and the text after it is mentioned, not taken as a calendar
    assert sorted(by_id(batch)) == ["call@test"]
    assert [p for p in batch.problems if "after the end of the calendar" in p], batch.problems


def test_given_a_file_larger_than_max_bytes_then_it_is_refused_naming_the_calendar_and_the_limit(
    tmp_path: Path,
) -> None:
    # Given a calendar file of a few kilobytes and a calendar allowed one kilobyte
    path = write(tmp_path / "team.ics", three_meetings())
    assert path.stat().st_size > 1000

    # When synced, then it is refused, naming the calendar, the file and the limit to raise
    with pytest.raises(SourceError) as caught:
        ics_source(path, max_bytes=1000).sync(None, NOW)
    message = str(caught.value)
    assert "calendar 'team'" in message and str(path) in message and "max_bytes = 1000" in message


# -- hostile and odd text -------------------------------------------------------------------------
def test_given_header_injection_in_summary_and_cn_then_they_come_out_as_one_line(tmp_path: Path) -> None:
    # Given titles with escaped and raw line breaks, and attendee names with RFC 6868 and raw line breaks
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            meeting(
                "hostile@test",
                "20260305T090000Z",
                "20260305T100000Z",
                "SUMMARY:Kick-off\\r\\nBcc: evil@x\\nSubject: pwned",
                'ORGANIZER;CN="Rita^nBcc: evil@x":mailto:rita@example.com',
                'ATTENDEE;CN="Cara^n^nBcc: evil@x":mailto:cara@acme.io',
                'ATTENDEE;CN="Carl\rBcc: evil@x":mailto:carl@acme.io',
            ),
            meeting("raw@test", "20260306T090000Z", "20260306T100000Z", "SUMMARY:Review\rBcc: evil@x"),
        ),
    )

    # When synced
    events = by_id(ics_source(path).sync(None, NOW))

    # Then every text that may reach a mail header is a single line
    event = events["hostile@test"]
    assert_one_line(event.title)
    assert event.title.startswith("Kick-off") and "Bcc: evil@x" in event.title
    assert_one_line(events["raw@test"].title)
    assert events["raw@test"].title.startswith("Review")
    assert event.organizer is not None
    assert_one_line(event.organizer.name)
    assert event.organizer.name.startswith("Rita")
    names = {a.person.email: a.person.name for a in event.attendees}
    assert "cara@acme.io" in names  # a raw CR inside a parameter may make the whole line unusable
    for name in names.values():
        assert_one_line(name)
    assert "Bcc: evil@x" in names["cara@acme.io"]  # kept as text, just not as a line of its own


def test_given_a_one_megabyte_description_then_it_is_capped(tmp_path: Path) -> None:
    # Given a meeting whose description is a megabyte of agenda, folded as RFC 5545 says
    agenda = "Agenda item. " * 80_000
    folded = "\r\n ".join(agenda[i : i + 74] for i in range(0, len(agenda), 74))
    path = write(
        tmp_path / "team.ics",
        vcalendar(meeting("long@test", "20260305T090000Z", "20260305T100000Z", f"DESCRIPTION:{folded}")),
    )
    assert path.stat().st_size > 1_000_000

    # When synced
    event = by_id(ics_source(path).sync(None, NOW))["long@test"]

    # Then the description is kept, but only its start
    assert event.description.startswith("Agenda item. Agenda item.")
    assert 0 < len(event.description) <= MAX_DESCRIPTION


def test_given_a_cp1252_file_then_its_accents_are_read(tmp_path: Path) -> None:
    # Given a calendar saved in Windows-1252, not UTF-8
    text = vcalendar(
        meeting(
            "cafe@test",
            "20260305T090000Z",
            "20260305T100000Z",
            "SUMMARY:Café – Kick-off",
            'ATTENDEE;CN="Zoë Müller":mailto:zoe@acme.io',
        )
    )
    path = write(tmp_path / "team.ics", text.encode("cp1252"))

    # When synced
    event = by_id(ics_source(path).sync(None, NOW))["cafe@test"]

    # Then the text reads as written
    assert event.title == "Café – Kick-off"
    assert [a.person.name for a in event.attendees] == ["Zoë Müller"]


def test_given_bytes_that_are_not_utf8_in_one_event_then_only_they_are_replaced_and_that_event_named(
    tmp_path: Path,
) -> None:
    # Given a UTF-8 calendar where one event's description holds two bytes pasted from elsewhere
    text = vcalendar(
        meeting(
            "zoe@test",
            "20260305T090000Z",
            "20260305T100000Z",
            "SUMMARY:Kick-off Müller & Co",
            'ATTENDEE;CN="Zoë Müller":mailto:zoe@acme.io',
        ),
        meeting("notes@test", "20260306T090000Z", "20260306T100000Z", "DESCRIPTION:Notes PASTED: naïve"),
    )
    path = write(tmp_path / "team.ics", text.encode("utf-8").replace(b"PASTED", b"\xff\xfe"))

    # When synced
    batch = ics_source(path).sync(None, NOW)
    events = by_id(batch)

    # Then the other event's names read as written
    assert events["zoe@test"].title == "Kick-off Müller & Co"
    assert [a.person.name for a in events["zoe@test"].attendees] == ["Zoë Müller"]
    # And in the event with the bad bytes, only those are replaced; the rest of its text is intact
    assert events["notes@test"].description == "Notes \ufffd\ufffd: naïve"
    # And that event, and only that one, is reported
    assert [p for p in batch.problems if "notes@test" in p and "UTF-8" in p], batch.problems
    assert len(batch.problems) == 1, batch.problems


def test_given_an_event_without_attendees_then_it_is_listed_with_nobody(tmp_path: Path) -> None:
    # Given a focus block: no organizer, no attendees
    path = write(
        tmp_path / "team.ics",
        vcalendar(meeting("focus@test", "20260305T090000Z", "20260305T100000Z", "SUMMARY:Focus")),
    )

    # When synced
    batch = ics_source(path).sync(None, NOW)

    # Then it is an ordinary event with nobody on it
    event = by_id(batch)["focus@test"]
    assert event.attendees == () and event.organizer is None
    assert batch.problems == []


def test_given_an_attendee_with_a_malformed_address_then_only_that_attendee_is_dropped_and_named(
    tmp_path: Path,
) -> None:
    # Given a meeting with one real attendee, two that cannot be written to, and a room without address
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            meeting(
                "call@test",
                "20260305T090000Z",
                "20260305T100000Z",
                "ATTENDEE;CN=Cara:mailto:cara@acme.io",
                "ATTENDEE;CN=Nobody:mailto:not an address",
                "ATTENDEE;CN=Also Nobody:mailto:",
                "ATTENDEE;CUTYPE=ROOM;CN=Everest:urn:uuid:9b2c0d3e-room",
            )
        ),
    )

    # When synced
    batch = ics_source(path).sync(None, NOW)
    event = by_id(batch)["call@test"]

    # Then the meeting is listed with just the real attendee
    assert [(a.person.email, a.person.name) for a in event.attendees] == [("cara@acme.io", "Cara")]
    # And each address that is none is reported with its event and value; the room is not a problem
    assert [p for p in batch.problems if "call@test" in p and "'mailto:not an address'" in p], batch.problems
    assert [p for p in batch.problems if "call@test" in p and "'mailto:'" in p], batch.problems
    assert len(batch.problems) == 2, batch.problems


def test_given_caldav_style_addresses_then_the_email_parameter_names_the_person(tmp_path: Path) -> None:
    # Given a meeting as a CalDAV server writes it: people as URNs, their addresses in EMAIL parameters
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            meeting(
                "caldav@test",
                "20260305T090000Z",
                "20260305T100000Z",
                "SUMMARY:Globex #closing",
                "ORGANIZER;CN=Carol Rep;EMAIL=carol@acme.example:urn:uuid:6f1c2a7e-0d4b-4c55-9f3e",
                "ATTENDEE;CN=Dana Fox;EMAIL=Dana.Fox@globex.example;PARTSTAT=ACCEPTED:"
                "urn:uuid:0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                "ATTENDEE;CUTYPE=RESOURCE;CN=Projector:urn:uuid:5d4c3b2a-projector",
            )
        ),
    )

    # When synced
    batch = ics_source(path).sync(None, NOW)
    event = by_id(batch)["caldav@test"]

    # Then the organizer and the attendee are the people their EMAIL parameters name
    assert event.organizer is not None
    assert (event.organizer.email, event.organizer.name) == ("carol@acme.example", "Carol Rep")
    assert [(a.person.email, a.person.name, a.status) for a in event.attendees] == [
        ("dana.fox@globex.example", "Dana Fox", "ACCEPTED")
    ]
    # And the projector, a resource known only by its URN, is nobody to write to and no problem
    assert batch.problems == []


def test_given_a_minutely_rule_then_the_series_is_capped_with_a_problem(tmp_path: Path) -> None:
    # Given a series that repeats every minute, forever, next to an ordinary meeting
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            meeting("flood@test", "20260301T000000Z", "20260301T000100Z", "RRULE:FREQ=MINUTELY"),
            meeting("call@test", "20260305T090000Z", "20260305T100000Z"),
        ),
    )

    # When synced over a two-month window (about 90 000 minutes)
    batch = ics_source(path).sync(None, NOW)

    # Then the series is cut at the cap, the user is told, and the meeting still comes through
    flood = [e for e in batch.upserted if e.uid == "flood@test"]
    assert len(flood) == MAX_INSTANCES
    assert "call@test" in by_id(batch)
    assert [p for p in batch.problems if "flood@test" in p and str(MAX_INSTANCES) in p], batch.problems


# -- the moving window ----------------------------------------------------------------------------
def test_given_events_beyond_the_window_then_a_later_sync_picks_them_up_without_a_file_change(
    tmp_path: Path,
) -> None:
    # Given a meeting 70 days ahead and a weekly series without end, with a 60-day window
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            meeting("far@test", "20260510T090000Z", "20260510T100000Z", "SUMMARY:Far"),
            meeting("weekly@test", "20260302T090000Z", "20260302T100000Z", "RRULE:FREQ=WEEKLY"),
        ),
    )
    source = ics_source(path)
    first = source.sync(None, NOW)
    assert "far@test" not in by_id(first)
    assert max(e.start for e in first.upserted) <= NOW + 60 * DAY

    # When synced again two weeks later, the file untouched
    later = NOW + 14 * DAY
    again = source.sync(first.state, later)

    # Then the far meeting and the new weekly instances have come into view; nothing is gone
    events = by_id(again)
    assert events["far@test"].start == utc(2026, 5, 10, 9)
    new_weekly = sorted(i for i in events.keys() - by_id(first).keys() if i.startswith("weekly@test/"))
    assert new_weekly == ["weekly@test/20260504T090000Z", "weekly@test/20260511T090000Z"]
    assert again.removed == []


def test_given_a_series_sliding_out_of_the_past_window_then_its_old_instances_are_not_removed(
    tmp_path: Path,
) -> None:
    # Given a daily series, synced with a two-day look-back
    path = write(
        tmp_path / "team.ics",
        vcalendar(meeting("daily@test", "20260225T090000Z", "20260225T100000Z", "RRULE:FREQ=DAILY;COUNT=20")),
    )
    source = ics_source(path, window_past=2 * DAY)
    first = source.sync(None, NOW)
    assert "daily@test/20260228T090000Z" in by_id(first)

    # When synced again four days later, the file untouched, so early instances fall out of the window
    again = source.sync(first.state, NOW + 4 * DAY)

    # Then they are not reported as removed: they happened, they were not deleted
    assert not again.unchanged
    assert "daily@test/20260228T090000Z" not in by_id(again)
    assert again.removed == []


def test_given_a_past_meeting_out_of_the_window_when_a_new_zone_is_added_then_it_is_not_removed(
    tmp_path: Path,
) -> None:
    # Given a closing call yesterday, synced with a week of look-back
    closing = meeting("closing@test", "20260228T090000Z", "20260228T100000Z", "SUMMARY:Closing")
    path = write(tmp_path / "team.ics", vcalendar(closing))
    source = ics_source(path)
    first = source.sync(None, NOW)
    assert "closing@test" in by_id(first)

    # When, two weeks later, a meeting in Berlin time is added, which brings its VTIMEZONE into the file
    kickoff = vevent(
        "kickoff@test",
        "DTSTART;TZID=Europe/Berlin:20260320T100000",
        "DTEND;TZID=Europe/Berlin:20260320T110000",
    )
    write(path, vcalendar(closing, kickoff, header=BERLIN))
    again = source.sync(first.state, NOW + 14 * DAY)

    # Then the new meeting is listed, and the closing call, untouched but now outside the look-back,
    # is not reported as deleted (it happened; its follow-ups must not be cancelled)
    assert "kickoff@test" in by_id(again)
    assert again.removed == []


def test_given_a_malformed_reminder_then_the_meeting_still_comes_through(tmp_path: Path) -> None:
    # Given a meeting whose VALARM trigger is written "PT-2H" (as in the corpus's khal/non_dst_error.ics)
    path = write(
        tmp_path / "team.ics",
        vcalendar(
            vevent(
                "reminded@test",
                "SUMMARY:Closing call",
                "DTSTART:20260305T090000Z",
                "DTEND:20260305T100000Z",
                "BEGIN:VALARM",
                "ACTION:DISPLAY",
                "DESCRIPTION:Reminder",
                "TRIGGER;RELATED=START:PT-2H",
                "END:VALARM",
            ),
            meeting("call@test", "20260306T090000Z", "20260306T100000Z"),
        ),
    )

    # When synced
    batch = ics_source(path).sync(None, NOW)

    # Then the meeting is listed: a reminder is none of followthrough's business
    assert sorted(by_id(batch)) == ["call@test", "reminded@test"], batch.problems
    assert by_id(batch)["reminded@test"].title == "Closing call"


# -- calendars at a URL ---------------------------------------------------------------------------
SECRET_PATH = "/private-s3cr3t/basic.ics?token=abc"


def url_source(feed: CalendarFeed, path: str = SECRET_PATH) -> IcsSource:
    return IcsSource(
        "sales",
        url=feed.url(path),
        default_zone="Europe/Berlin",
        window_past=7 * DAY,
        window_future=60 * DAY,
        timeout=10,
    )


def assert_redacted(error: SourceError, port: int) -> None:
    message = str(error)
    assert "calendar 'sales'" in message
    assert f"127.0.0.1:{port}" in message  # where it points, so the user knows which feed
    for secret in ("s3cr3t", "basic.ics", "token", "abc"):
        assert secret not in message, f"{secret!r} leaked in {message!r}"


def test_given_a_feed_with_an_etag_then_the_second_sync_is_a_304_and_unchanged(
    calendar_feed: CalendarFeed,
) -> None:
    # Given a published calendar with an ETag and Last-Modified
    calendar_feed.publish(three_meetings().encode(), '"v1"', "Sun, 01 Mar 2026 11:00:00 GMT")
    source = url_source(calendar_feed)

    # When synced twice
    first = source.sync(None, NOW)
    again = source.sync(first.state, NOW + timedelta(minutes=5))

    # Then the first fetch reads everything and the second asks conditionally and is told "not modified"
    assert len(first.upserted) == 3 + 6
    assert again.unchanged and again.upserted == [] and again.removed == []
    fetch, revalidate = calendar_feed.requests
    assert fetch.status == 200 and "If-None-Match" not in fetch.headers
    assert fetch.path == SECRET_PATH
    assert revalidate.headers.get("If-None-Match") == '"v1"'
    assert revalidate.headers.get("If-Modified-Since") == "Sun, 01 Mar 2026 11:00:00 GMT"
    assert revalidate.status == 304


def test_given_a_cursor_of_an_earlier_reading_then_a_feed_not_modified_is_fetched_and_read_once_more(
    calendar_feed: CalendarFeed,
) -> None:
    # Given a published calendar with an ETag, synced by a version that read events differently (its
    # cursor has no `reading`)
    calendar_feed.publish(three_meetings().encode(), '"v1"')
    source = url_source(calendar_feed)
    first = source.sync(None, NOW)
    earlier = {k: v for k, v in first.state.items() if k != "reading"}

    # When synced from that cursor, and again from the cursor it stores
    again = source.sync(earlier, NOW + timedelta(minutes=5))
    after = source.sync(again.state, NOW + timedelta(minutes=10))

    # Then the feed, though not modified, is fetched whole and every event read once more; then it is
    # left alone again
    assert [r.status for r in calendar_feed.requests] == [200, 304, 200, 304]
    assert len(again.upserted) == len(first.upserted) and again.removed == []
    assert after.unchanged


def test_given_a_feed_republished_with_a_new_etag_then_only_changed_events_are_upserted(
    calendar_feed: CalendarFeed,
) -> None:
    # Given a published calendar, synced once
    calendar_feed.publish(three_meetings().encode(), '"v1"')
    source = url_source(calendar_feed)
    first = source.sync(None, NOW)

    # When it is republished with one title changed, a new DTSTAMP everywhere and a new ETag
    calendar_feed.publish(
        three_meetings(dtstamp="20260301T115900Z", call_title="Call (moved room)").encode(), '"v2"'
    )
    again = source.sync(first.state, NOW + timedelta(minutes=5))

    # Then it is fetched again and only the changed meeting comes through
    assert [r.status for r in calendar_feed.requests] == [200, 200]
    assert calendar_feed.requests[1].headers.get("If-None-Match") == '"v1"'
    assert [(e.id, e.title) for e in again.upserted] == [("call@test", "Call (moved room)")]
    assert again.removed == []

    # And the next sync revalidates against the new ETag
    third = source.sync(again.state, NOW + timedelta(minutes=10))
    assert third.unchanged
    assert calendar_feed.requests[2].headers.get("If-None-Match") == '"v2"'
    assert calendar_feed.requests[2].status == 304


def test_given_a_feed_answering_500_then_the_error_names_the_calendar_but_not_the_secret_url(
    calendar_feed: CalendarFeed,
) -> None:
    # Given a feed server that fails
    calendar_feed.status = 500

    # When synced
    with pytest.raises(SourceError) as caught:
        url_source(calendar_feed).sync(None, NOW)

    # Then the error names the calendar and the status, and keeps the private URL out
    assert [r.status for r in calendar_feed.requests] == [500]
    assert "500" in str(caught.value)
    assert_redacted(caught.value, calendar_feed.port)


def test_given_a_feed_on_a_closed_port_then_the_error_names_the_calendar_but_not_the_secret_url(
    closed_port: int,
) -> None:
    # Given a feed URL where nothing listens
    source = IcsSource("sales", url=f"http://127.0.0.1:{closed_port}{SECRET_PATH}", timeout=10)

    # When synced
    with pytest.raises(SourceError) as caught:
        source.sync(None, NOW)

    # Then the error names the calendar, and keeps the private URL out
    assert_redacted(caught.value, closed_port)


# -- feeds that are cut short, oversized, empty or shrunken ----------------------------------------
def test_given_a_download_cut_mid_event_without_a_length_then_the_calendar_fails_naming_that_event(
    calendar_feed: CalendarFeed,
) -> None:
    # Given a feed of three meetings and a series, synced once
    calendar_feed.publish(three_meetings().encode(), '"v1"')
    source = url_source(calendar_feed)
    first = source.sync(None, NOW)

    # When the next version's download, sent without a Content-Length, breaks off inside the call
    body = three_meetings(call_title="Call (moved room)").encode()
    calendar_feed.publish(body, '"v2"')
    calendar_feed.announce_length = False
    calendar_feed.cut_at = body.index(b"SUMMARY:Call (moved room)")
    with pytest.raises(SourceError) as caught:
        source.sync(first.state, NOW + timedelta(minutes=5))

    # Then the calendar fails, naming the cut event and not its intact neighbour, and keeping the URL secret
    message = str(caught.value)
    assert "incomplete" in message and "call@test" in message, message
    assert "kickoff@test" not in message, message
    assert_redacted(caught.value, calendar_feed.port)

    # And once the feed is whole again, the state kept from before gives just the change: nothing removed
    calendar_feed.cut_at = None
    again = source.sync(first.state, NOW + timedelta(minutes=10))
    assert [(e.id, e.title) for e in again.upserted] == [("call@test", "Call (moved room)")]
    assert again.removed == []


def test_given_a_download_shorter_than_its_content_length_then_the_calendar_fails(
    calendar_feed: CalendarFeed,
) -> None:
    # Given a feed whose download breaks off after the first complete event, short of its Content-Length
    body = three_meetings().encode()
    calendar_feed.publish(body, '"v1"')
    calendar_feed.cut_at = body.index(b"BEGIN:VEVENT\r\nUID:call@test")

    # When synced, then the calendar fails saying the download broke off, and keeps the URL secret
    with pytest.raises(SourceError, match="broke off") as caught:
        url_source(calendar_feed).sync(None, NOW)
    assert_redacted(caught.value, calendar_feed.port)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(b"", "is empty", id="empty"),
        pytest.param(b"\r\n \r\n", "is empty", id="blank"),
        pytest.param(
            b"<!DOCTYPE html><html><body><h1>Service Unavailable</h1></body></html>\n",
            "not an iCalendar file",
            id="html-error-page",
        ),
        pytest.param(
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\n", "END:VCALENDAR", id="header-only"
        ),
        pytest.param(
            three_meetings().replace("END:VCALENDAR\r\n", "").encode(),
            "END:VCALENDAR",
            id="cut-between-events",
        ),
    ],
)
def test_given_a_feed_answering_200_with_no_complete_calendar_then_the_calendar_fails(
    calendar_feed: CalendarFeed, body: bytes, says: str
) -> None:
    # Given a feed synced once
    calendar_feed.publish(three_meetings().encode(), '"v1"')
    source = url_source(calendar_feed)
    first = source.sync(None, NOW)

    # When it next answers 200 with something that is not a complete calendar
    calendar_feed.publish(body, '"v2"')
    with pytest.raises(SourceError) as caught:
        source.sync(first.state, NOW + timedelta(minutes=5))

    # Then the calendar fails (the caller keeps its state: nothing is taken as deleted), saying why
    assert says in str(caught.value), str(caught.value)
    assert_redacted(caught.value, calendar_feed.port)


@pytest.mark.parametrize("announce_length", [True, False], ids=["content-length", "no-length"])
def test_given_a_feed_larger_than_max_bytes_then_it_is_refused_without_being_read_whole(
    calendar_feed: CalendarFeed, announce_length: bool
) -> None:
    # Given a 40 MB feed and a calendar allowed 1 MB
    body = b"BEGIN:VCALENDAR\r\nX-PAD:" + b"x" * 40_000_000 + b"\r\nEND:VCALENDAR\r\n"
    calendar_feed.publish(body, '"big"')
    calendar_feed.announce_length = announce_length
    source = IcsSource("sales", url=calendar_feed.url(SECRET_PATH), timeout=10, max_bytes=1_000_000)

    # When synced
    tracemalloc.start()
    try:
        with pytest.raises(SourceError) as caught:
            source.sync(None, NOW)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    # Then it is refused, naming the calendar and the limit to raise, and the URL kept secret
    assert "max_bytes = 1000000" in str(caught.value), str(caught.value)
    assert_redacted(caught.value, calendar_feed.port)
    # And it was never held in memory whole: reading stopped soon after the limit
    assert peak < 8_000_000, f"peak {peak:,} bytes while refusing a 40 MB feed"


def numbered_meetings(count: int) -> list[str]:
    """`count` one-hour meetings, one a day from 2 March 2026: m0@test, m1@test, …"""
    return [
        meeting(f"m{i}@test", f"202603{2 + i:02d}T090000Z", f"202603{2 + i:02d}T100000Z", f"SUMMARY:M{i}")
        for i in range(count)
    ]


def test_given_a_feed_that_lost_most_of_its_events_then_the_sync_is_held_until_a_person_confirms(
    calendar_feed: CalendarFeed,
) -> None:
    # Given a feed of 20 meetings, synced once
    calendar_feed.publish(vcalendar(*numbered_meetings(20)).encode(), '"v1"')
    source = url_source(calendar_feed)
    first = source.sync(None, NOW)
    assert len(first.upserted) == 20

    # When it is next published, complete, with only 5 of them (a wrong or broken export, or not)
    calendar_feed.publish(vcalendar(*numbered_meetings(5)).encode(), '"v2"')
    with pytest.raises(SourceError) as caught:
        source.sync(first.state, NOW + timedelta(minutes=5))

    # Then the sync is held, naming the calendar, how many events would go, and how to confirm
    message = str(caught.value)
    assert "calendar 'sales'" in message and "15 of the 20" in message, message
    assert "held" in message and "followthrough tick --accept-removals sales" in message, message

    # When a person confirms, then the 15 are removed
    source.accept_removals = True
    confirmed = source.sync(first.state, NOW + timedelta(minutes=10))
    assert sorted(confirmed.removed) == sorted(f"m{i}@test" for i in range(5, 20))


@pytest.mark.parametrize(
    ("had", "kept"),
    [(10, 0), (20, 10), (30, 19)],
    ids=["ten-gone", "half-gone", "a-third-gone"],
)
def test_given_a_feed_that_lost_some_of_its_events_then_they_are_removed_at_once(
    tmp_path: Path, had: int, kept: int
) -> None:
    # Given a calendar synced once
    path = write(tmp_path / "team.ics", vcalendar(*numbered_meetings(had)))
    source = ics_source(path)
    first = source.sync(None, NOW)

    # When it loses no more than ten events, or no more than half of them
    write(path, vcalendar(*numbered_meetings(kept)))
    again = source.sync(first.state, NOW + timedelta(minutes=5))

    # Then those are removed without asking anyone
    assert sorted(again.removed) == sorted(f"m{i}@test" for i in range(kept, had))


# What the previous version (which split the decoded text) stored after syncing PREVIOUS_FEED on
# 2026-03-01: the cursor an upgraded installation starts from.
PREVIOUS_FEED = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
    "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\n"
    "BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
    "BEGIN:VEVENT\r\nDTSTAMP:{stamp}\r\nUID:call@acme.example\r\nDTSTART;TZID=Europe/Berlin:20260310T090000\r\n"
    "DTEND;TZID=Europe/Berlin:20260310T100000\r\nSUMMARY:Acme – pricing\r\n"
    'ORGANIZER;CN="Rep, Ann":mailto:ann@acme.example\r\n'
    "ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@customer.example\r\n"
    "BEGIN:VALARM\r\nTRIGGER:-PT15M\r\nACTION:DISPLAY\r\nEND:VALARM\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nDTSTAMP:{stamp}\r\nUID:offsite@acme.example\r\nDTSTART;VALUE=DATE:20260312\r\n"
    "SUMMARY:Offsite\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nDTSTAMP:{stamp}\r\nUID:weekly@acme.example\r\nDTSTART:20260302T080000Z\r\n"
    "DTEND:20260302T083000Z\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\nSUMMARY:Weekly #kickoff\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)
PREVIOUS_STATE: dict[str, Any] = {
    "digest": "e1bf36d2703694251f146fcfc1745233",
    "header": "c08c14d52ce0488fb60093e2",
    "items": {
        "call@acme.example": ["6b00da221613e0ba243251dc", ["call@acme.example"], None, False],
        "offsite@acme.example": ["30f235b0c49671a843b12895", ["offsite@acme.example"], None, False],
        "weekly@acme.example": [
            "db58dd326461bf90a6f4525c",
            [f"weekly@acme.example/202603{day}T080000Z" for day in ("02", "09", "16")],
            1772409600.0,
            False,
        ],
    },
    "unusable": {},
}


def test_given_a_cursor_from_the_previous_version_when_the_feed_only_renews_dtstamp_then_nothing_is_lost(
    tmp_path: Path,
) -> None:
    # Given a cursor the previous version stored, and the same feed exported again (new DTSTAMPs)
    path = write(tmp_path / "team.ics", PREVIOUS_FEED.replace("{stamp}", "20260301T060000Z"))

    # When this version syncs from that cursor
    batch = IcsSource("team", path=path).sync(PREVIOUS_STATE, datetime(2026, 3, 1, 12, tzinfo=UTC))

    # Then it reads every event once more, as a cursor of an earlier reading asks (the ledger finds
    # them as they were: nothing to re-plan), and nothing is removed
    assert not batch.unchanged
    assert sorted({e.id.split("/")[0] for e in batch.upserted}) == sorted(PREVIOUS_STATE["items"])
    assert batch.removed == [] and batch.problems == []
    assert batch.state["header"] == PREVIOUS_STATE["header"]

    # And the cursor it stores (in this version's form) still knows every event as it was: the next
    # re-export changes nothing, and a feed without the weekly series removes its three instances
    write(path, PREVIOUS_FEED.replace("{stamp}", "20260301T070000Z"))
    again = IcsSource("team", path=path).sync(batch.state, datetime(2026, 3, 1, 12, 5, tzinfo=UTC))
    assert again.upserted == [] and again.removed == [] and again.problems == []
    weekly = PREVIOUS_FEED.index("BEGIN:VEVENT\r\nDTSTAMP:{stamp}\r\nUID:weekly")
    without = PREVIOUS_FEED[:weekly] + "END:VCALENDAR\r\n"
    write(path, without.replace("{stamp}", "20260301T080000Z"))
    dropped = IcsSource("team", path=path).sync(again.state, datetime(2026, 3, 1, 12, 10, tzinfo=UTC))
    assert dropped.upserted == []
    assert sorted(dropped.removed) == PREVIOUS_STATE["items"]["weekly@acme.example"][1]


def test_given_a_cursor_from_the_previous_version_when_the_feed_is_unchanged_then_it_is_read_once_more(
    tmp_path: Path,
) -> None:
    # Given a cursor the previous version stored after reading this very file
    path = write(tmp_path / "team.ics", PREVIOUS_FEED.replace("{stamp}", "20260301T060000Z"))
    state = {**PREVIOUS_STATE, "digest": hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()}

    # When this version syncs the same file from it
    batch = IcsSource("team", path=path).sync(state, datetime(2026, 3, 1, 12, 5, tzinfo=UTC))

    # Then it reads every event once more, as a cursor of an earlier reading asks, nothing removed
    assert not batch.unchanged and len(batch.upserted) == 5 and batch.removed == []

    # And from the cursor it stores, the same file is unchanged, not read
    again = IcsSource("team", path=path).sync(batch.state, datetime(2026, 3, 1, 12, 10, tzinfo=UTC))
    assert again.unchanged and again.upserted == [] and again.removed == []
