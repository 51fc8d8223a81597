"""A Google calendar end to end: `followthrough tick` as a subprocess, configured as a user would,
reading a local fake of the Calendar API with an OAuth token refreshed at the token's own token_uri."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.cli import Result, run_cli
from tests.support.google_fake import FakeGoogle, when

REP = "alice@acme.example"


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        yield fake


def tick(config: Path) -> Result:
    return run_cli("tick", config=config)


def test_a_closing_call_tagged_by_a_crm_in_google_calendar_gets_its_prep(
    google: FakeGoogle, tmp_path: Path
) -> None:
    # Given a rep's Google calendar with a call 23 hours away, tagged only by a private extended
    # property (as a CRM would), and an OAuth token for the rep
    start = datetime.now(UTC) + timedelta(hours=23)
    google.put_event(
        REP,
        {
            "summary": "Globex: final terms",
            "start": when(start),
            "end": when(start + timedelta(hours=1)),
            "organizer": {"email": REP, "displayName": "Alice Moreno"},
            "attendees": [{"email": REP}, {"email": "dana@globex.com", "displayName": "Dana Fox"}],
            "extendedProperties": {"private": {"followthrough.kind": "closing"}},
        },
    )
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / f"{REP}.json").write_text(json.dumps(google.authorized_user(REP)))
    config = tmp_path / "followthrough.toml"
    config.write_text(
        '[company]\nname = "Acme"\ndomains = ["acme.example"]\n'
        f'[[calendars]]\nsource = "google"\naccount = "{REP}"\n'
        '[mail]\ntransport = "outbox"\nfrom = "Followthrough <ft@acme.example>"\n'
        f'[google]\ntoken_dir = "tokens"\napi_endpoint = "{google.url}"\n'
    )
    # When a pass runs, then the prep is written for the rep
    first = tick(config)
    assert first.code == 0, first.stdout + first.stderr
    assert "1 new" in first.stdout
    outbox = list((tmp_path / "outbox").glob("closing-prep*.eml"))
    assert len(outbox) == 1
    assert "To: Alice Moreno <alice@acme.example>" in outbox[0].read_text()
    # And a second pass with nothing changed costs one list request and sends nothing more
    google.clear_log()
    second = tick(config)
    assert second.code == 0, second.stderr
    assert len(google.event_lists()) == 1
    assert "Sent 0 email(s)" in second.stdout


def test_a_revoked_grant_is_reported_naming_the_account_and_other_calendars_go_on(
    google: FakeGoogle, tmp_path: Path
) -> None:
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / f"{REP}.json").write_text(json.dumps(google.authorized_user(REP)))
    google.revoke(REP)
    start = datetime.now(UTC) + timedelta(hours=23)
    (tmp_path / "cal.ics").write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:ics-1\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}\r\n"
        "SUMMARY:Initech #closing\r\nORGANIZER:mailto:bob@acme.example\r\n"
        "ATTENDEE:mailto:priya@initech.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    config = tmp_path / "followthrough.toml"
    config.write_text(
        '[company]\nname = "Acme"\ndomains = ["acme.example"]\n'
        f'[[calendars]]\nsource = "google"\naccount = "{REP}"\n'
        '[[calendars]]\nsource = "ics"\npath = "cal.ics"\nowner = "bob@acme.example"\n'
        '[mail]\ntransport = "outbox"\nfrom = "ft@acme.example"\n'
        f'[google]\ntoken_dir = "tokens"\napi_endpoint = "{google.url}"\n'
    )
    result = tick(config)
    assert result.code == 1
    assert f"calendar {REP}: FAILED" in result.stdout and REP in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert len(list((tmp_path / "outbox").glob("closing-prep*.eml"))) == 1  # the ICS calendar went on
