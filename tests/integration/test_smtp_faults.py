"""The mail server in trouble: busy, refusing a mailbox, down. Every send goes out once, or says why not.

In process: a real aiosmtpd server on 127.0.0.1 and an Engine built from a config in tmp_path. Time is
moved by hand, without freezegun (the server's asyncio loop needs the real clock): one `tick(T0)` reads
the calendar, plans and makes the first pass, then `dispatch_due(T0 + k * step)` lets retries come due.
T0 lies an hour ahead of the real clock: the dispatcher takes the later of the moment it is given and
the clock, so the ledger records exactly the moments given, and retry times can be checked to the second.
"""

from __future__ import annotations

import re
import socket
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.engine import Engine
from daemon.errors import PermanentDeliveryError, TransientDeliveryError
from daemon.ledger import SendRecord, Transition
from daemon.mail import smtp as smtp_transport
from daemon.mail.smtp import SmtpTransport
from daemon.model import Person, Status
from tests.support.engine import Calls, start_engine
from tests.support.ics import vevent
from tests.support.smtp import TroubledHandler, plain_message, scripted, serving

pytestmark = pytest.mark.usefixtures("either_pipelining")  # each test against both kinds of server

H = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
REP = "alice@acme.example"


def due_sends(engine: Engine, t0: datetime) -> dict[str, SendRecord]:
    return {s.key: s for s in engine.ledger.sends() if s.due <= t0}


RETRY = re.compile(r"will retry at (\S+): (.*)")


def retries(moves: list[Transition]) -> list[tuple[datetime, datetime, str]]:
    """Each failed try of a send: when it failed, when it is to be tried again, the server's answer."""
    found = []
    for move in moves:
        match = RETRY.fullmatch(move.reason or "")
        if move.to_status == Status.PLANNED.value and match:
            found.append((move.at, datetime.fromisoformat(match.group(1)), match.group(2)))
    return found


def test_a_busy_server_gets_every_message_once_after_retries_that_back_off(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given 20 sends due now: 12 prep prompts to the rep and 8 thank-yous to lost customers
    calls = Calls()
    calls.many(t0, closing=12, lost=8)
    base = timedelta(seconds=90)
    # And a mail server that is in trouble for ten minutes, a different trouble each while
    handler = TroubledHandler()
    timeline = [
        (timedelta(0), {"MAIL": "421 4.3.2 Service busy, try later"}),
        (timedelta(seconds=60), {"DATA": "451 4.3.0 Temporary queue failure"}),
        (timedelta(seconds=200), {"RCPT": "421 4.4.5 Too many connections"}),
        (timedelta(seconds=500), {}),
    ]
    with serving(handler) as server:
        engine = start_engine(tmp_path, server.port, calls, retry_base="90s")
        engines.append(engine)

        # When followthrough makes a pass every 30 seconds for a quarter of an hour
        for k in range(31):
            at = t0 + k * timedelta(seconds=30)
            handler.trouble = next(t for start, t in reversed(timeline) if at - t0 >= start)
            if k == 0:
                engine.tick(at)
            else:
                engine.dispatcher.dispatch_due(at)

    # Then every message arrived exactly once, and nothing else did
    arrivals = handler.arrivals()
    assert set(arrivals) == calls.keys, sorted(set(arrivals) ^ calls.keys)
    assert [k for k, n in arrivals.items() if n != 1] == []
    # And each was tried four times, no more: three refusals and the success
    assert handler.tries == 4 * len(calls.keys)
    sends = due_sends(engine, t0)
    assert set(sends) == calls.keys
    for key, send in sends.items():
        assert send.status is Status.SENT, (key, send.status, send.reason)
        assert send.attempts == 4, (key, send.attempts)
        assert send.sent_at == t0 + 7 * base
        # And its history shows each retry with the server's answer, the waits doubling from retry_base
        failed = retries(engine.ledger.transitions(key))
        assert [retry_at - at for at, retry_at, _ in failed] == [base, 2 * base, 4 * base], failed
        assert [at - t0 for at, _, _ in failed] == [timedelta(0), base, 3 * base]
        answers = [answer for _, _, answer in failed]
        assert answers[0] == "server answered 421 4.3.2 Service busy, try later"
        assert answers[1] == "server answered 451 4.3.0 Temporary queue failure"
        assert answers[2].startswith("recipients refused for now: ")
        assert answers[2].endswith(": 421 4.4.5 Too many connections")
        claims = [m.at - t0 for m in engine.ledger.transitions(key) if m.to_status == Status.CLAIMED.value]
        assert claims == [timedelta(0), base, 3 * base, 7 * base]


def test_a_refused_mailbox_fails_with_the_servers_answer_and_the_rest_go_out(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given sends due now, among them a thank-you to a mailbox that does not exist,
    # and one to two people of whom only one exists
    calls = Calls()
    calls.many(t0, closing=5, lost=5)
    nobody = calls.lost("initech-lost", t0, [("nobody@initech.example", "No Body")])
    pair = calls.lost(
        "globex-lost", t0, [("dana@globex.example", "Dana Fox"), ("ghost@globex.example", "Gone Person")]
    )
    # And a mail server that answers 550 5.1.1 for those unknown mailboxes
    handler = TroubledHandler(refuse={"nobody@initech.example", "ghost@globex.example"})
    with serving(handler) as server:
        engine = start_engine(tmp_path, server.port, calls)
        engines.append(engine)

        # When a pass runs, and more passes over the next day
        engine.tick(t0)
        for hours in (1, 6, 24):
            engine.dispatcher.dispatch_due(t0 + hours * H)

    sends = due_sends(engine, t0)
    # Then the send to the unknown mailbox failed, once, with the server's answer, and never arrived
    failed = engine.ledger.sends([Status.FAILED])
    assert [s.key for s in failed] == [nobody]
    assert failed[0].reason == "every recipient refused: nobody@initech.example: 550 5.1.1 no such user"
    assert failed[0].attempts == 1
    arrivals = handler.arrivals()
    assert nobody not in arrivals
    # And the one with a refused and an accepted recipient was sent, the refusal kept on record
    assert sends[pair].status is Status.SENT
    assert sends[pair].refused == {"ghost@globex.example": "550 5.1.1 no such user"}
    assert sends[pair].reason == "refused by the server: ghost@globex.example: 550 5.1.1 no such user"
    (delivered,) = [r for r in handler.messages() if r.message["X-Followthrough-Key"] == pair]
    assert delivered.rcpt_tos == ("dana@globex.example",)
    # And every other send went out, exactly once
    others = calls.keys - {nobody}
    assert {k: arrivals[k] for k in others} == dict.fromkeys(others, 1)
    assert {k for k, s in sends.items() if s.status is Status.SENT} == others


def test_a_server_that_is_down_delays_sends_loses_none_and_sends_each_once(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given 10 sends due now, and a call starting in 30 minutes whose two prompts are due too,
    # though pointless once it starts
    calls = Calls()
    calls.many(t0, closing=6, lost=4)
    regular = set(calls.keys)
    calls.events.append(vevent("soon", t0 + 30 * MINUTE, t0 + 90 * MINUTE, "Soon terms #closing"))
    urgent = {"closing-prep:soon", "closing-final:soon"}
    calls.keys |= urgent
    # And the mail server is down: its port is taken but nothing listens, so connections are refused
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    port = int(blocker.getsockname()[1])
    engine = start_engine(tmp_path, port, calls)
    engines.append(engine)
    handler = TroubledHandler()
    try:
        # When followthrough makes a pass every minute for 20 minutes
        engine.tick(t0)
        for minute in range(1, 21):
            engine.dispatcher.dispatch_due(t0 + minute * MINUTE)
    finally:
        blocker.close()

    # Then nothing is lost: each send still waits, with its next try and the connection problem
    sends = due_sends(engine, t0)
    assert set(sends) == calls.keys
    for key in regular:
        send = sends[key]
        assert send.status is Status.PLANNED, (key, send.status, send.reason)
        assert send.next_attempt == t0 + 31 * MINUTE  # after tries at 0, 1, 3, 7 and 15 minutes
        assert send.reason is not None
        assert send.reason.startswith(f"will retry at {(t0 + 31 * MINUTE).isoformat()}: ")
        assert f"cannot connect to SMTP server 127.0.0.1:{port}" in send.reason
        assert "Connection refused" in send.reason
    # And the prompts whose call starts before the next try gave up, saying so
    for key in urgent:
        send = sends[key]
        assert send.status is Status.FAILED, (key, send.status, send.reason)
        assert send.reason is not None
        assert send.reason.startswith("gave up after 5 attempts: cannot connect to SMTP server"), send.reason

    # When the server is back, and the passes go on
    with serving(handler, port=port):
        for minute in range(21, 41):
            engine.dispatcher.dispatch_due(t0 + minute * MINUTE)

    # Then each waiting send arrived exactly once, at its next try; the failed ones never
    assert handler.arrivals() == Counter(dict.fromkeys(regular, 1))
    sends = due_sends(engine, t0)
    for key in regular:
        assert sends[key].status is Status.SENT, (key, sends[key].status, sends[key].reason)
        assert sends[key].sent_at == t0 + 31 * MINUTE
        assert sends[key].attempts == 6
    assert {sends[key].status for key in urgent} == {Status.FAILED}


def test_a_server_that_takes_a_message_but_answers_too_late_does_not_get_it_twice(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given a thank-you to a lost customer, due now
    calls = Calls()
    thanks = calls.lost("hooli-lost", t0, [("gavin@hooli.example", "Gavin Belson")])
    # And a mail server that takes the message in, then hiccups: it answers only after the client's
    # timeout (2 seconds here), as a loaded server can; it is fine again afterwards
    handler = TroubledHandler(stalls=1, stall_for=5.0)
    with serving(handler) as server:
        engine = start_engine(tmp_path, server.port, calls, timeout=2)
        engines.append(engine)

        # When followthrough makes a pass, and more passes over the next hour
        engine.tick(t0)
        for minutes in (1, 3, 7, 15, 60):
            engine.dispatcher.dispatch_due(t0 + minutes * MINUTE)

    # Then the customer got the thank-you once: the message had arrived, only the answer was late
    assert handler.arrivals()[thanks] == 1, f"the customer got it {handler.arrivals()[thanks]} times"
    # And since followthrough cannot know that, a person is asked, as after a crash mid-send
    send = due_sends(engine, t0)[thanks]
    assert send.status is Status.UNKNOWN, (send.status, send.reason)
    assert send.reason is not None and f"followthrough resolve {thanks} sent" in send.reason, send.reason


ALICE, DANA = Person("alice@acme.example", "Alice Moreno"), Person("dana@globex.com", "Dana Fox")


def test_a_refusal_at_the_end_of_data_comes_when_its_answer_is_read_and_the_connection_goes_on() -> None:
    # Given a server that takes a message in, then refuses it
    handler = TroubledHandler(trouble={"DATA": "554 5.6.0 Message content rejected"})
    with serving(handler) as server:
        transport = SmtpTransport(server.host, server.port, starttls=False, timeout=5)
        try:
            # When a message is handed over in two steps
            finish = transport.start(plain_message("f:1", ALICE, [DANA]), ALICE.email, [DANA.email])
            # Then the refusal comes with its answer, when the answer is read, as a permanent failure
            with pytest.raises(PermanentDeliveryError, match=re.escape("554 5.6.0 Message content rejected")):
                finish()
            # And the next message goes out on the same connection
            handler.trouble = {}
            assert transport.deliver(plain_message("g:2", ALICE, [DANA]), ALICE.email, [DANA.email]) == {}
        finally:
            transport.close()
    assert handler.arrivals() == Counter({"g:2": 1})
    assert transport.connections == 1


def test_a_message_takes_two_writes_when_the_server_offers_pipelining(
    either_pipelining: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a server that offers PIPELINING, or not
    writes: list[bytes | str] = []
    send = smtp_transport._Tracking.send

    def recorded(connection: Any, data: bytes | str) -> None:
        writes.append(data)
        send(connection, data)

    monkeypatch.setattr(smtp_transport._Tracking, "send", recorded)
    handler = TroubledHandler()
    with serving(handler) as server:
        transport = SmtpTransport(server.host, server.port, starttls=False, timeout=5)
        transport.deliver(
            plain_message("h:1", ALICE, [DANA]), ALICE.email, [ALICE.email]
        )  # the connection, made
        writes.clear()
        # When a message to two people is delivered
        try:
            assert (
                transport.deliver(plain_message("i:2", ALICE, [DANA]), ALICE.email, [DANA.email, ALICE.email])
                == {}
            )
        finally:
            transport.close()
    # Then MAIL, both RCPTs and DATA went in one write, then the message: two round trips, not five
    commands = [w for w in writes if isinstance(w, str)]
    if either_pipelining:
        assert commands[0] == f"mail FROM:<{ALICE.email}> size=" + commands[0].split("size=")[1]
        assert commands[0].endswith(f"rcpt TO:<{DANA.email}>\r\nrcpt TO:<{ALICE.email}>\r\ndata\r\n")
        assert len(writes) == 3  # the commands, the message, QUIT
    else:
        assert len(writes) == 6  # MAIL, RCPT, RCPT, DATA, the message, QUIT
    assert handler.arrivals() == Counter({"h:1": 1, "i:2": 1})


def test_a_refused_data_command_ends_its_transaction_and_the_next_message_goes_out() -> None:
    # Given a server that refuses the DATA command of the first message, for now
    with scripted({"DATA": ["451 4.3.0 queue full, try later"]}) as server:
        transport = SmtpTransport("127.0.0.1", server.port, starttls=False, timeout=5)
        try:
            # When two messages are delivered on one connection
            with pytest.raises(TransientDeliveryError, match=re.escape("451 4.3.0 queue full")):
                transport.deliver(plain_message("j:1", ALICE, [DANA]), ALICE.email, [DANA.email])
            # Then the first waits for a retry, and the second goes out: its MAIL does not meet a
            # transaction left open ("503 nested MAIL", which would read as our sender refused)
            assert transport.deliver(plain_message("k:2", ALICE, [DANA]), ALICE.email, [DANA.email]) == {}
        finally:
            transport.close()
    assert len(server.messages) == 1 and b"X-Followthrough-Key: k:2" in server.messages[0]
    assert server.connections == 1


def test_a_server_that_takes_data_after_refusing_every_recipient_gets_an_empty_end() -> None:
    # Given a server that refuses the one recipient, then (wrongly) takes the DATA command anyway
    with scripted({"RCPT": ["550 5.1.1 no such user"], "DATA": ["354 go ahead"]}) as server:
        transport = SmtpTransport("127.0.0.1", server.port, starttls=False, timeout=5)
        try:
            # When a message is delivered
            with pytest.raises(PermanentDeliveryError, match="every recipient refused"):
                transport.deliver(plain_message("l:1", ALICE, [DANA]), ALICE.email, [DANA.email])
            # Then nothing of it was sent, and the next message goes out on the same connection
            assert transport.deliver(plain_message("m:2", ALICE, [DANA]), ALICE.email, [DANA.email]) == {}
        finally:
            transport.close()
    assert [b"X-Followthrough-Key: m:2" in m for m in server.messages] == [True]
    assert server.connections == 1


def test_a_421_among_the_recipients_is_a_retry_and_the_next_message_connects_again() -> None:
    # Given a server that takes the first recipient, then closes the connection at the second
    with scripted({"RCPT": ["250 2.1.5 ok", "421 4.4.5 too busy, closing"]}) as server:
        transport = SmtpTransport("127.0.0.1", server.port, starttls=False, timeout=5)
        try:
            # When a message to both is delivered
            with pytest.raises(TransientDeliveryError, match=re.escape("421 4.4.5 too busy")):
                transport.deliver(plain_message("n:1", ALICE, [DANA]), ALICE.email, [DANA.email, ALICE.email])
            # Then it waits for a retry, and the next message goes out on a new connection
            assert transport.deliver(plain_message("o:2", ALICE, [DANA]), ALICE.email, [DANA.email]) == {}
        finally:
            transport.close()
    assert [b"X-Followthrough-Key: o:2" in m for m in server.messages] == [True]
    assert server.connections == 2
