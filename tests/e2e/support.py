"""End-to-end helpers: the CLI as a subprocess, a recording SMTP handler, ICS and config writers.

Nothing is mocked: the subprocess reads the calendar written here, keeps its ledger in tmp_path and talks
SMTP to an aiosmtpd server running in the test process. It uses the real clock, so every event is placed
relative to `datetime.now(UTC)`.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = ROOT / "templates" / "email"
TIMEOUT = 60
H = timedelta(hours=1)

REP = ("alice@acme.example", "Alice Moreno")
IVY = ("ivy@acme.example", "Ivy Chen")
SENDER = "ft@acme.example"


# -- the SMTP side ---------------------------------------------------------------------------
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
class SmtpServer:
    handler: RecordingHandler
    host: str
    port: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(handler: RecordingHandler, port: int | None = None) -> Iterator[SmtpServer]:
    """A real aiosmtpd server on 127.0.0.1 with `handler`: on `port`, or on a free one."""
    from aiosmtpd.controller import Controller

    controller: Controller | None = None
    for _ in range(1 if port else 5):  # a free port may be taken before we bind it: try another
        candidate = Controller(handler, hostname="127.0.0.1", port=port or free_port(), ready_timeout=10)
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


# -- the calendar ----------------------------------------------------------------------------
def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def escape_text(text: str) -> str:
    """RFC 5545 TEXT escaping: a real newline in `text` becomes backslash-n in the file."""
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def fold(line: str) -> str:
    """RFC 5545 line folding at 75 octets."""
    if len(line.encode("utf-8")) <= 75:
        return line
    parts: list[str] = []
    current = ""
    limit = 75
    for char in line:
        if len((current + char).encode("utf-8")) > limit:
            parts.append(current)
            current = ""
            limit = 74  # the leading space of a continuation line counts
        current += char
    parts.append(current)
    return "\r\n ".join(parts)


def _param(value: str) -> str:
    return f'"{value}"' if any(c in value for c in ":;,") else value


def vevent(
    uid: str,
    start: datetime,
    end: datetime,
    summary: str,
    *,
    description: str = "",
    organizer: tuple[str, str] = REP,
    attendees: Sequence[tuple[str, str]] = (),
) -> str:
    """One VEVENT; the organizer also attends. Attendee names go into CN verbatim (quoted if needed)."""
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{stamp(datetime.now(UTC))}",
        f"DTSTART:{stamp(start)}",
        f"DTEND:{stamp(end)}",
        f"SUMMARY:{escape_text(summary)}",
    ]
    if description:
        lines.append(f"DESCRIPTION:{escape_text(description)}")
    lines.append(f"ORGANIZER;CN={_param(organizer[1])}:mailto:{organizer[0]}")
    for address, name in (organizer, *attendees):
        lines.append(f"ATTENDEE;CN={_param(name)};PARTSTAT=ACCEPTED:mailto:{address}")
    lines.append("END:VEVENT")
    return "\r\n".join(fold(line) for line in lines)


def calendar(*events: str) -> str:
    return "\r\n".join(
        ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//followthrough e2e//EN", *events, "END:VCALENDAR", ""]
    )


# -- the config and the CLI ------------------------------------------------------------------
CONFIG = """\
[company]
name = "Acme Analytics"
domains = ["acme.example"]
timezone = "Europe/Berlin"

{calendars}
[mail]
transport = "smtp"
from = "Followthrough <ft@acme.example>"
{mail}

[mail.smtp]
host = "127.0.0.1"
port = {port}
starttls = false
timeout = 10

[store]
url = "sqlite:///followthrough.db"

[team]
implementation = ["Ivy Chen <ivy@acme.example>"]

[schedule]
business_hours = "00:00-24:00"
business_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
{extra}
"""

CALENDAR = """\
[[calendars]]
name = "{name}"
source = "ics"
path = "{path}"
owner = "alice@acme.example"
"""


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, config: Path | None = None) -> Result:
    """`python -m daemon [--config CONFIG] ARGS...` from the project root, no FOLLOWTHROUGH_* in the env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWTHROUGH_")}
    command = [sys.executable, "-m", "daemon"]
    if config is not None:
        command += ["--config", str(config)]
    done = subprocess.run(
        [*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr)


def write_config(
    directory: Path,
    port: int,
    *,
    calendars: Sequence[tuple[str, str]] = (("sales", "calendar.ics"),),
    extra: str = "",
    mail: str = "",
) -> Path:
    """`extra` goes at the end, after [schedule] (keys for it, or new tables); `mail` goes into [mail]."""
    blocks = "".join(CALENDAR.format(name=name, path=path) + "\n" for name, path in calendars)
    path = directory / "followthrough.toml"
    path.write_text(CONFIG.format(calendars=blocks, port=port, extra=extra, mail=mail), encoding="utf-8")
    return path


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
