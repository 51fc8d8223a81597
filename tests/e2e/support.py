"""End-to-end helpers: a followthrough deployed in tmp_path, run through its CLI as a subprocess.

Nothing is mocked: the subprocess reads the calendar written here, keeps its ledger in tmp_path and talks
SMTP to an aiosmtpd server running in the test process (tests/support). It uses the real clock, so every
event is placed relative to `datetime.now(UTC)`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import config
from tests.support.cli import Result, run_cli
from tests.support.ics import ALICE, calendar
from tests.support.smtp import RecordingHandler, SmtpServer

REP = ALICE
SENDER = "ft@acme.example"


def write_config(
    directory: Path,
    port: int,
    *,
    calendars: Sequence[tuple[str, str]] = (("sales", "calendar.ics"),),
    extra: str = "",
    mail: str = "",
) -> Path:
    """A config sending through 127.0.0.1:`port`; `extra` goes at the end, after [schedule] (keys for
    it, or new tables); `mail` goes into [mail]."""
    return config.write_config(
        directory, calendars=calendars, mail=mail, smtp=config.smtp_table(port), extra=extra
    )


@dataclass
class Deployment:
    """A followthrough set up in tmp_path: its config, its calendar, its ledger, its mail server."""

    directory: Path
    smtp: SmtpServer
    config: Path
    calendar: Path

    @property
    def mail(self) -> RecordingHandler:
        return self.smtp.handler

    def write_calendar(self, *events: str) -> None:
        self.calendar.write_text(calendar(*events), encoding="utf-8", newline="")

    def cli(self, *args: str) -> Result:
        return run_cli(*args, config=self.config)

    def tick(self) -> Result:
        return self.cli("tick")

    def plan(self) -> list[dict[str, Any]]:
        result = self.cli("plan", "--json")
        assert result.code == 0, result.output
        data = json.loads(result.stdout)
        assert isinstance(data, list)
        return data

    def send(self, rule: str, event_id: str) -> dict[str, Any]:
        """The one send of `rule` for `event_id` in `plan --json`."""
        matches = [s for s in self.plan() if s["rule"] == rule and s["event_id"] == event_id]
        assert len(matches) == 1, f"expected one {rule} send for {event_id}, got {matches}"
        return matches[0]


def message_id_for(key: str, domain: str) -> str:
    """The Message-ID the daemon promises for a send, from its own function."""
    from daemon.mail.message import message_id

    return message_id(key, domain)


def addresses(header: Any) -> set[str]:
    """The bare, lower-cased addresses of an address header (To, Cc, From, Reply-To)."""
    if header is None:
        return set()
    return {a.addr_spec.lower() for a in header.addresses}
