"""The contract of `daemon/mail/__init__.py`, run against the outbox and SMTP transports (Gmail's runs
in test_gmail.py, against its own fake): deliver once, report refusals, say transient when unreachable."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from daemon.errors import TransientDeliveryError
from daemon.mail import Transport
from daemon.mail.message import build
from daemon.mail.outbox import OutboxTransport
from daemon.mail.smtp import SmtpTransport
from daemon.model import Person
from daemon.templates import Rendered

SENDER = Person("alice@acme.example", "Alice Moreno")
TO = (Person("dana@globex.com", "Dana Fox"), Person("lee@globex.com", "Lee Park"))


def message(key: str) -> Any:
    return build(
        key=key,
        rendered=Rendered("Hello", "text\n", "<p>html</p>\n"),
        sender=SENDER,
        to=TO,
        date=datetime(2026, 12, 1, tzinfo=UTC),
    )


class Recorder:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.raw: list[bytes] = []
        self.rcpt_tos: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.keys.append(str(parsed["X-Followthrough-Key"]))
        self.raw.append(envelope.original_content or envelope.content)
        self.rcpt_tos.append(list(envelope.rcpt_tos))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Setup = tuple[Transport, Callable[[], list[str]], Transport]  # working, delivered keys, unreachable
RAW: dict[int, Callable[[], list[bytes]]] = {}  # id(transport) -> the raw messages it delivered


@pytest.fixture(params=["outbox", "smtp"])
def transports(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    if request.param == "outbox":
        (tmp_path / "blocked").write_text("a file where the folder should be")
        outbox = OutboxTransport(tmp_path / "outbox")

        def written() -> list[str]:
            return sorted(
                str(
                    email.message_from_bytes(p.read_bytes(), policy=email.policy.default)[
                        "X-Followthrough-Key"
                    ]
                )
                for p in (tmp_path / "outbox").glob("*.eml")
            )

        RAW[id(outbox)] = lambda: [p.read_bytes() for p in sorted((tmp_path / "outbox").glob("*.eml"))]
        yield outbox, written, OutboxTransport(tmp_path / "blocked" / "outbox")
        return
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    smtp = SmtpTransport("127.0.0.1", port, starttls=False, timeout=5)
    RAW[id(smtp)] = lambda: list(recorder.raw)
    try:
        yield (
            smtp,
            lambda: sorted(recorder.keys),
            SmtpTransport("127.0.0.1", free_port(), starttls=False, timeout=5),
        )
    finally:
        controller.stop()


def test_each_delivery_arrives_once_and_the_transport_can_be_reused(transports: Setup) -> None:
    transport, delivered, _ = transports
    assert transport.deliver(message("a:1"), SENDER.email, [p.email for p in TO]) == {}
    transport.close()
    assert transport.deliver(message("b:2"), SENDER.email, [p.email for p in TO]) == {}
    transport.close()
    assert delivered() == ["a:1", "b:2"]


def test_an_unreachable_destination_is_a_transient_failure(transports: Setup) -> None:
    _, delivered, unreachable = transports
    with pytest.raises(TransientDeliveryError):
        unreachable.deliver(message("c:3"), SENDER.email, [p.email for p in TO])
    assert "c:3" not in delivered()


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
    transport, _, _ = transports
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
    [raw] = RAW[id(transport)]()
    names = [line.split(":", 1)[0].lower() for line in header_lines(raw)]
    assert names == [
        "from", "to", "cc", "reply-to", "subject", "date", "message-id", "x-followthrough-key",
        "mime-version", "content-type",
    ], header_lines(raw)
    # And the recipients are the planned ones, read back as a mail client reads them
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert {a.addr_spec for a in parsed["To"].addresses} == {"dan@globex.com"}
    assert {a.addr_spec for a in parsed["Cc"].addresses} == {TO[0].email}
    assert {a.addr_spec for a in parsed["Reply-To"].addresses} == {"alice@acme.example"}
    assert parsed["Bcc"] is None
