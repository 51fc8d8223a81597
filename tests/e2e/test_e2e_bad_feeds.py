"""End to end, bad calendar input: `followthrough tick` on files that are cut short, broken, shrunken,
oversized, partly not UTF-8 or written as CalDAV servers write them.

What must hold: nothing already planned is cancelled because a file could not be read whole, the user
is told which calendar and which event, and the exit status says something needs attention.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.e2e.support import REP, Deployment
from tests.support.ics import H, calendar, meeting, now_utc, stamp

Deploy = Callable[..., Deployment]

DANA = ("dana.fox@globex.example", "Dana Fox")
ZOE = ("zoe.muller@globex.example", "Zoë Müller")


def closing_calls(count: int) -> list[str]:
    """`count` closing calls, three days and more from now: their prompts are all still to come."""
    now = now_utc()
    return [
        meeting(
            f"call-{i}@acme.example",
            now + (72 + i) * H,
            now + (73 + i) * H,
            f"Deal {i} #closing",
            attendees=[DANA],
        )
        for i in range(count)
    ]


def statuses(ft: Deployment) -> dict[str, str]:
    return {s["key"]: s["status"] for s in ft.plan()}


def with_calendar_option(config: Path, line: str) -> None:
    """Add a key to the one [[calendars]] entry of a config written by `write_config`."""
    text = config.read_text(encoding="utf-8")
    owner = 'owner = "alice@acme.example"\n'
    assert text.count(owner) == 1
    config.write_text(text.replace(owner, owner + line + "\n"), encoding="utf-8")


def test_a_calendar_file_cut_mid_event_fails_the_tick_and_cancels_nothing(deploy: Deploy) -> None:
    # Given three closing calls, planned
    ft = deploy()
    events = closing_calls(3)
    ft.write_calendar(*events)
    assert ft.tick().code == 0
    planned = statuses(ft)
    assert len(planned) == 9 and set(planned.values()) == {"pending"}, planned

    # When the file is caught half written: it stops inside the second call
    whole = calendar(*events)
    ft.calendar.write_text(whole[: whole.index("SUMMARY:Deal 1")], encoding="utf-8", newline="")
    result = ft.tick()

    # Then the pass fails, naming the calendar and the cut event, and every send is still pending
    assert result.code == 1, result.output
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert failed and "sales" in failed[0] and "call-1@acme.example" in failed[0], result.output
    assert "call-0@acme.example" not in failed[0], result.output
    assert statuses(ft) == planned

    # When the file is whole again, then all is well and nothing changed
    ft.write_calendar(*events)
    again = ft.tick()
    assert again.code == 0, again.output
    assert statuses(ft) == planned


def test_a_calendar_that_lost_most_of_its_events_is_held_until_accept_removals(deploy: Deploy) -> None:
    # Given twelve closing calls, planned
    ft = deploy()
    events = closing_calls(12)
    ft.write_calendar(*events)
    assert ft.tick().code == 0
    planned = statuses(ft)
    assert len(planned) == 36 and set(planned.values()) == {"pending"}, planned

    # When the calendar suddenly holds only the first of them
    ft.write_calendar(events[0])
    held = ft.tick()

    # Then the pass fails, saying how many would go and how to confirm, and nothing is cancelled
    assert held.code == 1, held.output
    assert "11 of the 12" in held.stdout and "tick --accept-removals sales" in held.stdout, held.output
    assert statuses(ft) == planned

    # When a calendar that does not exist is named, then that is a one-line error
    wrong = ft.cli("tick", "--accept-removals", "salse")
    assert wrong.code == 1 and "salse" in wrong.stderr and "Traceback" not in wrong.output, wrong.output

    # When a person confirms the removals
    confirmed = ft.cli("tick", "--accept-removals", "sales")

    # Then the eleven calls are gone and their sends cancelled; the one left keeps its own
    assert confirmed.code == 0, confirmed.output
    assert "11 gone" in confirmed.stdout, confirmed.output
    after = statuses(ft)
    assert {k: v for k, v in after.items() if k.endswith(":call-0@acme.example")} == {
        k: "pending" for k in planned if k.endswith(":call-0@acme.example")
    }
    assert {v for k, v in after.items() if not k.endswith(":call-0@acme.example")} == {"cancelled"}


def test_a_broken_calendar_file_is_reported_by_file_and_event_and_fails_the_tick(deploy: Deploy) -> None:
    # Given a calendar file holding a closing call with a start that is no date, no END:VEVENT, and junk
    ft = deploy()
    now = now_utc()
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//hand written//EN",
        "BEGIN:VEVENT",
        "UID:globex-close@acme.example",
        f"DTSTAMP:{stamp(now)}",
        "DTSTART:notadate",
        f"DTEND:{stamp(now + 25 * H)}",
        "SUMMARY:Globex final terms #closing",
        f"ORGANIZER;CN={REP[1]}:mailto:{REP[0]}",
        f"ATTENDEE;CN={DANA[1]}:mailto:{DANA[0]}",
        "~~~ copy-paste leftovers ~~~",
        "END:VCALENDAR",
    ]
    ft.calendar.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8", newline="")

    # When one pass runs
    result = ft.tick()

    # Then it fails, naming the calendar's file and the event
    assert result.code == 1, result.output
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert failed, result.output
    assert str(ft.calendar) in failed[0] and "globex-close@acme.example" in failed[0], result.output
    assert "Traceback" not in result.output


def test_a_closing_call_edited_into_an_unreadable_one_fails_the_tick_and_keeps_its_plan(
    deploy: Deploy,
) -> None:
    # Given two closing calls, planned
    ft = deploy()
    events = closing_calls(2)
    ft.write_calendar(*events)
    assert ft.tick().code == 0
    planned = statuses(ft)

    # When one of them is saved with a start that is no date, the file otherwise intact
    broken = events[1].replace("DTSTART:", "DTSTART:notadate\r\nX-OLD-DTSTART:", 1)
    ft.write_calendar(events[0], broken)
    result = ft.tick()

    # Then the pass fails, naming the calendar and the event, and says what happens to it
    assert result.code == 1, result.output
    assert "call-1@acme.example" in result.stdout and "could not be used" in result.stdout, result.output
    assert "Traceback" not in result.output
    # And its sends are not cancelled as if it had been deleted: everything is as planned
    assert statuses(ft) == planned
    # And the next pass, with the file unchanged, still says so: it is not forgotten
    quiet = ft.tick()
    assert quiet.code == 1 and "call-1@acme.example" in quiet.stdout, quiet.output

    # When it is fixed, then all is well again
    ft.write_calendar(*events)
    again = ft.tick()
    assert again.code == 0, again.output
    assert statuses(ft) == planned


def test_a_calendar_file_over_max_bytes_is_refused_naming_the_setting(deploy: Deploy) -> None:
    # Given a calendar allowed 1,000 bytes, and a file of six calls, larger than that
    ft = deploy()
    with_calendar_option(ft.config, "max_bytes = 1000")
    ft.write_calendar(*closing_calls(6))
    assert ft.calendar.stat().st_size > 1000

    # When one pass runs, then the calendar fails, naming the limit and where to raise it
    result = ft.tick()
    assert result.code == 1, result.output
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert failed and "max_bytes = 1000" in failed[0] and "[[calendars]]" in failed[0], result.output


def test_bytes_that_are_not_utf8_in_one_event_do_not_garble_another_events_mail(deploy: Deploy) -> None:
    # Given a closing call with Zoë Müller 23 hours from now (its prep is due), and another event whose
    # description holds two bytes that are not UTF-8
    ft = deploy()
    now = now_utc()
    text = calendar(
        meeting("globex@acme.example", now + 23 * H, now + 24 * H, "Globex terms #closing", attendees=[ZOE]),
        meeting("notes@acme.example", now + 48 * H, now + 49 * H, "Notes", description="Pasted: BAD"),
    )
    ft.calendar.write_bytes(text.encode("utf-8").replace(b"BAD", b"\xff\xfe"))

    # When one pass runs
    result = ft.tick()

    # Then the prep names Zoë Müller as written
    assert result.code == 0, result.output
    (prep,) = ft.mail.to(REP[0])
    assert "Zoë Müller" in prep.part("plain"), prep.part("plain")
    assert "Ã" not in prep.part("plain")
    # And the event with the bad bytes is reported, the other is not
    assert "notes@acme.example" in result.stdout and "UTF-8" in result.stdout, result.output
    assert "globex@acme.example: " not in result.stdout, result.output


def test_a_caldav_organizer_triggers_the_playbook_and_an_unusable_attendee_is_reported(
    deploy: Deploy,
) -> None:
    # Given a closing call 23 hours from now as a CalDAV server writes it: the organizer a URN with an
    # EMAIL parameter, and one attendee whose address is not one
    ft = deploy()
    now = now_utc()
    event = "\r\n".join(
        [
            "BEGIN:VEVENT",
            "UID:caldav-close@acme.example",
            f"DTSTAMP:{stamp(now)}",
            f"DTSTART:{stamp(now + 23 * H)}",
            f"DTEND:{stamp(now + 24 * H)}",
            "SUMMARY:Globex terms #closing",
            f"ORGANIZER;CN={REP[1]};EMAIL={REP[0]}:urn:uuid:6f1c2a7e-0d4b-4c55-9f3e-1b2a3c4d5e6f",
            f"ATTENDEE;CN={DANA[1]};EMAIL={DANA[0]};PARTSTAT=ACCEPTED:urn:uuid:0a1b2c3d-4e5f-4a6b-8c7d",
            "ATTENDEE;CN=Lee Park;PARTSTAT=ACCEPTED:mailto:lee.park at globex.example",
            "ATTENDEE;CUTYPE=ROOM;CN=Everest:urn:uuid:9b2c0d3e-room",
            "END:VEVENT",
        ]
    )
    ft.write_calendar(event)

    # When one pass runs
    result = ft.tick()

    # Then the organizer is the rep: the prep goes out to them, naming the customer
    assert result.code == 0, result.output
    (prep,) = ft.mail.to(REP[0])
    assert DANA[1] in prep.part("plain")
    # And the attendee that cannot be written to is reported with the event and the value
    reported = [line for line in result.stdout.splitlines() if "lee.park at globex.example" in line]
    assert reported and "caldav-close@acme.example" in reported[0], result.output
    assert "Everest" not in result.stdout, result.output
