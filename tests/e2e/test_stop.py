"""Stopping `followthrough run`: after the message in flight, and with no claim left behind.

The daemon runs as a real process with a SQLite ledger and speaks SMTP to an aiosmtpd server in this
process that takes each message in, then holds its answer until the test opens a gate: so a signal or
a kill lands while exactly one known message is in flight. Every wait is on a condition, with a
generous deadline.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from daemon.ledger import SendRecord, open_ledger
from daemon.model import Status
from tests.e2e.support import write_config
from tests.support.cli import Daemon, run_cli, wait_for
from tests.support.ics import H, calendar, meeting, now_utc
from tests.support.smtp import RecordingHandler, SmtpServer, serving

CALLS = 5  # closing calls 23 hours ahead: as many prep prompts due at once
WAIT = 60.0  # seconds: the deadline of every wait, far above what any of them takes
KEYS = [f"closing-prep:call-{i}" for i in range(CALLS)]  # in the order they are due, so sent


@dataclass
class GatedHandler(RecordingHandler):
    """Takes each message in (recorded: it has arrived), then holds its 250 until the gate opens."""

    gate: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        self.holding.set()
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        return answer


@dataclass
class Setup:
    directory: Path
    config: Path
    smtp: SmtpServer

    @property
    def gate(self) -> GatedHandler:
        handler = self.smtp.handler
        assert isinstance(handler, GatedHandler)
        return handler

    def sends(self) -> dict[str, SendRecord]:
        """The prep prompts as the ledger holds them now."""
        ledger = open_ledger(f"sqlite:///{self.directory / 'followthrough.db'}")
        try:
            return {s.key: s for s in ledger.sends() if s.key in KEYS}
        finally:
            ledger.close()

    def reasons(self, key: str) -> list[str]:
        ledger = open_ledger(f"sqlite:///{self.directory / 'followthrough.db'}")
        try:
            return [t.reason or "" for t in ledger.transitions(key)]
        finally:
            ledger.close()

    def arrivals(self) -> Counter[str]:
        counts: Counter[str] = self.smtp.handler.arrivals()
        return counts

    def start(self, name: str = "run") -> Daemon:
        return Daemon.start(self.config, self.directory / f"{name}.log")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """Five prep prompts due now, the server holding the first one it is given."""
    now = now_utc()
    events = [
        meeting(
            f"call-{i}",
            now + 23 * H + i * H / 60,  # a minute apart: sent in this order
            now + 24 * H,
            f"Customer {i} terms #closing",
            attendees=[(f"buyer@customer{i}.example", f"Buyer {i}")],
        )
        for i in range(CALLS)
    ]
    (tmp_path / "calendar.ics").write_text(calendar(*events), encoding="utf-8", newline="")
    with serving(GatedHandler()) as smtp:
        # Strict about unknown outcomes, so a message handed over and never answered stays visible.
        config = write_config(tmp_path, smtp.port, mail="resend_unknown_prompts = false")
        made = Setup(tmp_path, config, smtp)
        yield made
        made.gate.gate.set()  # let a held connection end, so the server can stop


def test_the_first_sigterm_stops_after_the_message_in_flight(setup: Setup) -> None:
    # Given a daemon sending five due prompts, the server holding the first of them
    daemon = setup.start()
    try:
        wait_for(setup.gate.holding.is_set, "the first message to reach the server", daemon.output)
        # When SIGTERM comes while that message is in flight, and the server then answers
        daemon.signal(signal.SIGTERM)
        wait_for(lambda: "signal 15" in daemon.output(), "the daemon to take the signal", daemon.output)
        setup.gate.gate.set()
        code = daemon.wait()
    finally:
        daemon.kill()
    output = daemon.output()
    # Then it stops cleanly once that message is recorded, sending nothing more
    assert code == 0, output
    assert "followthrough stopped" in output and "Traceback" not in output
    assert setup.arrivals() == Counter({KEYS[0]: 1}), output
    sends = setup.sends()
    assert sends[KEYS[0]].status is Status.SENT
    # And the other due prompts are pending again at once, unclaimed, not counted as tries
    for key in KEYS[1:]:
        assert (sends[key].status, sends[key].claimed_by, sends[key].attempts) == (Status.PLANNED, None, 0)
        assert setup.reasons(key)[-1].startswith("released: followthrough stopped before sending it")

    # And the next start sends them at once, each once
    again = setup.start("again")
    try:
        wait_for(lambda: len(setup.arrivals()) == CALLS, "the other prompts to go out", again.output)
        again.signal(signal.SIGTERM)
        assert again.wait() == 0, again.output()
    finally:
        again.kill()
    assert setup.arrivals() == Counter(dict.fromkeys(KEYS, 1))


def test_a_second_sigterm_exits_at_once_releasing_the_claims_not_handed_over(setup: Setup) -> None:
    # Given a daemon sending five due prompts, the server holding the first of them
    daemon = setup.start()
    try:
        wait_for(setup.gate.holding.is_set, "the first message to reach the server", daemon.output)
        # When SIGTERM comes twice while that message is in flight (the hard stop)
        daemon.signal(signal.SIGTERM)
        wait_for(lambda: "signal 15" in daemon.output(), "the daemon to take the signal", daemon.output)
        daemon.signal(signal.SIGTERM)
        code = daemon.wait()
    finally:
        daemon.kill()
    output = daemon.output()
    # Then it exits at once, with the status of a hard stop
    assert code == 130, output
    sends = setup.sends()
    # And the message handed to the server is left as it was: it may have arrived (it has)
    first = sends[KEYS[0]]
    assert first.status is Status.CLAIMED and first.handed_at is not None
    # And the claims not handed over are pending again at once, not for the whole lease
    for key in KEYS[1:]:
        assert sends[key].status is Status.PLANNED, output
        assert sends[key].claimed_by is None
        assert setup.reasons(key)[-1].startswith("released: followthrough stopped before sending it")
    assert setup.arrivals() == Counter({KEYS[0]: 1})


def test_a_killed_daemons_claims_show_in_plan_and_the_next_start_takes_them_at_once(setup: Setup) -> None:
    # Given a daemon killed (kill -9) while the server holds the first of five due prompts
    daemon = setup.start()
    try:
        wait_for(setup.gate.holding.is_set, "the first message to reach the server", daemon.output)
    finally:
        daemon.kill()
    owner = f"{socket.gethostname()}:{daemon.process.pid}"
    sends = setup.sends()
    assert {s.status for s in sends.values()} == {Status.CLAIMED}
    # When someone looks at the plan
    listed = {s["key"]: s for s in json.loads(run_cli("plan", "--json", config=setup.config).stdout)}
    table = run_cli("plan", config=setup.config).stdout
    # Then each claimed send says which process holds it and until when, its status still "pending"
    for key in KEYS:
        assert listed[key]["status"] == "pending"
        assert listed[key]["claimed_by"].startswith(owner + ":")
        assert listed[key]["claimed_until"].endswith("Z")
    assert table.count(f"claimed by {owner} until ") == CALLS, table

    # When a new daemon starts on the same host, its default lease (5 minutes) far from run out
    setup.gate.gate.set()
    again = setup.start("again")
    try:

        def settled() -> bool:
            return not any(s.status in (Status.PLANNED, Status.CLAIMED) for s in setup.sends().values())

        wait_for(settled, "the dead daemon's claims to be taken over", again.output)
        again.signal(signal.SIGTERM)
        assert again.wait() == 0, again.output()
    finally:
        again.kill()
    sends = setup.sends()
    # Then the claims not handed over were taken at once and sent, each once
    for key in KEYS[1:]:
        assert sends[key].status is Status.SENT
        assert f"claimed again: {owner}:" in "\n".join(setup.reasons(key))
    assert setup.arrivals() == Counter(dict.fromkeys(KEYS, 1))
    # And the one handed over is not sent again blindly: its outcome is unknown, for a person
    assert sends[KEYS[0]].status is Status.UNKNOWN
    assert "taking over the claims of " + owner in again.output()
