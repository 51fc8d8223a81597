"""Many recipients: a crowded invite is held for a person, and recipients a server puts off (4xx) get
the message later, while those it took never get it twice. A real aiosmtpd server, in process, with
T0 an hour ahead of the real clock (see test_smtp_faults).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.config import load
from daemon.engine import Engine
from daemon.model import Status
from tests.e2e.support import serving
from tests.helpers import calendar
from tests.integration.test_smtp_faults import CONFIG, Calls, TroubledHandler

H = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


@dataclass
class LimitedHandler(TroubledHandler):
    """Takes at most `per_message` recipients in one transaction and puts off the rest with 452, as
    Postfix does past smtpd_recipient_limit."""

    per_message: int = 1000
    put_off: set[str] = field(default_factory=set)  # always answered 452 4.2.2

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.put_off:
            return "452 4.2.2 Mailbox full, try later"
        if len(envelope.rcpt_tos) >= self.per_message:
            return "452 4.5.3 Error: too many recipients"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    def copies(self) -> Counter[str]:
        """How many copies each address received."""
        return Counter(a.lower() for r in self.messages() for a in r.rcpt_tos)


@pytest.fixture
def t0() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + H


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.close()


def start(directory: Path, port: int, calls: Calls, engines: list[Engine], mail: str = "") -> Engine:
    """A followthrough process; `mail` adds keys to [mail]. Writing it again is a restart."""
    config = CONFIG.format(port=port, retry_base="1m", timeout=10)
    sender = 'from = "Followthrough <ft@acme.example>"\n'
    config = config.replace(sender, f"{sender}{mail}\n")
    (directory / "followthrough.toml").write_text(config, encoding="utf-8")
    (directory / "calendar.ics").write_text(calendar(*calls.events), encoding="utf-8")
    engine = Engine(load(directory / "followthrough.toml"))
    engines.append(engine)
    return engine


def crowd(n: int, domain: str = "initech.example") -> list[tuple[str, str]]:
    return [(f"guest{i}@{domain}", f"Guest {i}") for i in range(n)]


def test_customer_mail_to_more_than_max_recipients_is_held_until_the_limit_is_raised(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given a lost deal whose invite had 60 customers, and a prep prompt to the rep, both due now
    calls = Calls()
    thanks = calls.lost("initech-lost", t0, crowd(60))
    prep = calls.closing("hooli-next", t0, [("gavin@hooli.example", "Gavin Belson")])
    handler = LimitedHandler()
    with serving(handler) as server:
        # And the default limit of 50 recipients for customer mail
        engine = start(tmp_path, server.port, calls, engines)

        # When passes run over the next two hours
        report = engine.tick(t0)
        engine.dispatcher.dispatch_due(t0 + 2 * H)

        # Then the thank-you went to nobody, and waits with a reason naming the limit
        assert "initech-lost" not in str(handler.arrivals())
        send = engine.ledger.send(thanks)
        assert send is not None and send.status is Status.PLANNED, send
        assert send.reason is not None and send.reason.startswith("held: 60 recipients"), send.reason
        assert "[mail] max_recipients = 50" in send.reason
        assert send.attempts == 0
        # And the pass says so, which makes tick exit 1, while the rep's prompt went out
        assert [s.key for s, _ in report.dispatch.held] == [thanks]
        assert report.failed
        assert handler.arrivals() == {prep: 1}

        # When the admin raises the limit and restarts
        raised = start(tmp_path, server.port, calls, engines, mail="max_recipients = 100")
        raised.dispatcher.dispatch_due(t0 + 3 * H)

    # Then the thank-you went out once, to all 60 in one message
    assert handler.arrivals() == {prep: 1, thanks: 1}
    assert handler.copies() == Counter({a: 1 for a, _ in crowd(60)} | {"alice@acme.example": 1})
    sent = raised.ledger.send(thanks)
    assert sent is not None and sent.status is Status.SENT


def test_a_held_crowd_is_still_skipped_after_its_deadline(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given a thank-you to 51 customers, held over the limit
    calls = Calls()
    thanks = calls.lost("initech-lost", t0, crowd(51))
    handler = LimitedHandler()
    with serving(handler) as server:
        engine = start(tmp_path, server.port, calls, engines)
        engine.tick(t0)
        held = engine.ledger.send(thanks)
        assert held is not None and held.status is Status.PLANNED and held.expires is not None

        # When nobody raises the limit, and a pass runs after its deadline
        engine.dispatcher.dispatch_due(held.expires + H)

    # Then it is skipped as too late, as any send would be, and was never sent
    send = engine.ledger.send(thanks)
    assert send is not None and send.status is Status.SKIPPED, send
    assert handler.messages() == []


def test_recipients_put_off_with_a_4xx_get_the_message_later_and_the_others_only_once(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given a thank-you to five customers of a lost deal, due now
    calls = Calls()
    thanks = calls.lost("initech-lost", t0, crowd(5))
    # And a server that takes three recipients a message and puts off the rest with 452 4.5.3
    handler = LimitedHandler(per_message=3)
    with serving(handler) as server:
        engine = start(tmp_path, server.port, calls, engines)

        # When a pass runs
        report = engine.tick(t0)

        # Then three customers got it, and the send waits to reach the two put off, saying so
        assert sum(handler.copies().values()) == 3
        send = engine.ledger.send(thanks)
        assert send is not None and send.status is Status.PLANNED, send
        assert send.reason is not None and send.reason.startswith(
            f"will retry at {(t0 + MINUTE).isoformat()}"
        )
        assert "452 4.5.3" in send.reason
        later = {a for a, answer in send.refused.items() if answer.startswith("452")}
        assert len(later) == 2 and not later & set(handler.copies())
        assert [s.key for s, _ in report.dispatch.retrying] == [thanks]

        # When the next passes run
        engine.dispatcher.dispatch_due(t0 + MINUTE)
        engine.dispatcher.dispatch_due(t0 + H)

    # Then the two put off got the same message, and every customer has exactly one copy
    assert handler.copies() == Counter({a: 1 for a, _ in crowd(5)})
    first, second = handler.messages()
    assert set(second.rcpt_tos) == later
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert first.message["To"] == second.message["To"]  # the same message, to the rest of its envelope
    # And the send is recorded sent at its first delivery, with nobody left refused
    sent = engine.ledger.send(thanks)
    assert sent is not None and sent.status is Status.SENT, sent
    assert sent.sent_at == t0 and sent.refused == {}
    assert sent.attempts == 2


def test_a_recipient_put_off_until_the_deadline_is_given_up_on_and_the_send_recorded_sent(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given a thank-you to two customers, and a server that puts off the second every time
    calls = Calls()
    thanks = calls.lost("initech-lost", t0, crowd(2))
    handler = LimitedHandler(put_off={"guest1@initech.example"})
    with serving(handler) as server:
        engine = start(tmp_path, server.port, calls, engines)

        # When passes run whenever the send is due again, until it is settled
        report = engine.tick(t0).dispatch
        for _ in range(60):
            send = engine.ledger.send(thanks)
            assert send is not None
            if send.status is not Status.PLANNED:
                break
            assert send.next_attempt is not None
            report = engine.dispatcher.dispatch_due(send.next_attempt)

    # Then after its deadline the send is recorded sent, naming who never got it and why
    assert send.status is Status.SENT, send
    assert send.reason is not None and send.reason.startswith("sent, but gave up after"), send.reason
    assert send.refused == {"guest1@initech.example": "452 4.2.2 Mailbox full, try later"}
    assert send.expires is not None and send.updated_at > send.expires - timedelta(hours=6)
    # And the last pass reports it as a failure, while the first customer got one copy only
    assert [s.key for s, _ in report.failed] == [thanks]
    assert handler.copies() == Counter({"guest0@initech.example": 1})
