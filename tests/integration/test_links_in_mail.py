"""The links in the emails themselves: customer mail's one-click List-Unsubscribe, the rep's Won and Lost.

Given `[web] base_url` and its secret, when a pass sends, then the headers and parts carry links that the
server reads back; without base_url, a mailto whose subject names no deal.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time

from daemon.config import load
from daemon.model import Outcome
from tests.support.ics import vevent
from tests.support.world import World

T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
BASE = "https://followthrough.acme.example"
WEB = f'[web]\nbase_url = "{BASE}/"\n'


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FOLLOWTHROUGH_WEB_SECRET", "a-new-key-of-32-characters-long!, an-older-key-still-accepted"
    )


def lost_deal(world: World) -> None:
    world.write(
        vevent(
            "call-1",
            T - timedelta(days=2),
            T - timedelta(days=2) + timedelta(hours=1),
            "Globex terms #closing #lost",
        )
    )


def test_customer_mail_carries_a_one_click_unsubscribe_that_the_server_reads(
    tmp_path: Path, secrets: None
) -> None:
    world = World(tmp_path, extra=WEB)
    lost_deal(world)
    with freeze_time(T):
        world.tick()
    message = world.outbox()["lost-thank-you:call-1"]
    header = str(message["List-Unsubscribe"])
    assert re.fullmatch(rf"<{re.escape(BASE)}/unsubscribe/[A-Za-z0-9_=-]+>", header), header
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "mailto:" not in header and "lost" not in header.lower() and "globex" not in header.lower()
    links = load(tmp_path / "followthrough.toml").links()
    assert links is not None
    with freeze_time(T):
        assert links.read_unsubscribe(header.strip("<>").rsplit("/", 1)[1]) == sorted(
            p.addr_spec for p in message["To"].addresses
        )


def test_without_base_url_the_unsubscribe_is_a_mailto_that_names_no_deal(tmp_path: Path) -> None:
    world = World(tmp_path)
    lost_deal(world)
    with freeze_time(T):
        world.tick()
    header = str(world.outbox()["lost-thank-you:call-1"]["List-Unsubscribe"])
    assert header == "<mailto:ft@acme.example?subject=unsubscribe>"


def test_a_base_url_without_its_secret_is_a_config_error(tmp_path: Path) -> None:
    from daemon.errors import ConfigError

    World(tmp_path, extra=WEB)
    with pytest.raises(ConfigError, match="FOLLOWTHROUGH_WEB_SECRET"):
        load(tmp_path / "followthrough.toml").links()


def test_the_reps_mail_about_a_closing_call_carries_won_and_lost_links_each_on_its_own_line(
    tmp_path: Path, secrets: None
) -> None:
    world = World(tmp_path, extra=WEB)
    world.write(vevent("call-1", T, T + timedelta(hours=1)))
    with freeze_time(T - timedelta(hours=24)):
        world.tick()
    message = world.outbox()["closing-prep:call-1"]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    urls = re.findall(rf"{re.escape(BASE)}/outcome/\S+", text)
    lines = [line for line in text.splitlines() if f"{BASE}/outcome/" in line]
    # The contract: the only such URLs, each on its own line next to the word Won or Lost
    assert len(urls) == 2 and len(lines) == 2, text
    assert re.search(r"\bWon\b", lines[0]) and re.search(r"\bLost\b", lines[1]), lines
    links = load(tmp_path / "followthrough.toml").links()
    assert links is not None
    with freeze_time(T):
        read = [links.read_outcome(u.strip("<>").rsplit("/", 1)[1]) for u in urls]
    assert [(r.event_id, r.outcome, r.rule) for r in read] == [
        ("call-1", Outcome.WON, "closing-prep"),
        ("call-1", Outcome.LOST, "closing-prep"),
    ]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert html.count(f'href="{BASE}/outcome/') == 2
