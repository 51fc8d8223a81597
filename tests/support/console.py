"""The console on a real uvicorn server in this process, over the demo's ledger in a folder of its own.

`demo_folder` sets up the bundled demo (its events moved around now) with a copy of the templates to
edit, and runs one pass; `serving` starts the console on a free port of 127.0.0.1 and stops it after.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daemon import clock
from daemon.config import Settings, load
from daemon.demo import prepare
from daemon.engine import Engine
from daemon.web.server import ConsoleServer
from tests.support import TEMPLATES_DIR

DEADLINE = 20.0  # seconds a page may take to show a change: generous, for slow CI machines


def demo_folder(root: Path) -> Path:
    """The demo in `root` with its own copy of the templates (`root/templates`), after one pass;
    returns the config's path. Its ledger holds sent emails and pending ones, today and later."""
    now = clock.now()
    config = prepare(root, now)
    shutil.copytree(TEMPLATES_DIR, root / "templates")
    with config.open("a", encoding="utf-8") as file:
        file.write('\n[templates]\ndir = "templates"\n')
    engine = Engine(load(config))
    try:
        engine.tick(now)
    finally:
        engine.close()
    return config


@contextmanager
def serving(settings: Settings, listen: str = "127.0.0.1:0") -> Iterator[ConsoleServer]:
    """The console for `settings`, answering at `.url` until the block ends."""
    console = ConsoleServer(settings, listen).start()
    try:
        yield console
    finally:
        console.stop()


BROKEN = "{{ no_such_name.at_all }}"


def template_of(settings: Settings, rule: str) -> Path:
    """The file a rule renders from in the config's template folder (`<rule>.md` or `<rule>.jinja`)."""
    folder = settings.resolve(settings.templates.dir)
    (found,) = [p for p in folder.iterdir() if p.is_file() and p.stem == rule]
    return found


def break_template(path: Path) -> int:
    """Save the template with an undefined name in its body; the line it is on (1-based)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".jinja":
        at = next(i for i, line in enumerate(lines) if line.strip() == "{% block text %}") + 1
    else:  # after the front matter's closing ---, and the body's first line
        at = [i for i, line in enumerate(lines) if line.strip() == "---"][1] + 2
    lines.insert(at, BROKEN)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settled = time.time() - 10  # saved a while ago: a running daemon takes only files that have settled
    os.utime(path, (settled, settled))
    return at + 1
