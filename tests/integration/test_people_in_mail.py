"""How people are named in the mail that goes out: real ICS files, real SQLite, the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time

from tests.support.ics import ALICE, vevent
from tests.support.world import World

# Wednesday 2 December 2026, 10:00 in Berlin: inside business hours for customer mail.
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
GAVIN = ("gavin@hooli.example", '"Belson, Gavin"')  # as directories and Outlook write it
TOM = "tom.reed@hooli.example"  # on the invite with no name at all
NAMELESS = f"ATTENDEE:mailto:{TOM}\r\nATTENDEE;CN={TOM}:mailto:erin@hooli.example"


def plain(message: object) -> str:
    part = message.get_body(("plain",))  # type: ignore[attr-defined]
    return str(part.get_content())


def test_last_first_names_read_first_last_and_nameless_people_are_not_given_a_guessed_name(
    tmp_path: Path,
) -> None:
    # Given a closing call tomorrow with "Belson, Gavin" and two people without a real name
    world = World(tmp_path)
    world.write(
        vevent(
            "call-1",
            NOW + timedelta(hours=23),
            NOW + timedelta(hours=24),
            "Hooli terms #closing",
            attendees=(ALICE, GAVIN),
            extra=NAMELESS,
        )
    )

    # When the prep prompt goes out
    with freeze_time(NOW):
        world.tick()

    # Then the rep reads "Gavin Belson", and the nameless people by their address alone, each with
    # their answer to the invite
    text = plain(world.outbox()["closing-prep:call-1"]).replace("\r\n", "\n")
    assert "- Gavin Belson: no reply\n" in text, text
    assert "Belson, Gavin" not in text and "Hi Belson" not in text
    assert f"- {TOM}: no reply\n" in text, text
    assert "tom.reed <" not in text and "Tom," not in text and "Tom.reed" not in text


def test_a_customer_is_greeted_by_first_name_and_one_without_a_name_without_one(tmp_path: Path) -> None:
    # Given two lost deals: one with "Belson, Gavin", one whose only customer has no name
    world = World(tmp_path)
    ended = NOW - timedelta(hours=25)
    world.write(
        vevent("lost-1", ended - timedelta(hours=1), ended, "Hooli #closing #lost", attendees=(ALICE, GAVIN)),
        vevent(
            "lost-2",
            ended - timedelta(hours=1),
            ended,
            "Initech #closing #lost",
            attendees=(ALICE,),
            extra="ATTENDEE:mailto:tom.reed@initech.example",
        ),
    )

    # When the thank-you notes go out
    with freeze_time(NOW):
        world.tick()

    # Then Gavin is greeted "Hi Gavin,", and Tom with a plain "Hi," rather than a name made from his address
    outbox = world.outbox()
    assert plain(outbox["lost-thank-you:lost-1"]).lstrip().startswith("Hi Gavin,")
    tom = plain(outbox["lost-thank-you:lost-2"]).lstrip()
    assert tom.startswith("Hi,"), tom
