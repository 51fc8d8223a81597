"""The contract of `daemon/mail/__init__.py`, run against every transport: the outbox, SMTP
(aiosmtpd), Gmail and Microsoft Graph (their local fakes): deliver once, report refusals, say
transient when unreachable, check without sending.

What only Gmail does (quotas, grants, the sent-mail lookup) is in test_gmail.py; Graph's in
test_graph_mail.py.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from daemon.errors import TransientDeliveryError
from daemon.google.access import GMAIL_SEND_SCOPE
from daemon.mail import Transport
from daemon.mail.gmail import GmailTransport
from daemon.mail.graph import GraphTransport
from daemon.mail.message import build
from daemon.mail.outbox import OutboxTransport
from daemon.mail.smtp import SmtpTransport
from daemon.model import Person
from daemon.templates import Rendered
from tests.support.gmail_fake import FakeGmail, access_for
from tests.support.graph_fake import FakeGraph
from tests.support.microsoft import access_for as microsoft_access_for
from tests.support.ports import free_port
from tests.support.smtp import RecordingHandler, plain_message, serving

SENDER = Person("alice@acme.example", "Alice Moreno")
TO = (Person("dana@globex.com", "Dana Fox"), Person("lee@globex.com", "Lee Park"))


def message(key: str) -> Any:
    return plain_message(key, SENDER, TO)


@dataclass
class Setup:
    """A transport that works, one whose destination cannot be reached, and what arrived."""

    transport: Transport
    unreachable: Transport
    arrived: Callable[[], list[bytes]]  # each message delivered, as the bytes that arrived

    def delivered(self) -> list[str]:
        """The keys of the messages that arrived, sorted."""
        return sorted(str(parse(raw)["X-Followthrough-Key"]) for raw in self.arrived())


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.fixture(params=["outbox", "smtp", "gmail", "microsoft"])
def transports(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    if request.param == "outbox":
        (tmp_path / "blocked").write_text("a file where the folder should be")
        yield Setup(
            OutboxTransport(tmp_path / "outbox"),
            OutboxTransport(tmp_path / "blocked" / "outbox"),
            lambda: [p.read_bytes() for p in sorted((tmp_path / "outbox").glob("*.eml"))],
        )
    elif request.param == "smtp":
        handler = RecordingHandler()
        with serving(handler) as server:
            yield Setup(
                SmtpTransport(server.host, server.port, starttls=False, timeout=5),
                SmtpTransport("127.0.0.1", free_port(), starttls=False, timeout=5),
                lambda: [r.content for r in handler.messages()],
            )
    elif request.param == "microsoft":  # Graph's fake: an app with Mail.Send, the sender's own mailbox
        request.getfixturevalue("microsoft_secret")
        with FakeGraph(directory=tmp_path / "ca") as graph, FakeGraph(directory=tmp_path / "ca2") as down:
            nowhere = microsoft_access_for(down)
            down.close()  # its address now refuses connections, token endpoint included
            yield Setup(
                GraphTransport(microsoft_access_for(graph)),
                GraphTransport(nowhere),
                graph.raw_sent,
            )
    else:  # Gmail against its local fake: the sender's own mailbox, granted gmail.send
        gmail = request.getfixturevalue("gmail")
        request.getfixturevalue("google_sleeps")
        gmail.grant(SENDER.email, GMAIL_SEND_SCOPE)
        nowhere = FakeGmail(port=free_port())
        (tmp_path / "nowhere").mkdir()
        yield Setup(
            GmailTransport(access_for(gmail, tmp_path, SENDER)),
            GmailTransport(access_for(nowhere, tmp_path / "nowhere", SENDER, timeout=1.0)),
            lambda: list(gmail.raw),
        )


def test_each_delivery_arrives_once_and_the_transport_can_be_reused(transports: Setup) -> None:
    # Given a working transport
    transport = transports.transport
    # When two messages are delivered, the connection closed after each
    assert transport.deliver(message("a:1"), SENDER.email, [p.email for p in TO]) == {}
    transport.close()
    assert transport.deliver(message("b:2"), SENDER.email, [p.email for p in TO]) == {}
    transport.close()
    # Then each arrived once
    assert transports.delivered() == ["a:1", "b:2"]


def test_a_delivery_in_two_steps_is_one_delivery_on_the_same_connection(transports: Setup) -> None:
    # Given a working transport
    transport = transports.transport
    # When messages are handed over with start, each finished before the next starts
    recipients = [p.email for p in TO]
    first = transport.start(message("d:1"), SENDER.email, recipients)
    assert first() == {}
    second = transport.start(message("e:2"), SENDER.email, recipients)
    assert second() == {}
    transport.close()
    # Then each arrived once, as deliver would have made it
    assert transports.delivered() == ["d:1", "e:2"]


def test_an_unreachable_destination_is_a_transient_failure(transports: Setup) -> None:
    # Given a transport whose destination cannot be reached, when a message is handed to it,
    # then it fails as transient (worth a retry) and nothing arrived
    with pytest.raises(TransientDeliveryError):
        transports.unreachable.deliver(message("c:3"), SENDER.email, [p.email for p in TO])
    assert "c:3" not in transports.delivered()


def test_check_finds_a_working_transport_ready_and_sends_nothing(transports: Setup) -> None:
    # Given a working transport, when it is checked for a sender (as `doctor` does)
    found = transports.transport.check([SENDER.email])
    # Then every leg of the way out is ready, and nothing arrived
    assert found and all(ready.problem is None and ready.found for ready in found), found
    assert transports.arrived() == []


def test_check_finds_an_unreachable_destination_not_ready(transports: Setup) -> None:
    # Given a transport whose destination cannot be reached, when it is checked,
    # then it says what is wrong, and nothing arrived anywhere
    found = transports.unreachable.check([SENDER.email])
    assert any(ready.problem for ready in found), found
    assert transports.arrived() == []


# A customer controls their display name and anyone can write an invite's title: RFC 2047 encoded
# words that decode to CR LF must not become header lines (CVE-2024-6923 and its kin).
INJECTIONS = (
    "=?utf-8?q?Dan=0D=0ABcc:_attacker@evil.example?=",
    "=?utf-8?b?RGFuDQpCY2M6IGF0dGFja2VyQGV2aWwuZXhhbXBsZQ==?=",
    "=?utf-8?q?Dan=0AReply-To:_attacker@evil.example?=",
    "=?utf-8?q?=3D=3Futf-8=3Fq=3FDan=3D0D=3D0ABcc=3A=5Fattacker=40evil.example=3F=3D?=",  # nested
    "=?iso-8859-1?q?Dan=0D=0A=0D=0Abody?=",
)


def header_lines(raw: bytes) -> list[str]:
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("ascii")
    return [line for line in head.split("\n") if line and not line[0].isspace()]


@pytest.mark.parametrize("injection", INJECTIONS)
def test_encoded_words_in_names_and_subject_add_no_header_and_no_recipient(
    transports: Setup, injection: str
) -> None:
    # Given a message whose recipient's name, reply-to name and subject carry an encoded CR LF
    transport = transports.transport
    dan = Person("dan@globex.com", injection)
    built = build(
        key="inject:1",
        rendered=Rendered(f"Next steps {injection}", "text\n", "<p>html</p>\n"),
        sender=Person("alice@acme.example", injection),
        to=(dan,),
        cc=(TO[0],),
        reply_to=Person("alice@acme.example", injection),
        date=datetime(2026, 12, 1, tzinfo=UTC),
    )

    # When it is delivered
    transport.deliver(built, SENDER.email, ["dan@globex.com", TO[0].email])

    # Then the bytes that arrived hold exactly the header lines we set, once each
    [raw] = transports.arrived()
    names = [line.split(":", 1)[0].lower() for line in header_lines(raw)]
    assert names == [
        "from",
        "to",
        "cc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "x-followthrough-key",
        "mime-version",
        "content-type",
    ], header_lines(raw)
    # And the recipients are the planned ones, read back as a mail client reads them
    parsed = parse(raw)
    assert {a.addr_spec for a in parsed["To"].addresses} == {"dan@globex.com"}
    assert {a.addr_spec for a in parsed["Cc"].addresses} == {TO[0].email}
    assert {a.addr_spec for a in parsed["Reply-To"].addresses} == {"alice@acme.example"}
    assert parsed["Bcc"] is None
