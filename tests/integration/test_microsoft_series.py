"""A recurring Outlook meeting read from Graph and from an .ics export of the same calendar: the same
event ids, an exception (a moved occurrence) included, and one event when two mailboxes hold it.

Graph v1.0 gives each occurrence an iCalUId of its own; the ids must still be the ICS source's
(`UID/<original start in UTC>`), so the series master's iCalUId is read, once per series.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.config import load
from daemon.engine import Engine
from daemon.sources.ics import IcsSource
from daemon.sources.microsoft import MicrosoftCalendarSource
from tests.support.config import config_toml
from tests.support.graph_fake import FakeGraph
from tests.support.microsoft import access_for

pytestmark = pytest.mark.usefixtures("microsoft_secret")

ALICE = "alice@acme.example"
BOB = "bob@acme.example"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
# An Outlook meeting's UID as Outlook writes it in an .ics export: its global object id, in hex.
UID = (
    "040000008200E00074C5B7101A82E0080000000070D7C3A5E2A4DC0100000000000000001000"
    "0000A1B2C3D4E5F60718293A4B5C6D7E8F90"
)
FIRST = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin; summer time from 29 March
WEEK = timedelta(days=7)
MOVED_TO = datetime(2026, 3, 24, 13, 0, tzinfo=UTC)  # the 23 March one, moved to Tuesday 14:00

EXPORT = f"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:Microsoft Exchange Server 2010
BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
UID:{UID}
SUMMARY:Globex weekly #kickoff
DTSTART;TZID=W. Europe Standard Time:20260316T100000
DTEND;TZID=W. Europe Standard Time:20260316T110000
RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=MO
ORGANIZER;CN=Alice:mailto:{ALICE}
ATTENDEE;CN=Dana:mailto:dana@globex.com
DTSTAMP:20260301T000000Z
END:VEVENT
BEGIN:VEVENT
UID:{UID}
RECURRENCE-ID;TZID=W. Europe Standard Time:20260323T100000
SUMMARY:Globex weekly #kickoff (moved)
DTSTART;TZID=W. Europe Standard Time:20260324T140000
DTEND;TZID=W. Europe Standard Time:20260324T150000
ORGANIZER;CN=Alice:mailto:{ALICE}
ATTENDEE;CN=Dana:mailto:dana@globex.com
DTSTAMP:20260301T000000Z
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")

EXPECTED = {
    f"{UID}/20260316T090000Z",
    f"{UID}/20260323T090000Z",  # moved to the 24th: still the id of the slot it left
    f"{UID}/20260330T080000Z",  # summer time: 10:00 in Berlin is 08:00 UTC
    f"{UID}/20260406T080000Z",
}


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[FakeGraph]:
    with FakeGraph(directory=tmp_path / "ca") as fake:
        yield fake


def outlook_series(graph: FakeGraph, mailbox: str) -> None:
    """The same meeting as EXPORT, as Graph holds it in `mailbox`: a master, four occurrences, one moved."""
    _, occurrences = graph.put_series(
        mailbox,
        UID,
        FIRST,
        4,
        every=WEEK,
        zone="Europe/Berlin",
        subject="Globex weekly #kickoff",
        originalStartTimeZone="W. Europe Standard Time",
        organizer={"emailAddress": {"address": ALICE, "name": "Alice"}},
        attendees=[{"type": "required", "emailAddress": {"address": "dana@globex.com", "name": "Dana"}}],
    )
    graph.move_occurrence(mailbox, occurrences[1]["id"], MOVED_TO, subject="Globex weekly #kickoff (moved)")


def test_a_recurring_meeting_has_the_same_ids_from_graph_as_from_its_ics_export(
    graph: FakeGraph, tmp_path: Path
) -> None:
    # Given Alice's weekly meeting in an .ics export, and the same meeting in her mailbox on Graph,
    # where each occurrence has an iCalUId of its own and one occurrence was moved to another day
    export = tmp_path / "alice.ics"
    export.write_text(EXPORT, encoding="utf-8", newline="")
    outlook_series(graph, ALICE)
    ics = IcsSource("export", path=export, default_zone="Europe/Berlin", window_future=60 * WEEK)
    outlook = MicrosoftCalendarSource(
        "outlook",
        access=access_for(graph),
        mailbox=ALICE,
        default_zone="Europe/Berlin",
        window_future=60 * WEEK,
    )

    # When both are read
    from_ics = {event.id: event for event in ics.sync(None, NOW).upserted}
    first = outlook.sync(None, NOW)
    from_graph = {event.id: event for event in first.upserted}

    # Then they give the same ids, the moved occurrence at its new time under its old slot's id
    assert set(from_ics) == set(from_graph) == EXPECTED
    moved = f"{UID}/20260323T090000Z"
    assert from_graph[moved].start == from_ics[moved].start == MOVED_TO
    assert from_graph[moved].title == from_ics[moved].title == "Globex weekly #kickoff (moved)"
    assert {e.uid for e in from_graph.values()} == {UID}
    # And the series' master was read once, and a quiet poll after it costs one delta request
    assert len(graph.calls("/events/")) == 1
    graph.clear_log()
    again = outlook.sync(first.state, NOW + timedelta(minutes=5))
    assert again.unchanged and [r.path for r in graph.requests] == [graph.delta_calls()[0].path]


def test_an_occurrence_moved_later_keeps_its_id_without_reading_the_master_again(graph: FakeGraph) -> None:
    # Given the series read once
    outlook_series(graph, ALICE)
    outlook = MicrosoftCalendarSource(
        "outlook", access=access_for(graph), mailbox=ALICE, window_future=60 * WEEK
    )
    first = outlook.sync(None, NOW)
    last = next(
        e for e in graph.mailbox(ALICE).events.values() if e.get("originalStart") == "2026-04-06T08:00:00Z"
    )

    # When its last occurrence is moved an hour later
    graph.clear_log()
    graph.move_occurrence(ALICE, last["id"], datetime(2026, 4, 6, 9, 0, tzinfo=UTC))
    later = outlook.sync(first.state, NOW + timedelta(minutes=5))

    # Then it comes as a change of the same event, and the master is not asked for again
    [event] = later.upserted
    assert event.id == f"{UID}/20260406T080000Z" and event.start == datetime(2026, 4, 6, 9, 0, tzinfo=UTC)
    assert later.removed == [] and graph.calls("/events/") == []


def test_the_same_series_in_two_mailboxes_and_an_export_is_one_event_per_occurrence(
    graph: FakeGraph, tmp_path: Path, engines: list[Engine]
) -> None:
    # Given the meeting in Alice's and Bob's mailboxes (each with its own Graph ids) and in Alice's export
    outlook_series(graph, ALICE)
    outlook_series(graph, BOB)
    (tmp_path / "alice.ics").write_text(EXPORT, encoding="utf-8", newline="")
    (tmp_path / "followthrough.toml").write_text(
        config_toml(
            calendars=[("export", "alice.ics")],
            transport="outbox",
            team=False,
            extra=f'[[calendars]]\nname = "outlook"\nsource = "microsoft"\nmailboxes = ["{ALICE}", "{BOB}"]\n'
            + graph.toml(),
        ),
        encoding="utf-8",
    )
    engine = Engine(load(tmp_path / "followthrough.toml"))
    engines.append(engine)

    # When a pass reads the three calendars
    report = engine.tick(NOW)

    # Then the ledger holds one event per occurrence, each seen in all three calendars
    assert not report.failed, report
    assert set(engine.ledger.all_event_ids()) == EXPECTED
    for event_id in EXPECTED:
        stored = engine.ledger.event(event_id)
        assert stored is not None
        assert sorted(stored.sources) == ["export", f"outlook:{ALICE}", f"outlook:{BOB}"]
