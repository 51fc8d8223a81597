"""When the server's answer to a whole message is lost, nobody knows if it arrived.

Customer mail then waits for a person (`followthrough resolve`); a rep prompt is sent again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.config import load
from daemon.engine import Engine
from daemon.model import Status
from tests.support.config import smtp_table, write_config
from tests.support.ics import ALICE, DANA, calendar, vevent
from tests.support.smtp import RecordingHandler, serving

pytestmark = pytest.mark.usefixtures("either_pipelining")  # each test against both kinds of server


class DropAfterData(RecordingHandler):
    """Takes the message, then hangs up instead of answering 250, while `drop` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []
        self.drop = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content.decode("utf-8", "replace")
        key = next(
            line.split(":", 1)[1].strip()
            for line in content.splitlines()
            if line.startswith("X-Followthrough-Key:")
        )
        self.keys.append(key)
        if self.drop.is_set():
            server.transport.close()
        return "250 OK"


@pytest.fixture
def server() -> Iterator[tuple[DropAfterData, int]]:
    handler = DropAfterData()
    with serving(handler) as smtp:
        yield handler, smtp.port


def engine_for(tmp_path: Path, port: int, now: datetime) -> Engine:
    config = write_config(tmp_path, smtp=smtp_table(port, timeout=5), store=None)
    prep = vevent("prep", now + timedelta(hours=23), now + timedelta(hours=24), attendees=(ALICE, DANA))
    lost = vevent(
        "lost",
        now - timedelta(hours=26),
        now - timedelta(hours=25),
        "Globex #closing #lost",
        attendees=(ALICE, DANA),
    )
    (tmp_path / "calendar.ics").write_text(calendar(prep, lost), encoding="utf-8")
    return Engine(load(config))


def test_a_lost_answer_leaves_customer_mail_for_a_person_and_resends_the_prompt(
    server: tuple[DropAfterData, int], tmp_path: Path
) -> None:
    handler, port = server
    now = datetime.now(UTC)  # the real clock: aiosmtpd's event loop needs it
    engine = engine_for(tmp_path, port, now)
    try:
        # Given a server that takes each message and then hangs up before answering
        handler.drop.set()
        report = engine.tick(now)
        # Then the customer's thank-you is "unknown", with what to do about it
        thanks = engine.ledger.send("lost-thank-you:lost")
        assert thanks is not None and thanks.status is Status.UNKNOWN
        assert "followthrough resolve lost-thank-you:lost" in (thanks.reason or "")
        assert [s.key for s, _ in report.dispatch.unknown] == ["lost-thank-you:lost"]
        # And the rep's prompt is planned again
        prep = engine.ledger.send("closing-prep:prep")
        assert prep is not None and prep.status is Status.PLANNED
        # When the server answers again, the prompt goes out; the customer mail does not, by itself
        handler.drop.clear()
        engine.dispatcher.dispatch_due(now + timedelta(minutes=2))
    finally:
        engine.close()
    assert handler.keys.count("lost-thank-you:lost") == 1
    assert handler.keys.count("closing-prep:prep") == 2  # a prompt twice beats no prompt
    assert engine.ledger.send("closing-prep:prep").status is Status.SENT  # type: ignore[union-attr]
    assert engine.ledger.send("lost-thank-you:lost").status is Status.UNKNOWN  # type: ignore[union-attr]
