"""The README's pictures of the console: the schedule and a preview, taken from the demo's data.

Run from the project: `.venv/bin/python docs/screenshots.py` (writes docs/console-*.png; `--out DIR`
elsewhere). Needs Debian's chromium; the demo is set up in a temporary folder, around the current hour.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's daemon, whatever the venv was installed from

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from daemon import clock  # noqa: E402
from daemon.config import load  # noqa: E402
from daemon.demo import prepare  # noqa: E402
from daemon.engine import Engine  # noqa: E402
from daemon.web.server import ConsoleServer  # noqa: E402

WIDTH, HEIGHT = 1280, 860
PREVIEW = "templates/implementation-intro?event=demo-initech-closing%40acme.example"


def take(out: Path, chromium: str) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="followthrough-screens-") as folder:
        now = clock.now()
        config = prepare(Path(folder), now)
        engine = Engine(load(config))
        try:
            engine.tick(now)
        finally:
            engine.close()
        console = ConsoleServer(load(config), "127.0.0.1:0").start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium)
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1)
                page.goto(console.url + "?days=all")
                expect(page.locator("table.sends").first).to_be_visible(timeout=20_000)
                schedule = out / "console-schedule.png"
                page.screenshot(path=str(schedule), full_page=True)
                page.set_viewport_size({"width": WIDTH, "height": 1020})
                page.goto(console.url + PREVIEW)
                expect(page.locator('[data-field="subject"]')).not_to_be_empty(timeout=20_000)
                expect(page.frame_locator("iframe[data-html]").locator("body")).not_to_be_empty(
                    timeout=20_000
                )
                preview = out / "console-preview.png"
                page.screenshot(path=str(preview))
                browser.close()
        finally:
            console.stop()
    return [schedule, preview]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where to write the PNG files")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (Debian: apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in take(args.out, chromium):
        print(path)


if __name__ == "__main__":
    main()
