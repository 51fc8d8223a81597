"""Real aiosmtpd servers on 127.0.0.1 for the tests, handlers that record, stall or refuse, and a bare
scripted server for the answers aiosmtpd will not give.

`serving(handler)` starts one on a free port; each handler keeps what arrived so that a test can say
what a mail server (and so a customer) got.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from daemon.mail.message import build
from daemon.model import Person
from daemon.templates import Rendered
from tests.support.ports import free_port

PASSWORD = "correct horse battery staple"  # the account's password on AccountHandler servers
# Whether handlers made from now on offer PIPELINING (RFC 2920), as most mail servers do and aiosmtpd
# does not (it reads pipelined commands one by one all the same): see the `either_pipelining` fixture.
OFFER_PIPELINING = False


def plain_message(key: str, sender: Person, to: Sequence[Person]) -> EmailMessage:
    """A short message as the dispatcher builds one, for a transport tested on its own."""
    rendered = Rendered("Hello", "text\n", "<p>html</p>\n")
    return build(key=key, rendered=rendered, sender=sender, to=to, date=datetime(2026, 12, 1, tzinfo=UTC))


@dataclass(frozen=True)
class Received:
    """One message as the server got it: the envelope and the raw bytes."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def key(self) -> str:
        return str(self.message["X-Followthrough-Key"])

    @property
    def header_lines(self) -> list[str]:
        """The raw header block, line by line, continuation lines as they are."""
        head = self.content.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
        return head.decode("utf-8", "replace").split("\n")

    def raw_header(self, name: str) -> str | None:
        """A header's value exactly as sent (unfolded, not decoded), or None if absent."""
        value: list[str] | None = None
        for line in self.header_lines:
            if value is not None and line[:1] in (" ", "\t"):
                value.append(line.strip())
            elif value is not None:
                break
            elif line.lower().startswith(name.lower() + ":"):
                value = [line.split(":", 1)[1].strip()]
        return " ".join(value) if value is not None else None

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        content = body.get_content()
        assert isinstance(content, str)
        return content


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that keeps every envelope and refuses the recipients it is told to."""

    refuse: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pipelining: bool = field(default_factory=lambda: OFFER_PIPELINING)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")  # before the last line, "250 HELP"
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        with self.lock:
            self.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def to(self, address: str) -> list[Received]:
        """The messages whose envelope included `address`."""
        return [r for r in self.messages() if address.lower() in (a.lower() for a in r.rcpt_tos)]

    def arrivals(self) -> Counter[str]:
        """How many times each send arrived, by its X-Followthrough-Key."""
        return Counter(r.key for r in self.messages())


@dataclass
class SlowHandler(RecordingHandler):
    """A server that takes each message in, then is slow to say so: `delay` seconds before each 250.

    A client killed meanwhile has handed the message over without hearing back. `hold(stage, seconds)`
    makes the server stall that long at RCPT TO (before the message arrives) or after DATA (once it has
    arrived), and sets `holding` when it does; `release()` ends that for the next messages.
    """

    delay: float = 0.03
    held_stage: str | None = None
    held_for: float = 0.0
    holding: threading.Event = field(default_factory=threading.Event)

    def hold(self, stage: str, seconds: float) -> None:
        assert stage in ("RCPT", "DATA"), stage
        self.holding.clear()
        self.held_for = seconds
        self.held_stage = stage

    def release(self) -> None:
        self.held_stage = None
        self.holding.clear()

    async def _stall(self, stage: str) -> bool:
        if self.held_stage != stage:
            return False
        self.holding.set()
        await asyncio.sleep(self.held_for)
        return True

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        await self._stall("RCPT")
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)  # recorded: it has arrived
        if not await self._stall("DATA"):
            await asyncio.sleep(self.delay)
        return answer


@dataclass
class TroubledHandler(RecordingHandler):
    """A recording SMTP server that can be told to answer one stage of the dialogue with an error.

    `trouble` maps "MAIL", "RCPT" or "DATA" to the answer given there instead of accepting;
    `refuse` (inherited) names mailboxes that RCPT TO always refuses with 550 5.1.1.
    """

    trouble: dict[str, str] = field(default_factory=dict)
    tries: int = 0  # MAIL FROM commands seen: one per attempt to deliver a message
    stalls: int = 0  # for this many messages, take the message in, then answer only after `stall_for`
    stall_for: float = 0.0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        self.tries += 1
        if "MAIL" in self.trouble:
            return self.trouble["MAIL"]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if "RCPT" in self.trouble:
            return self.trouble["RCPT"]
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if "DATA" in self.trouble:
            return self.trouble["DATA"]
        answer = await super().handle_DATA(server, session, envelope)  # it has arrived
        if self.stalls > 0:
            self.stalls -= 1
            await asyncio.sleep(self.stall_for)
        return answer


@dataclass
class AccountHandler(TroubledHandler):
    """A recording server that counts connections (EHLO sessions) and AUTH attempts."""

    password: str = PASSWORD
    sessions: list[Any] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (mechanism, accepted)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        if not any(s is session for s in self.sessions):
            self.sessions.append(session)
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == self.password.encode()
        self.logins.append((mechanism, ok))
        return AuthResult(success=ok, handled=False)

    def requiring_login(self, **options: Any) -> dict[str, Any]:
        """aiosmtpd options for a server that takes mail only after a login (AUTH PLAIN and LOGIN)."""
        return {"authenticator": self.authenticate, "auth_required": True, **options}


@dataclass
class SmtpServer:
    handler: Any  # the handler given to `serving`
    host: str
    port: int


@contextmanager
def serving(handler: Any, port: int | None = None, **options: Any) -> Iterator[SmtpServer]:
    """A real aiosmtpd server on 127.0.0.1 with `handler`: on `port`, or on a free one; `options` go to
    aiosmtpd (TLS, AUTH)."""
    from aiosmtpd.controller import Controller

    controller: Controller | None = None
    for _ in range(1 if port else 5):  # a free port may be taken before we bind it: try another
        candidate = Controller(
            handler, hostname="127.0.0.1", port=port or free_port(), ready_timeout=10, **options
        )
        try:
            candidate.start()
        except (OSError, RuntimeError):
            continue
        controller = candidate
        break
    assert controller is not None, f"could not start the SMTP server (port {port or 'any'})"
    try:
        yield SmtpServer(handler, "127.0.0.1", controller.port)
    finally:
        controller.stop()


class ScriptedServer:
    """A bare SMTP server on 127.0.0.1, for what aiosmtpd will not do: refuse the DATA command itself,
    hang up after a 421, take DATA when every recipient was refused.

    `answers` maps a command ("MAIL", "RCPT", "DATA", or "END" for a message's last line) to the
    answers it gives, in turn, one each time the command comes; once they are used up, and for every
    other command, it answers as a plain server would. A 421 closes the connection after it.
    """

    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = {verb: list(said) for verb, said in (answers or {}).items()}
        self.pipelining = OFFER_PIPELINING
        self.commands: list[str] = []  # every command line, as received
        self.messages: list[bytes] = []  # each message taken (answered 250)
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _answer(self, verb: str, plain: str) -> str:
        said = self.answers.get(verb)
        return said.pop(0) if said else plain

    def _serve(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as lines:

            def say(answer: str) -> bool:
                connection.sendall(answer.encode() + b"\r\n")
                return not answer.startswith("421")

            say("220 scripted.example ESMTP")
            mail, recipients = False, 0
            while line := lines.readline():
                command = line.decode().rstrip("\r\n")
                self.commands.append(command)
                verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb == "EHLO":
                    offers = [
                        "scripted.example",
                        *(["PIPELINING"] if self.pipelining else []),
                        "SIZE 1000000",
                    ]
                    say("\r\n".join(f"250-{o}" for o in offers[:-1]) + f"\r\n250 {offers[-1]}")
                elif verb == "MAIL":
                    answer = self._answer("MAIL", "503 5.5.1 nested MAIL" if mail else "250 2.1.0 ok")
                    mail = mail or answer.startswith("250")
                    if not say(answer):
                        return
                elif verb == "RCPT":
                    answer = self._answer("RCPT", "250 2.1.5 ok" if mail else "503 5.5.1 need MAIL")
                    recipients += answer.startswith("250")
                    if not say(answer):
                        return
                elif verb == "DATA":
                    answer = self._answer(
                        "DATA", "354 go ahead" if recipients else "554 5.5.1 no valid recipients"
                    )
                    if not say(answer):
                        return
                    if answer.startswith("354"):
                        body = b""
                        while (part := lines.readline()) not in (b".\r\n", b""):
                            body += part
                        answer = self._answer(
                            "END", "250 2.0.0 queued" if recipients else "554 5.5.1 no recipients"
                        )
                        if answer.startswith("250"):
                            self.messages.append(body)
                        mail, recipients = False, 0
                        if not say(answer):
                            return
                elif verb == "RSET":
                    mail, recipients = False, 0
                    say("250 2.0.0 reset")
                elif verb == "QUIT":
                    say("221 2.0.0 bye")
                    return
                else:
                    say("250 2.0.0 ok")


@contextmanager
def scripted(answers: dict[str, list[str]] | None = None) -> Iterator[ScriptedServer]:
    server = ScriptedServer(answers)
    try:
        yield server
    finally:
        server.close()
