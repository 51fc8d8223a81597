"""`followthrough doctor` for a Microsoft 365 set-up, as a subprocess against the local Graph fake: the
app's sign-in, each mailbox's calendar (Calendars.Read), Mail.Send, and each sender's Sent Items (the
never-send-twice lookup); a missing permission fails its line with the fix. Nothing is ever sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.test_doctor import Line, lines
from tests.support.cli import Result, clean_env, run_cli
from tests.support.config import ALL_HOURS
from tests.support.graph_fake import CLIENT_SECRET, FakeGraph, graph_time

REP = "alice@acme.example"
SERVICE = "ft@acme.example"


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[FakeGraph]:
    """Alice's mailbox with a closing call tomorrow, in an app registration that has every permission."""
    with FakeGraph(directory=tmp_path / "ca") as fake:
        start = datetime.now(UTC) + timedelta(days=1)
        fake.put_event(
            REP,
            {
                "iCalUId": "globex-terms@acme.example",
                "subject": "Globex: final terms",
                "categories": ["Closing"],
                "start": graph_time(start),
                "end": graph_time(start + timedelta(hours=1)),
                "organizer": {"emailAddress": {"address": REP, "name": "Alice Moreno"}},
                "attendees": [{"type": "required", "emailAddress": {"address": "dana@globex.com"}}],
            },
        )
        yield fake


def doctor(graph: FakeGraph, root: Path) -> Result:
    config = root / "followthrough.toml"
    config.write_text(
        '[company]\nname = "Acme"\ndomains = ["acme.example"]\n'
        f'[[calendars]]\nsource = "microsoft"\nmailbox = "{REP}"\n'
        f'[mail]\ntransport = "microsoft"\nfrom = "Followthrough <{SERVICE}>"\n'
        f'[store]\nurl = "sqlite:///{root / "followthrough.db"}"\n'
        f"[schedule]\n{ALL_HOURS}" + graph.toml(),
        encoding="utf-8",
    )
    return run_cli(
        "doctor", config=config, env=clean_env(FOLLOWTHROUGH_MICROSOFT_CLIENT_SECRET=CLIENT_SECRET)
    )


def found(result: Result, name: str, subject: str = "") -> Line:
    [line] = [entry for entry in lines(result) if entry.name == name and subject in entry.text]
    return line


def test_an_app_with_its_three_permissions_passes_and_nothing_is_sent(
    graph: FakeGraph, tmp_path: Path
) -> None:
    # When the doctor runs against an app with Calendars.Read, Mail.Send and Mail.ReadBasic.All
    result = doctor(graph, tmp_path)

    # Then it exits 0: the calendar was read, the app signed in, and both senders' mailboxes reached
    assert result.code == 0, result.output
    calendar = found(result, f"calendar {REP}")
    assert calendar.verdict == "ok" and "1 event in the window (1 closing or kickoff call" in calendar.text
    assert found(result, "mail", "token acquired; Mail.Send granted").verdict == "ok"
    for sender in (SERVICE, REP):
        mailbox = found(result, "mail", f"microsoft {sender}:")
        assert mailbox.verdict == "ok" and "Sent Items readable" in mailbox.text
    # And nothing was sent, and no secret printed
    assert graph.sends() == [] and CLIENT_SECRET not in result.output


def test_missing_permissions_fail_their_lines_naming_the_fix(graph: FakeGraph, tmp_path: Path) -> None:
    # Given an app consented Mail.Send only: no Calendars.Read, no Mail.ReadBasic.All
    graph.roles = {"Mail.Send"}

    # When the doctor runs
    result = doctor(graph, tmp_path)

    # Then the calendar fails naming Calendars.Read, each sender's mailbox names Mail.ReadBasic.All
    assert result.code == 1, result.output
    calendar = found(result, f"calendar {REP}")
    assert calendar.verdict == "FAIL" and "ErrorAccessDenied" in calendar.text
    assert (
        "grant the app Calendars.Read (Entra ID), or the Exchange RBAC role Application Calendars.Read"
        in (calendar.text)
    )
    for sender in (SERVICE, REP):
        mailbox = found(result, "mail", f"microsoft {sender}:")
        assert mailbox.verdict == "FAIL"
        assert "grant the app Mail.ReadBasic.All (Entra ID), or the Exchange RBAC role Application " in (
            mailbox.text
        )
    # And the app's sign-in and Mail.Send are fine, the other checks still ran, and nothing was sent
    assert found(result, "mail", "token acquired").verdict == "ok"
    assert {line.name for line in lines(result)} >= {"config", "templates", "ledger", "time zones"}
    assert graph.sends() == []


def test_an_app_granted_through_exchange_rbac_only_passes_with_mail_send_left_to_check(
    graph: FakeGraph, tmp_path: Path
) -> None:
    # Given the permissions granted only as Exchange RBAC role assignments: the token carries none
    graph.roles, graph.rbac_roles = set(), {"Calendars.Read", "Mail.Send", "Mail.ReadBasic"}

    # When the doctor runs
    result = doctor(graph, tmp_path)

    # Then it passes: the calendar and the mailboxes are reached; Mail.Send, in no token, is a warning
    assert result.code == 0, result.output
    assert found(result, f"calendar {REP}").verdict == "ok"
    app = found(result, "mail", "token acquired")
    assert app.verdict == "warn" and "Application Mail.Send" in app.text
    assert all(found(result, "mail", f"microsoft {s}:").verdict == "ok" for s in (SERVICE, REP))
