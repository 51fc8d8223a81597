"""The links in emails against a real uvicorn server on loopback, over the demo's real ledger.

Given the demo after one pass, served with `[web] base_url` and its secret, when the links are opened as
mail scanners, reps, customers and mail clients open them, then only a POST acts, and acts once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from freezegun import freeze_time

from daemon import clock
from daemon.config import Settings, load
from daemon.ledger import Ledger, open_ledger
from daemon.model import Outcome, Status
from tests.support.cli import run_cli
from tests.support.console import demo_folder, serving

BASE = "https://followthrough.acme.example"
SECRET = "0123456789abcdef0123456789abcdef"
ADMIN = "an-admin-token-for-the-console"
UMBRELLA = "demo-umbrella-closing@acme.example"  # a closing call in the past, no outcome yet
GAVIN = "gavin@hooli.example"  # the lost deal's customer: a check-in to him is pending


@pytest.fixture
def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[Settings, httpx.Client]]:
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_SECRET", SECRET)
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN", ADMIN)
    config = demo_folder(tmp_path)
    with config.open("a", encoding="utf-8") as file:
        file.write(f'\n[web]\nlisten = "127.0.0.1:0"\nbase_url = "{BASE}"\n')
    settings = load(config)
    caplog.set_level(logging.DEBUG)  # the access log on: the tokens must stay out of it
    with serving(settings) as console, httpx.Client(base_url=console.url, timeout=30) as http:
        yield settings, http


def path(url: str) -> str:
    assert url.startswith(BASE + "/")
    return url[len(BASE) :]


def ledger(settings: Settings) -> Ledger:
    return open_ledger(settings.store_url, settings.store.busy_timeout)


def outcome_link(settings: Settings, outcome: Outcome, event: str = UMBRELLA) -> str:
    links = settings.links()
    assert links is not None
    return path(links.outcome_url(event, outcome, "outcome-nudge"))


def test_opening_an_outcome_link_changes_nothing_and_its_button_records_once(
    served: tuple[Settings, httpx.Client], caplog: pytest.LogCaptureFixture
) -> None:
    settings, http = served
    won = outcome_link(settings, Outcome.WON)
    # When a mail scanner opens the link (GET and HEAD)
    page = http.get(won)
    head = http.head(won)
    # Then it sees a page with one button, and nothing is recorded
    assert page.status_code == 200 and head.status_code == 200 and head.content == b""
    assert "Record this call as won?" in page.text and "Umbrella" in page.text
    assert page.text.count("<form") == 1 and 'method="post"' in page.text and "action=" not in page.text
    with ledger(settings) as book:
        assert book.outcome(UMBRELLA) is None
    # When the rep presses the button (a POST to the same URL, no other field)
    done = http.post(won)
    # Then the outcome is recorded as `followthrough outcome` would, with which link, and the page says
    # what happens next: the introduction and the brief
    assert done.status_code == 200, done.text
    assert (
        "Recorded: won" in done.text and "implementation-intro" in done.text and "handoff-brief" in done.text
    )
    with ledger(settings) as book:
        record = book.outcome(UMBRELLA)
        assert record is not None and (record.outcome, record.source) == (Outcome.WON, "link")
        assert [(e.outcome, e.detail) for e in book.outcome_log(UMBRELLA)] == [
            (Outcome.WON, "the Won link in outcome-nudge")
        ]
        planned = {s.rule for s in book.sends([Status.PLANNED], event_id=UMBRELLA)}
        assert {"implementation-intro", "handoff-brief"} <= planned
    # and `history --event` shows it, with the link it came from
    around = run_cli("history", "--event", UMBRELLA, config=settings.resolve(Path("followthrough.toml")))
    assert around.code == 0, around.output
    assert "outcome won (the Won link in outcome-nudge)" in around.stdout
    assert (
        json.loads(
            run_cli(
                "history", "--event", UMBRELLA, "--json", config=settings.resolve(Path("followthrough.toml"))
            ).stdout
        )["outcomes"][0]["detail"]
        == "the Won link in outcome-nudge"
    )
    # When it is pressed again, it says so, and records nothing more
    again = http.post(won)
    assert again.status_code == 200 and "Already recorded: won" in again.text
    with ledger(settings) as book:
        assert len(book.outcome_log(UMBRELLA)) == 1
    # When the Lost link is opened after that, it asks to confirm the change, then changes it
    lost = outcome_link(settings, Outcome.LOST)
    asked = http.get(lost)
    assert "It is recorded as won now" in asked.text and "Change it to lost" in asked.text
    changed = http.post(lost)
    assert "Recorded: lost" in changed.text and "lost-thank-you" in changed.text
    with ledger(settings) as book:
        record = book.outcome(UMBRELLA)
        assert record is not None and record.outcome is Outcome.LOST
        assert not {"implementation-intro", "handoff-brief"} & {
            s.rule for s in book.sends([Status.PLANNED], event_id=UMBRELLA)
        }
    # And no token is in followthrough's logs or the server's (the test's own HTTP client logs them)
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert "POST /outcome/… HTTP/1.1" in logged
    for url in (won, lost):
        assert url.rsplit("/", 1)[1] not in logged
    assert SECRET not in logged and ADMIN not in logged


def test_forged_changed_expired_and_misused_tokens_change_nothing(
    served: tuple[Settings, httpx.Client],
) -> None:
    settings, http = served
    links = settings.links()
    assert links is not None
    good = outcome_link(settings, Outcome.WON)
    with freeze_time(clock.now() - timedelta(days=31)):
        expired = outcome_link(settings, Outcome.WON)
    unsubscribe = path(links.unsubscribe_url([GAVIN]))
    cases = {
        good[:-8] + "AAAAAAAA": 400,  # changed
        good[:60]: 400,  # cut short
        "/outcome/not-a-token-at-all": 400,  # forged
        expired: 410,
        "/outcome/" + unsubscribe.rsplit("/", 1)[1]: 400,  # an unsubscribe token cannot record an outcome
        "/unsubscribe/" + good.rsplit("/", 1)[1]: 400,  # an outcome token cannot unsubscribe
    }
    for url, status in cases.items():
        for method in ("GET", "POST"):
            answer = http.request(method, url)
            assert answer.status_code == status, (method, url, answer.status_code)
            assert "This link" in answer.text
    with ledger(settings) as book:
        assert book.outcome(UMBRELLA) is None and book.outcome_log(UMBRELLA) == []
        assert book.suppressed() == []


def test_one_click_unsubscribe_as_gmail_sends_it_stops_the_pending_mail_at_once(
    served: tuple[Settings, httpx.Client],
) -> None:
    settings, http = served
    links = settings.links()
    assert links is not None
    url = path(links.unsubscribe_url([GAVIN]))
    with ledger(settings) as book:
        pending = [s for s in book.sends([Status.PLANNED]) if GAVIN in {p.email for p in s.to}]
    assert pending, "the demo should have a check-in pending to the lost deal's customer"
    # When the link is only opened, nothing changes
    shown = http.get(url)
    assert shown.status_code == 200 and "Stop these emails?" in shown.text and GAVIN in shown.text
    with ledger(settings) as book:
        assert book.suppressed() == []
    # When the mail client POSTs the one-click body, with no cookie and no login
    answer = httpx.post(
        str(http.base_url).rstrip("/") + url,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
        timeout=30,
    )
    # Then it answers 200 (no redirect), the address is suppressed with when and how, and the pending
    # mail to it is stopped now, not at its due time
    assert answer.status_code == 200, answer.text
    with ledger(settings) as book:
        [(address, at, how)] = book.suppressed()
        assert address == GAVIN and "one click" in (how or "")
        assert abs(at - clock.now()) < timedelta(minutes=5)
        for send in pending:
            stopped = book.send(send.key)
            assert stopped is not None and stopped.status is Status.STOPPED, send.key
    # and a second click says the same, changing nothing
    assert http.post(url).status_code == 200


def test_the_console_stays_behind_its_token_while_the_links_are_public(
    served: tuple[Settings, httpx.Client],
) -> None:
    settings, http = served
    assert http.get("/api/plan").status_code == 401
    assert http.get("/", follow_redirects=False).status_code == 303
    assert http.get("/api/plan", headers={"authorization": f"Bearer {ADMIN}"}).status_code == 200
    assert http.get(outcome_link(settings, Outcome.WON)).status_code == 200
