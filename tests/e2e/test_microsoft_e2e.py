"""Microsoft 365 end to end: `followthrough tick` as a subprocess, configured as a user would, reading an
Outlook calendar and sending through Graph, both a local HTTPS fake reached through MSAL and httpx."""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.cli import clean_env, run_cli
from tests.support.config import ALL_HOURS
from tests.support.graph_fake import CLIENT_SECRET, FakeGraph, graph_time

REP = "alice@acme.example"
SERVICE = "ft@acme.example"


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[FakeGraph]:
    with FakeGraph(directory=tmp_path / "ca") as fake:
        yield fake


def sent(graph: FakeGraph, mailbox: str) -> list[EmailMessage]:
    found = []
    for post in graph.sends():
        if post.status == 202 and post.path.endswith(f"/users/{mailbox}/sendMail"):
            parsed = email.message_from_bytes(base64.b64decode(post.body), policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
    return found


def test_a_won_deal_seen_in_outlook_sends_its_introduction_from_the_reps_mailbox(
    graph: FakeGraph, tmp_path: Path
) -> None:
    # Given a closing call in the rep's Outlook calendar that ended 2 hours ago, labelled with the
    # categories "Closing" and "Won" (no tag in its text), and an app registration whose secret is in
    # the environment
    now = datetime.now(UTC)
    graph.put_event(
        REP,
        {
            "iCalUId": "globex-terms@acme.example",
            "subject": "Globex: final terms",
            "start": graph_time(now - timedelta(hours=3)),
            "end": graph_time(now - timedelta(hours=2)),
            "originalStartTimeZone": "W. Europe Standard Time",
            "categories": ["Closing", "Won"],
            "organizer": {"emailAddress": {"address": REP, "name": "Alice Moreno"}},
            "attendees": [
                {"type": "required", "emailAddress": {"address": REP, "name": "Alice Moreno"}},
                {"type": "required", "emailAddress": {"address": "dana@globex.com", "name": "Dana Fox"}},
            ],
        },
    )
    config = tmp_path / "followthrough.toml"
    config.write_text(
        '[company]\nname = "Acme"\ndomains = ["acme.example"]\n'
        f'[[calendars]]\nsource = "microsoft"\nmailbox = "{REP}"\n'
        f'[mail]\ntransport = "microsoft"\nfrom = "Followthrough <{SERVICE}>"\n'
        '[team]\nimplementation = ["Ivy Chen <ivy@acme.example>"]\n'
        f"[schedule]\n{ALL_HOURS}"
        '[[rules]]\nname = "implementation-intro"\noffset = "0m"\n' + graph.toml()
    )
    env = clean_env(FOLLOWTHROUGH_MICROSOFT_CLIENT_SECRET=CLIENT_SECRET)

    # When a pass runs
    first = run_cli("tick", config=config, env=env)

    # Then the customer's introduction went from the rep's own mailbox, To the customer, Cc implementation
    assert first.code == 0, first.output
    [intro] = sent(graph, REP)
    assert [a.addr_spec for a in intro["To"].addresses] == ["dana@globex.com"]
    assert [a.addr_spec for a in intro["Cc"].addresses] == ["ivy@acme.example"]
    assert [a.addr_spec for a in intro["From"].addresses] == [REP]
    # And the internal handoff brief went from the service sender's mailbox
    assert [m["To"].addresses[0].addr_spec for m in sent(graph, SERVICE)] == ["ivy@acme.example"]

    # When a second pass runs with nothing changed, then it costs one delta request and sends nothing
    graph.clear_log()
    second = run_cli("tick", config=config, env=env)
    assert second.code == 0, second.output
    assert len(graph.delta_calls()) == 1
    assert graph.sends() == []


def test_no_secret_is_a_one_line_config_error(graph: FakeGraph, tmp_path: Path) -> None:
    config = tmp_path / "followthrough.toml"
    config.write_text(
        '[company]\nname = "Acme"\ndomains = ["acme.example"]\n'
        f'[[calendars]]\nsource = "microsoft"\nmailbox = "{REP}"\n'
        f'[mail]\ntransport = "outbox"\nfrom = "{SERVICE}"\n' + graph.toml()
    )
    result = run_cli("tick", config=config, env=clean_env())
    assert result.code != 0
    assert "FOLLOWTHROUGH_MICROSOFT_CLIENT_SECRET" in result.output
    assert "Traceback" not in result.output
