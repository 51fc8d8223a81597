"""The console in a real headless browser: Debian's chromium, driven by Playwright (`-m browser`).

Given the demo's ledger and a copy of its templates, the schedule shows the real planned sends, a
preview renders, a broken template saved to disk shows its file and line within seconds, and the fix
brings the preview back. Playwright's own browser download cannot work here: the machine's chromium
is used through `executable_path`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config import load
from tests.support import ROOT
from tests.support.console import DEADLINE, break_template, demo_folder, serving, template_of

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_MS = DEADLINE * 1000

if CHROMIUM is None:
    pytest.skip(
        "Debian's chromium is not installed (`apt-get install chromium`; `./dev test` does it as root)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    # Anything the page's Content-Security-Policy blocks, and any script error, is reported here:
    # there must be none. (A 422 from the preview API, on the other hand, is the broken template.)
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    opened.on("pageerror", lambda error: problems.append(str(error)))

    opened.on("console", on_console)
    yield opened
    context.close()
    assert problems == [], problems


def test_schedule_preview_and_a_broken_template_fixed_live(page: Page, tmp_path: Path) -> None:
    # Given the demo after one pass, its console running
    settings = load(demo_folder(tmp_path))
    with serving(settings) as console:
        # When the schedule is opened, then it shows the real planned sends, grouped by day
        page.goto(console.url)
        expect(page.locator("h1")).to_have_text("Schedule")
        pending = page.locator("table.sends tr.pending")
        expect(pending.first).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("section.day h2").first).to_contain_text("Today")
        expect(page.locator("table.sends")).not_to_have_count(0)
        closing_final = page.locator("tr", has=page.locator("td.rule", has_text="closing-final"))
        expect(closing_final.locator(".pill")).to_have_text("pending")

        # When its preview is one click away, then the email renders: headers, HTML and text
        closing_final.get_by_role("link", name="Preview").click()
        expect(page.locator("h1")).to_have_text("closing-final")
        subject = page.locator('[data-field="subject"]')
        expect(subject).to_contain_text("Final check", timeout=WAIT_MS)
        expect(page.locator('[data-field="to"]')).to_contain_text("alice@acme.example")
        frame = page.locator("iframe[data-html]")
        assert frame.get_attribute("sandbox") == ""  # no scripts, no same origin
        html = page.frame_locator("iframe[data-html]").locator("body")
        expect(html).to_contain_text("Globex", timeout=WAIT_MS)
        expect(page.locator("[data-text]")).to_contain_text("Globex")
        expect(page.locator(".live")).to_contain_text("Live")

        # When a test is sent to a colleague from the page, then it says so, and the history shows it
        page.locator("[data-test-to]").fill("bob@acme.example")
        page.get_by_role("button", name="Send a test").click()
        result = page.locator("[data-test-result]")
        expect(result).to_contain_text("Sent to bob@acme.example", timeout=WAIT_MS)
        page.goto(console.url + "history")
        expect(page.locator("tr", has=page.locator(".pill.test")).first).to_contain_text("closing-final")
        page.go_back()
        expect(subject).to_contain_text("Final check", timeout=WAIT_MS)

        # When the template is saved broken
        template = template_of(settings, "closing-final")
        good = template.read_text(encoding="utf-8")
        line = break_template(template)
        # Then within seconds the page shows the error with its file and line, and no email
        errors = page.locator("[data-errors]")
        expect(errors).to_be_visible(timeout=WAIT_MS)
        expect(errors).to_contain_text(f"{template.name}, line {line}:")
        expect(errors).to_contain_text("no_such_name")
        expect(page.locator("[data-email]")).to_be_hidden()

        # When it is fixed, then the preview comes back
        template.write_text(good, encoding="utf-8")
        expect(errors).to_be_hidden(timeout=WAIT_MS)
        expect(subject).to_contain_text("Final check", timeout=WAIT_MS)


def test_event_text_is_shown_as_text(page: Page, tmp_path: Path) -> None:
    # Given a planned send whose event title carries markup
    config = demo_folder(tmp_path)
    calendar = tmp_path / "calendar.ics"
    calendar.write_text(
        calendar.read_text(encoding="utf-8").replace("Globex", "Globex <img src=x onerror=alert(1)>"),
        encoding="utf-8",
    )
    from daemon import clock
    from daemon.engine import Engine

    engine = Engine(load(config))
    try:
        engine.tick(clock.now())
    finally:
        engine.close()
    with serving(load(config)) as console:
        # When the schedule shows it, then the title is text: no element made of it
        page.goto(console.url)
        expect(page.locator("td.subject", has_text="<img src=x").first).to_be_visible(timeout=WAIT_MS)
        assert page.locator("main img").count() == 0


def test_the_screenshot_script_writes_both_pictures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "docs/screenshots.py", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("console-schedule.png", "console-preview.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
