"""The dispatcher works in batches: one commit a message, one read a batch, and crash-safe between them.

Each message's result is committed with the next one's hand-over; a crash between the two leaves what
docs/reliability.md promises (the message handed over is unknown, the next one is sent by the next
process), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from daemon.config import load
from daemon.engine import Engine, PassReport
from daemon.errors import LedgerError
from daemon.mail.message import build as build_message
from daemon.model import Status
from tests.support.config import ALL_HOURS, smtp_table, write_config
from tests.support.engine import Calls
from tests.support.ics import calendar
from tests.support.smtp import RecordingHandler, serving

pytestmark = pytest.mark.usefixtures("either_pipelining")  # each test against both kinds of server

ROOT = Path(__file__).resolve().parents[2]
BATCH = 10  # the dispatcher's claims at a time


@pytest.fixture
def server() -> Iterator[tuple[RecordingHandler, int]]:
    handler = RecordingHandler()
    with serving(handler) as smtp:
        yield handler, smtp.port


def planned(directory: Path, port: int, store: str, calls: Calls, t0: datetime) -> Path:
    """A config sending through 127.0.0.1:`port` into `store`, its calendar synced and planned at `t0`."""
    config = write_config(
        directory, smtp=smtp_table(port, timeout=5), store=store, team=False, schedule=ALL_HOURS
    )
    (directory / "calendar.ics").write_text(calendar(*calls.events), encoding="utf-8")
    engine = Engine(load(config))
    try:
        for source in engine.sources:
            engine.sync(source, t0, PassReport())
    finally:
        engine.close()
    return config


class Transactions:
    """Counts the transactions an engine's ledger opens: commits, and reads (rolled back)."""

    def __init__(self, engine: Engine) -> None:
        self.commits = 0
        self.reads = 0
        sql = engine.ledger.engine  # type: ignore[attr-defined]
        event.listen(sql, "commit", self._committed)
        event.listen(sql, "begin", self._begun)

    def _committed(self, conn: Any) -> None:
        self.commits += 1

    def _begun(self, conn: Any) -> None:
        if conn.info.get("reading"):
            self.reads += 1


def test_a_pass_commits_once_a_message_and_reads_what_renders_once_a_batch(
    tmp_path: Path, t0: datetime, store_url: str, server: tuple[RecordingHandler, int]
) -> None:
    # Given 25 sends due now: prompts to reps and thank-yous to customers of lost deals
    handler, port = server
    calls = Calls()
    calls.many(t0, closing=13, lost=12)
    engine = Engine(load(planned(tmp_path, port, store_url, calls, t0)))
    try:
        transactions = Transactions(engine)

        # When one pass sends them
        report = engine.dispatcher.dispatch_due(t0)

        # Then each went out once, recorded sent
        assert {s.key for s in report.sent} == calls.keys
        assert handler.arrivals() == dict.fromkeys(calls.keys, 1)
        sent = {s.key for s in engine.ledger.sends([Status.SENT])}
        assert sent == calls.keys
    finally:
        engine.close()
    # And the ledger committed about once a message: each hand-over with the result before it, plus a
    # claim and a last result a batch, and a few a pass (not the two or three a message it once took)
    sends, batches = len(calls.keys), math.ceil(len(calls.keys) / BATCH)
    assert transactions.commits <= sends + 2 * batches + 3
    # And read what renders a batch in one read, not four reads a message
    assert transactions.reads <= batches + 4


# The dispatcher in a process of its own, cut off like a power failure just as it commits the first
# message's result with the second message's hand-over.
CRASH = """
import os, sys
from datetime import datetime
from daemon.config import load
from daemon.engine import Engine

engine = Engine(load(sys.argv[1]))
record_and_hand = engine.ledger.record_and_hand

def power_cut(records, handing=None):
    if records:
        os._exit(9)
    return record_and_hand(records, handing)

engine.ledger.record_and_hand = power_cut
engine.dispatcher.dispatch_due(datetime.fromisoformat(sys.argv[2]))
"""


def test_a_crash_between_a_result_and_the_next_hand_over_leaves_one_unknown_and_sends_the_rest_once(
    tmp_path: Path, t0: datetime, store_url: str, server: tuple[RecordingHandler, int]
) -> None:
    # Given three thank-you mails to customers, due now
    handler, port = server
    calls = Calls()
    calls.many(t0, closing=0, lost=3)
    config = planned(tmp_path, port, store_url, calls, t0)

    # When a dispatcher delivers the first and dies before its result and the next hand-over commit
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(config), t0.isoformat()], cwd=ROOT, timeout=120, check=False
    )
    assert crashed.returncode == 9

    # Then the first arrived, once, and the ledger holds it handed over with no result yet, while the
    # other two were claimed and never handed over
    (first,) = handler.arrivals()
    engine = Engine(load(config))
    try:
        sends = {s.key: s for s in engine.ledger.sends() if s.key in calls.keys}
        assert {k: s.status for k, s in sends.items()} == dict.fromkeys(calls.keys, Status.CLAIMED)
        assert sends[first].handed_at is not None
        assert [k for k, s in sends.items() if s.handed_at is not None] == [first]

        # When the next process starts (the dead one's claims are taken over at once, on this host)
        report = engine.dispatcher.dispatch_due(t0 + timedelta(seconds=1))

        # Then the customer mail that may have arrived is left for a person, never sent again
        after = {s.key: s for s in engine.ledger.sends()}
        assert after[first].status is Status.UNKNOWN
        assert {s.key for s, _ in report.unknown} == {first}
        # And the other two went out, once each: every message arrived exactly once
        assert {k for k, s in after.items() if s.status is Status.SENT} == calls.keys - {first}
        assert handler.arrivals() == dict.fromkeys(calls.keys, 1)
    finally:
        engine.close()


def test_an_unsubscribe_while_a_batch_is_sent_stops_the_messages_not_yet_handed_over(
    tmp_path: Path, t0: datetime, store_url: str, server: tuple[RecordingHandler, int]
) -> None:
    # Given three thank-yous to customers of lost deals, due now, claimed and written as one batch
    handler, port = server
    calls = Calls()
    calls.many(t0, closing=0, lost=3)
    engine = Engine(load(planned(tmp_path, port, store_url, calls, t0)))
    ledger, transport = engine.ledger, engine.dispatcher.transport
    start = transport.start
    unsubscribed: set[str] = set()

    def unsubscribe_the_others(message: Any, sender: str, recipients: list[str]) -> Any:
        # When, as the first goes out, the others' customers click "unsubscribe"
        if not unsubscribed:
            for send in ledger.sends([Status.CLAIMED]):
                others = {p.email for p in send.to} - set(recipients)
                for address in others:
                    ledger.suppress(address, t0, "one-click unsubscribe")
                unsubscribed.update(others)
        return start(message, sender, recipients)

    transport.start = unsubscribe_the_others  # type: ignore[method-assign]
    try:
        report = engine.dispatcher.dispatch_due(t0)
        stopped = engine.ledger.sends([Status.STOPPED])
    finally:
        engine.close()

    # Then only the first reached its customer; the other two were stopped, never handed over
    assert unsubscribed
    assert len(report.sent) == 1
    assert sum(handler.arrivals().values()) == 1
    assert not unsubscribed & {r.lower() for m in handler.messages() for r in m.rcpt_tos}
    assert len(stopped) == 2
    assert all("unsubscribe" in (s.reason or "") or "suppress" in (s.reason or "") for s in stopped)


def test_a_failed_hand_over_commit_still_records_the_message_before_it_as_sent(
    tmp_path: Path, t0: datetime, store_url: str, server: tuple[RecordingHandler, int]
) -> None:
    # Given three prompts due now, and a ledger that fails the transaction holding the first message's
    # result with the second one's hand-over (locked past its busy timeout, say)
    handler, port = server
    calls = Calls()
    calls.many(t0, closing=3, lost=0)
    engine = Engine(load(planned(tmp_path, port, store_url, calls, t0)))
    record_and_hand = engine.ledger.record_and_hand
    tries = 0

    def locked_once(records: Any, handing: Any = None) -> Any:
        nonlocal tries
        tries += 1
        if tries == 2:
            raise LedgerError("database is locked")
        return record_and_hand(records, handing)

    engine.ledger.record_and_hand = locked_once  # type: ignore[method-assign]
    try:
        # When a pass sends them, and stops on the ledger's error
        with pytest.raises(LedgerError):
            engine.dispatcher.dispatch_due(t0)
        sent = engine.ledger.sends([Status.SENT])
        claimed = engine.ledger.sends([Status.CLAIMED])
    finally:
        engine.close()

    # Then the message that went out is recorded sent, not left to become unknown
    assert sum(handler.arrivals().values()) == 1
    assert [s.key for s in sent] == list(handler.arrivals())
    # And nothing else was handed over: the other two are not claimed by a hand-over
    assert all(s.handed_at is None for s in claimed)


class AnswersOnceTheNextIsWritten(RecordingHandler):
    """A server that takes each message in, then answers the first only once the dispatcher has written
    the second (or after `DEADLINE`), as a server busy writing a message to disk would."""

    DEADLINE = (
        30.0  # seconds: a dispatcher that waits for the answer before writing the next stalls this long
    )

    def __init__(self) -> None:
        super().__init__()
        self.first_in = threading.Event()  # the first message has arrived
        self.written = threading.Event()  # the second message is built
        self.answered_after_next: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.answered_after_next:
            self.first_in.set()
            waited = await asyncio.get_running_loop().run_in_executor(None, self.written.wait, self.DEADLINE)
            self.answered_after_next.append(waited)
        return await super().handle_DATA(server, session, envelope)


def test_the_next_message_is_written_while_the_server_takes_the_one_before(
    tmp_path: Path, t0: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three thank-yous due now, and a server that answers the first message only once the second
    # has been written
    handler = AnswersOnceTheNextIsWritten()
    built = 0
    first_in_before_second: list[bool] = []

    def build(**parts: Any) -> Any:
        nonlocal built
        built += 1
        if built == 2:  # not written ahead of the first's sending: the server has the first by now
            first_in_before_second.append(handler.first_in.wait(10))
        message = build_message(**parts)
        if built == 2:
            handler.written.set()
        return message

    calls = Calls()
    calls.many(t0, closing=0, lost=3)
    with serving(handler) as smtp:
        engine = Engine(load(planned(tmp_path, smtp.port, "sqlite:///followthrough.db", calls, t0)))
        monkeypatch.setattr("daemon.dispatch.build_message", build)
        try:
            # When one pass sends them
            report = engine.dispatcher.dispatch_due(t0)
        finally:
            engine.close()

    # Then the dispatcher wrote the second message after the first had gone out, and before it heard
    # back about the first
    assert first_in_before_second == [True]
    assert handler.answered_after_next == [True]
    # And each went out once and is recorded sent
    assert {s.key for s in report.sent} == calls.keys
    assert handler.arrivals() == dict.fromkeys(calls.keys, 1)
