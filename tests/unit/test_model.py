"""The domain values: names as people say them, addresses, ids, events that survive the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.model import (
    Attendee,
    CalendarEvent,
    EventStatus,
    Person,
    Status,
    clean_id,
    parse_address,
)


def test_names_are_read_as_spoken_and_never_guessed_from_an_address() -> None:
    # Given names as directories, clients and people write them
    # Then "Last, First" reads "First Last"; an address in the name, or none, leaves nothing to greet
    assert Person("g@h.example", "Belson, Gavin").display_name == "Gavin Belson"
    assert Person("g@h.example", "Belson, Gavin").first_name == "Gavin"
    assert Person("m@h.example", "Smith, Jr.").display_name == "Smith, Jr."
    assert Person("tom.reed@h.example").display_name == "tom.reed@h.example"
    assert Person("tom.reed@h.example").first_name == ""
    assert Person("tom.reed@h.example", "tom.reed@h.example").first_name == ""
    assert Person("d@h.example", "Dana Fox").first_name == "Dana"


def test_an_address_holding_an_encoded_word_is_no_address() -> None:
    # Given a local part the standard library would decode into a header line while parsing it
    hostile = "=?utf-8?q?x=0d=0abcc=3a=20x=40evil.example?=@globex.example"
    # Then it is not taken as an address at all (the attendee is left out and reported)
    assert parse_address(hostile) is None
    assert parse_address("mailto:dana.fox+deals@globex.example") == "dana.fox+deals@globex.example"


def test_uids_are_kept_as_written_but_on_one_line() -> None:
    # An id must not change meaning between versions: encoded words in it stay as they are
    assert clean_id("abc=?utf-8?q?x?=\r\n@host") == "abc=?utf-8?q?x?= @host"


def test_an_event_comes_back_from_the_ledger_as_it_went_in() -> None:
    # Given an instance of a series with people, a zone and source properties
    start = datetime(2026, 12, 2, 15, tzinfo=UTC)
    event = CalendarEvent(
        uid="series-1",
        recurrence_id="20261202T150000Z",
        start=start,
        end=start + timedelta(hours=1),
        title="Globex terms #closing",
        description="Notes",
        timezone="America/New_York",
        organizer=Person("alice@acme.example", "Alice"),
        attendees=(Attendee(Person("dana@globex.example", "Dana"), status="ACCEPTED"),),
        status=EventStatus.TENTATIVE,
        properties={"followthrough.deal": "globex"},
    )
    # When it is stored as a dict and read back, then it is the same event with the same id
    again = CalendarEvent.from_dict(event.to_dict())
    assert again == event and again.id == "series-1/20261202T150000Z"


def test_planned_and_claimed_sends_are_both_pending_to_scripts() -> None:
    # `plan --json` promises "pending" for both; the other states keep their names
    assert {Status.PLANNED.public, Status.CLAIMED.public} == {"pending"}
    assert Status.UNKNOWN.public == "unknown" and Status.SENT.public == "sent"
