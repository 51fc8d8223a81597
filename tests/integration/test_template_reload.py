"""Hot reload under a running daemon: a broken edit is refused, the due send goes out on the last good
version, `plan` says so, and the fix is taken at the next poll."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time

from daemon.config import load
from daemon.engine import Engine
from daemon.ledger import open_ledger
from daemon.operations import template_warnings
from daemon.scheduler import Daemon
from tests.integration.test_scheduler import next_poll, next_wake, wait_for
from tests.support import TEMPLATES_DIR
from tests.support.ics import vevent
from tests.support.world import World

T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)

GOOD = """---
subject: Prep for {{ event.title }}
---
Hi {{ rep.first_name }},

Version one: the good one.
"""
BROKEN = GOOD.replace("Version one: the good one.", "Version two: {{ event.notse }}")
FIXED = GOOD.replace("Version one", "Version three")


def warnings(world: World) -> list[str]:
    settings = load(world.root / "followthrough.toml")
    with open_ledger(settings.store_url, settings.store.busy_timeout) as ledger:
        return template_warnings(ledger)


def test_a_broken_edit_under_a_running_daemon_is_refused_and_the_send_goes_out_on_the_last_good_version(
    tmp_path: Path,
) -> None:
    # Given a daemon running on a copy of the templates, whose closing-prep is our own Markdown file,
    shutil.copytree(TEMPLATES_DIR, tmp_path / "templates")
    for old in (tmp_path / "templates").glob("closing-prep.*"):
        old.unlink()
    prep = tmp_path / "templates" / "closing-prep.md"
    prep.write_text(GOOD, encoding="utf-8")
    world = World(tmp_path, extra='[templates]\ndir = "templates"\n')
    world.write(vevent("call-1", T, T + timedelta(hours=1)))
    with freeze_time(T - timedelta(hours=30)) as frozen:
        daemon = Daemon(Engine(load(tmp_path / "followthrough.toml"), watch_templates=True))
        daemon.start()
        try:
            wait_for(lambda: next_wake(daemon) == T - timedelta(hours=24), seconds=30)
            assert warnings(world) == []
            # When an admin saves a broken edit and the prep falls due (a poll comes first),
            prep.write_text(BROKEN, encoding="utf-8")
            frozen.move_to(T - timedelta(hours=24))
            daemon.scheduler.wakeup()
            # Then the prep goes out on the last good version, whole,
            wait_for(lambda: "closing-prep:call-1" in world.outbox(), seconds=30)
            message = world.outbox()["closing-prep:call-1"]
            body = message.get_body(("plain",))
            assert body is not None and "Version one: the good one." in body.get_content()
            assert world.sends()["closing-prep:call-1"][0].value == "sent"
            # and `plan` says the template runs on its last good version, naming file and line.
            wait_for(lambda: bool(warnings(world)), seconds=30)
            assert warnings(world) == [
                "closing-prep.md, line 6: 'dict object' has no attribute 'notse' "
                "(edit refused; the running daemon sends its last good version)"
            ]
            # When the admin fixes it, the next poll takes the fix and the warning goes.
            prep.write_text(FIXED, encoding="utf-8")
            frozen.move_to(next_poll(daemon) + timedelta(seconds=1))
            daemon.scheduler.wakeup()
            wait_for(lambda: warnings(world) == [], seconds=30)
            assert "Version three" in daemon.engine.renderer.templates.files["closing-prep.md"]
        finally:
            daemon.stop()
