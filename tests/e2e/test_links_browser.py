"""The outcome link in a real headless browser (Debian's chromium, driven by Playwright; `-m browser`).

Given the demo served with `[web] base_url`, when a rep opens the Won link of an email and presses the one
button, then the outcome is recorded and the page says what happens next; opening alone records nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config import load
from daemon.ledger import open_ledger
from daemon.model import Outcome
from tests.support.console import DEADLINE, demo_folder, serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BASE = "https://followthrough.acme.example"
UMBRELLA = "demo-umbrella-closing@acme.example"

if CHROMIUM is None:
    pytest.skip(
        "Debian's chromium is not installed (`apt-get install chromium`; `./dev test` does it as root)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, expect, sync_playwright  # noqa: E402


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


def test_a_rep_clicks_through_the_confirm_page_of_a_won_link(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_SECRET", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN", "an-admin-token-for-the-console")
    config = demo_folder(tmp_path)
    with config.open("a", encoding="utf-8") as file:
        file.write(f'\n[web]\nlisten = "127.0.0.1:0"\nbase_url = "{BASE}"\n')
    settings = load(config)
    links = settings.links()
    assert links is not None
    url = links.outcome_url(UMBRELLA, Outcome.WON, "outcome-nudge")
    with serving(settings) as console:
        page = browser.new_page()
        # When the rep opens the link (the proxy's address stands in for the public one)
        page.goto(console.url.rstrip("/") + url[len(BASE) :])
        # Then the page asks, and nothing is recorded yet
        expect(page.locator("h1")).to_have_text("Record this call as won?", timeout=DEADLINE * 1000)
        expect(page.locator("dl.facts")).to_contain_text("Umbrella")
        with open_ledger(settings.store_url) as ledger:
            assert ledger.outcome(UMBRELLA) is None
        # When they press the one button
        page.get_by_role("button", name="Record it as won").click()
        # Then it is recorded, and the page says what happens next
        expect(page.locator("h1")).to_have_text("Recorded: won", timeout=DEADLINE * 1000)
        expect(page.locator("ul.next")).to_contain_text("implementation-intro")
        with open_ledger(settings.store_url) as ledger:
            record = ledger.outcome(UMBRELLA)
            assert record is not None and record.outcome is Outcome.WON and record.source == "link"
        # When the page is reloaded (the browser offers to send the form again), it was recorded once
        page.goto(console.url.rstrip("/") + url[len(BASE) :])
        expect(page.locator("main")).to_contain_text("already recorded as won")
        page.close()
