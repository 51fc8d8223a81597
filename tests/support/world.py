"""A followthrough in a folder, run in this process: a config, ICS calendars, a ledger and an outbox.

`tick()` runs a pass as a fresh process would; freezegun moves its clock.
"""

from __future__ import annotations

import email
import email.policy
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from daemon.config import load
from daemon.engine import Engine, PassReport
from daemon.model import Status
from tests.support.config import config_toml
from tests.support.ics import calendar


class World:
    """A config (outbox transport), calendars and a ledger in a folder; `extra` ends the config."""

    def __init__(self, root: Path, extra: str = "", calendars: tuple[str, ...] = ("cal",)) -> None:
        self.root = root
        (root / "followthrough.toml").write_text(
            config_toml(
                calendars=[(name, f"{name}.ics") for name in calendars],
                transport="outbox",
                mail='outbox_dir = "outbox"\n',
                store=None,
                schedule=None,
                extra=extra,
            ),
            encoding="utf-8",
        )
        for name in calendars:
            self.write(name=name)

    def write(self, *events: str, name: str = "cal") -> None:
        (self.root / f"{name}.ics").write_text(calendar(*events), encoding="utf-8")

    def engine(self) -> Engine:
        return Engine(load(self.root / "followthrough.toml"))

    def tick(self) -> PassReport:
        from daemon import clock

        engine = self.engine()
        try:
            return engine.tick(clock.now())
        finally:
            engine.close()

    def outbox(self) -> dict[str, EmailMessage]:
        folder = self.root / "outbox"
        if not folder.is_dir():
            return {}
        messages = {}
        for path in sorted(folder.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            messages[str(message["X-Followthrough-Key"])] = message
        return messages

    def sends(self) -> dict[str, tuple[Status, str | None, datetime]]:
        engine = self.engine()
        try:
            return {s.key: (s.status, s.reason, s.due) for s in engine.ledger.sends()}
        finally:
            engine.close()
