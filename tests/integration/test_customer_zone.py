"""Customer mail goes out in the customer's working hours and shows times in their zone.

Real ICS files written as Outlook writes them, real SQLite, the outbox; the clock moved with freezegun.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from daemon.sources.ics import IcsSource
from tests.support.ics import ALICE, DANA, calendar, vevent
from tests.support.world import World

H = timedelta(hours=1)
# Wednesday 2 December 2026, 15:00 UTC: the closing call.
T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)

EASTERN = """BEGIN:VTIMEZONE\r
TZID:Eastern Standard Time\r
BEGIN:STANDARD\r
DTSTART:16011104T020000\r
RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11\r
TZOFFSETFROM:-0400\r
TZOFFSETTO:-0500\r
END:STANDARD\r
BEGIN:DAYLIGHT\r
DTSTART:16010311T020000\r
RRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3\r
TZOFFSETFROM:-0500\r
TZOFFSETTO:-0400\r
END:DAYLIGHT\r
END:VTIMEZONE\r
"""
TOKYO = """BEGIN:VTIMEZONE\r
TZID:Tokyo Standard Time\r
BEGIN:STANDARD\r
DTSTART:16010101T000000\r
TZOFFSETFROM:+0900\r
TZOFFSETTO:+0900\r
END:STANDARD\r
END:VTIMEZONE\r
"""


def outlook_calendar(*events: str) -> str:
    """As Outlook writes an invite: its VTIMEZONEs named the Windows way, before the events."""
    return calendar(EASTERN, TOKYO, *events)


@pytest.mark.filterwarnings("ignore::icalendar.error.GloballyUniqueTZIDGuessed")
def test_windows_zone_names_are_read_as_iana_zones(tmp_path: Path) -> None:
    # Given an Outlook export: one event in "Eastern Standard Time", a weekly series in "Tokyo
    # Standard Time", and one written by Lightning with a globally unique zone id
    (tmp_path / "outlook.ics").write_text(
        outlook_calendar(
            vevent("ny", T, T + H, tzid="America/New_York").replace(
                "TZID=America/New_York", "TZID=Eastern Standard Time"
            ),
            vevent("tokyo", T, T + H, tzid="Asia/Tokyo", extra="RRULE:FREQ=WEEKLY;COUNT=3").replace(
                "TZID=Asia/Tokyo", "TZID=Tokyo Standard Time"
            ),
            vevent("lightning", T, T + H, tzid="Europe/Berlin").replace(
                "TZID=Europe/Berlin", "TZID=/freeassociation.sourceforge.net/Europe/Berlin"
            ),
        ),
        encoding="utf-8",
    )

    # When the file is read
    source = IcsSource("outlook", path=tmp_path / "outlook.ics", default_zone="Europe/Berlin")
    batch = source.sync(None, T - 2 * H)

    # Then each event knows its IANA zone, at the right instant
    zones = {e.id: e.timezone for e in batch.upserted}
    assert zones["ny"] == "America/New_York", batch.problems
    assert {z for i, z in zones.items() if i.startswith("tokyo/")} == {"Asia/Tokyo"}
    assert zones["lightning"] == "Europe/Berlin"
    assert next(e for e in batch.upserted if e.id == "ny").start == T


@pytest.mark.parametrize("name", ["(UTC-05:00) Eastern Time (US & Canada)", "Customized Time Zone"])
def test_a_zone_exchange_names_freely_is_known_by_its_rules(tmp_path: Path, name: str) -> None:
    # Given an Exchange export whose VTIMEZONE has US Eastern rules under a display name, or none
    quoted = f'"{name}"' if any(c in name for c in ":;,") else name
    event = vevent("ny", T, T + H, tzid="America/New_York").replace("TZID=America/New_York", f"TZID={quoted}")
    (tmp_path / "exchange.ics").write_text(
        calendar(EASTERN.replace("TZID:Eastern Standard Time", f"TZID:{name}"), event), encoding="utf-8"
    )

    # When it is read
    batch = IcsSource("exchange", path=tmp_path / "exchange.ics", default_zone="Europe/Berlin").sync(None, T)

    # Then the event lives in New York, found by when its clocks change (not Havana, whose days match)
    [read] = batch.upserted
    assert (read.timezone, read.start) == ("America/New_York", T), batch.problems


def test_a_lost_deal_in_tokyo_is_thanked_in_tokyo_business_hours(tmp_path: Path) -> None:
    # Given a closing call at 10:00 in Tokyo, written by Outlook, that ended lost
    world = World(tmp_path)
    start = datetime(2026, 12, 2, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    event = vevent("call-1", start, start + H, "Initech terms #closing #lost", tzid="Asia/Tokyo")
    (tmp_path / "cal.ics").write_text(
        outlook_calendar(event.replace("TZID=Asia/Tokyo", "TZID=Tokyo Standard Time")), encoding="utf-8"
    )

    # When a pass runs just after the call
    with freeze_time(start + 2 * H):
        world.tick()

    # Then the thank-you is due a day later, inside Tokyo's working day (11:00 there), not at 18:00
    _, _, due = world.sends()["lost-thank-you:call-1"]
    local = due.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.day, local.hour) == (3, 11), local


def won_with_kickoff(tmp_path: Path, kickoff_title: str) -> World:
    """A closing call written in UTC, won (its introduction due at once), and an event titled
    `kickoff_title` on the following Monday at 10:00 in New York."""
    world = World(tmp_path, extra='[[rules]]\nname = "implementation-intro"\noffset = "0m"\n')
    kickoff = datetime(2026, 12, 7, 10, 0, tzinfo=ZoneInfo("America/New_York"))
    world.write(
        vevent("call-1", T, T + H, "Globex terms #closing #won"),
        vevent("kick-1", kickoff, kickoff + H, kickoff_title, tzid="America/New_York"),
    )
    return world


def test_a_closing_call_in_utc_plans_and_shows_customer_mail_in_the_kickoffs_zone(tmp_path: Path) -> None:
    # Given a closing call written in UTC, won, and the customer's kickoff on Monday in New York
    world = won_with_kickoff(tmp_path, "Globex kickoff #kickoff")

    # When a pass runs at 18:00 in New York (23:00 UTC), after their working day
    with freeze_time(T + 8 * H) as frozen:
        world.tick()
        # Then the introduction is due at 09:00 New York the next morning, not 09:00 Berlin (03:00 there)
        _, _, due = world.sends()["implementation-intro:call-1"]
        assert due == datetime(2026, 12, 3, 9, 0, tzinfo=ZoneInfo("America/New_York"))
        # And when it goes out, it shows the kickoff in New York time
        frozen.move_to(due)
        world.tick()
    intro = world.outbox()["implementation-intro:call-1"]
    text = str(intro.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert "10:00 EST" in text, text
    assert "16:00 CET" not in text


def test_a_kickoff_that_only_edited_tags_make_one_places_the_mail_in_its_zone(tmp_path: Path) -> None:
    # Given a won closing call in UTC, and the customer's kickoff in New York marked with a word that is
    # no tag yet: the introduction is planned at 09:00 Berlin, the company's zone
    world = won_with_kickoff(tmp_path, "Globex #start")
    with freeze_time(T + 8 * H):
        world.tick()
        _, _, due = world.sends()["implementation-intro:call-1"]
        assert due == datetime(2026, 12, 3, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
        # When an admin makes the word a kickoff tag, and the next pass runs (the calendar unchanged)
        config = tmp_path / "followthrough.toml"
        config.write_text(
            config.read_text(encoding="utf-8") + '\n[tags]\nkickoff = ["#kickoff", "#start"]\n', "utf-8"
        )
        world.tick()
        # Then the closing call finds its deal's kickoff, and the introduction moves to 09:00 New York
        _, _, due = world.sends()["implementation-intro:call-1"]
        assert due == datetime(2026, 12, 3, 9, 0, tzinfo=ZoneInfo("America/New_York"))


def test_events_stored_before_calls_were_told_apart_are_filed_and_planned_the_same(tmp_path: Path) -> None:
    # Given a won closing call in UTC and its deal's kickoff in New York, stored by a version of the
    # ledger that did not tell calls apart (schema 5, or an older instance still running)
    world = won_with_kickoff(tmp_path, "Globex kickoff #kickoff")
    with freeze_time(T + 8 * H):
        world.tick()
        engine = world.engine()
        try:
            with engine.ledger.engine.begin() as conn:  # type: ignore[attr-defined]
                conn.exec_driver_sql("UPDATE events SET is_call = NULL")
            assert sorted(engine.ledger.unfiled_events()) == ["call-1", "kick-1"]
            # When a pass runs the introduction is planned as before, in New York's morning
            report = engine.tick(T + 8 * H)
            _, _, due = world.sends()["implementation-intro:call-1"]
            assert due == datetime(2026, 12, 3, 9, 0, tzinfo=ZoneInfo("America/New_York"))
            # Then every event is filed, and nothing was planned again for it
            assert engine.ledger.unfiled_events() == [] and report.replanned == 0
            assert engine.ledger.deal_calls(["globex.com"]) == {"globex.com": ["call-1", "kick-1"]}
        finally:
            engine.close()


def test_a_customer_domain_zone_from_the_config_places_mail_when_events_say_nothing(tmp_path: Path) -> None:
    # Given a lost call in UTC, no kickoff, and the customer's zone in the config
    world = World(tmp_path, extra='[customers."globex.com"]\ntimezone = "America/New_York"\n')
    world.write(vevent("call-1", T, T + H, "Globex terms #closing #lost"))

    # When a pass runs
    with freeze_time(T + 2 * H):
        world.tick()

    # Then the thank-you (due 16:00 UTC the next day = 11:00 New York) stays at 11:00 New York
    _, _, due = world.sends()["lost-thank-you:call-1"]
    assert due.astimezone(ZoneInfo("America/New_York")).hour == 11


def test_business_timezone_is_the_fallback_and_the_events_own_zone_wins(tmp_path: Path) -> None:
    # Given business_timezone Tokyo, one lost call in UTC and one in New York's own zone
    world = World(tmp_path, extra='[schedule]\nbusiness_timezone = "Asia/Tokyo"\n')
    world.write(
        vevent("utc-call", T, T + H, "Globex terms #closing #lost", attendees=(ALICE, DANA)),
        vevent(
            "ny-call",
            T,
            T + H,
            "Initech terms #closing #lost",
            attendees=(ALICE, ("bo@initech.example", "Bo Li")),
            tzid="America/New_York",
        ),
    )

    # When a pass runs
    with freeze_time(T + 2 * H):
        world.tick()

    # Then the UTC call's thank-you waits for 09:00 Tokyo; the New York call's goes at 11:00 New York
    sends = world.sends()
    utc_due = sends["lost-thank-you:utc-call"][2].astimezone(ZoneInfo("Asia/Tokyo"))
    ny_due = sends["lost-thank-you:ny-call"][2].astimezone(ZoneInfo("America/New_York"))
    assert (utc_due.day, utc_due.hour) == (4, 9), utc_due
    assert (ny_due.day, ny_due.hour) == (3, 11), ny_due


def test_when_the_kickoff_goes_the_customer_mail_it_placed_is_planned_again(tmp_path: Path) -> None:
    # Given a won closing call in UTC whose introduction waits for 09:00 at the kickoff's New York
    world = World(tmp_path, extra='[[rules]]\nname = "implementation-intro"\noffset = "0m"\n')
    kickoff = datetime(2026, 12, 7, 10, 0, tzinfo=ZoneInfo("America/New_York"))
    call = vevent("call-1", T, T + H, "Globex terms #closing #won")
    world.write(
        call, vevent("kick-1", kickoff, kickoff + H, "Globex kickoff #kickoff", tzid="America/New_York")
    )
    with freeze_time(T + 8 * H) as frozen:
        world.tick()
        assert world.sends()["implementation-intro:call-1"][2] == datetime(
            2026, 12, 3, 9, 0, tzinfo=ZoneInfo("America/New_York")
        )

        # When the kickoff is deleted before the introduction goes out
        frozen.tick(timedelta(minutes=5))
        world.write(call)
        world.tick()

    # Then nothing says where the customer is any more: it waits for 09:00 in the company's zone
    _, _, due = world.sends()["implementation-intro:call-1"]
    assert due == datetime(2026, 12, 3, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
