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

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.keys.append(str(parsed["X-Followthrough-Key"]))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Setup = tuple[Transport, Callable[[], list[str]], Transport]  # working, delivered keys, unreachable


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

        yield outbox, written, OutboxTransport(tmp_path / "blocked" / "outbox")
        return
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield (
            SmtpTransport("127.0.0.1", port, starttls=False, timeout=5),
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
