"""Plain, typed domain values shared by every stage.

No I/O and no framework types: sources produce these, the playbook reads them, the ledger stores them.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from email.headerregistry import Address
from enum import StrEnum
from typing import Any

_ADDR_SPEC = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "phd", "md", "esq", "inc", "ltd", "llc", "gmbh"})
_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([QqBb])\?([^?\s]*)\?=")


def _decoded_word(match: re.Match[str]) -> str:
    charset, encoding, payload = match.groups()
    try:
        if encoding in "Qq":
            raw = quopri.decodestring(payload.replace("_", " ").encode("ascii", "replace"), header=True)
        else:
            raw = base64.b64decode(payload + "=" * (-len(payload) % 4))
        return raw.decode(charset.split("*", 1)[0] or "utf-8", "replace")
    except (LookupError, ValueError, binascii.Error):
        return payload


def decode_words(text: str) -> str:
    """`text` with RFC 2047 encoded words (`=?utf-8?q?...?=`) decoded, however deeply nested.

    Python's header folder decodes such words after we have cleaned a value (CVE-2024-6923), so an
    encoded CR LF in a display name or title would become a header line of its own: decode them
    first, so that cleaning sees what the folder would, and break any `=?` left over.
    """
    for _ in range(10):
        decoded = _ENCODED_WORD.sub(_decoded_word, text)
        if decoded == text:
            break
        text = decoded
    return text.replace("=?", "= ?")


def clean_line(text: str, limit: int = 200) -> str:
    """One line of plain text: encoded words decoded, control characters and newlines become spaces,
    length capped.

    Event text is untrusted; this is what keeps it from ever forming a header of its own.
    """
    return _one_line(decode_words(text), limit)


def clean_id(text: str, limit: int = 500) -> str:
    """An identifier from an event (a UID) on one line, its text otherwise kept as it is: ids must
    not change meaning between versions. Headers built from one go through `clean_line` again."""
    return _one_line(text, limit)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def parse_address(raw: str) -> str | None:
    """The bare, lower-cased address in `raw` (with or without `mailto:`), or None if invalid."""
    value = raw.strip()
    if value.lower().startswith("mailto:"):
        value = value[7:]
    value = value.strip().lower()
    # An encoded word in an address is decoded by the standard library's header parser: never one.
    valid = _ADDR_SPEC.match(value) and len(value) <= 254 and "=?" not in value
    return value if valid else None


@dataclass(frozen=True, order=True, slots=True)
class Person:
    """Someone who can receive mail: a validated address and a display name safe for a header."""

    email: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> Person:
        """Parse `Name <address>` or a bare address; raise ValueError naming the text if invalid."""
        match = re.fullmatch(r"\s*(.*?)\s*<([^<>]+)>\s*", text)
        name, raw = (match.group(1).strip('"'), match.group(2)) if match else ("", text)
        email = parse_address(raw)
        if email is None:
            raise ValueError(f"not an email address: {text!r}")
        return cls(email=email, name=clean_line(name, 100))

    @property
    def domain(self) -> str:
        return self.email.rsplit("@", 1)[1]

    @property
    def natural_name(self) -> str:
        """The name as it is spoken: directories write `Belson, Gavin`; "" when there is no real name
        (clients often put the address itself in the name)."""
        name = self.name.strip().strip('"').strip()
        if "@" in name or not name:
            return ""
        last, comma, first = (part.strip() for part in name.partition(","))
        if comma and first and "," not in first and first.lower().rstrip(".") not in _SUFFIXES:
            return f"{first} {last}"
        return name

    @property
    def display_name(self) -> str:
        """The name to show, or the address for someone without one (never a guess from it)."""
        return self.natural_name or self.email

    @property
    def first_name(self) -> str:
        """What to greet them by; "" without a name: "Hi," beats "Hi Tom.reed,"."""
        name = self.natural_name
        return name.split()[0].rstrip(",") if name else ""

    def header(self) -> Address:
        """The address for a header; the name cleaned again, whoever built this Person."""
        local, domain = self.email.split("@", 1)
        return Address(display_name=clean_line(self.name, 100), username=local, domain=domain)

    def __str__(self) -> str:
        return str(self.header())


@dataclass(frozen=True, slots=True)
class Attendee:
    person: Person
    role: str = "REQ-PARTICIPANT"
    status: str = "NEEDS-ACTION"
    kind: str = "INDIVIDUAL"  # iCalendar CUTYPE: rooms and resources never get mail

    @property
    def is_person(self) -> bool:
        return self.kind in ("INDIVIDUAL", "UNKNOWN", "")


class EventStatus(StrEnum):
    CONFIRMED = "confirmed"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class CalendarEvent:
    """One meeting, or one instance of a recurring series, as any source reports it."""

    uid: str
    start: datetime  # aware
    end: datetime  # aware
    title: str = ""
    description: str = ""
    timezone: str | None = None  # IANA name of the event's zone, if it has one
    all_day: bool = False
    organizer: Person | None = None
    attendees: tuple[Attendee, ...] = ()
    status: EventStatus = EventStatus.CONFIRMED
    recurrence_id: str | None = None  # the instance's original start, as text, for series
    properties: dict[str, str] = field(default_factory=dict)  # source-specific tags
    # Labels the calendar itself puts on the event (Outlook's categories): one named like a tag counts.
    categories: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """Stable across calendars: the iCalendar UID, plus the original start for an instance."""
        return f"{self.uid}/{self.recurrence_id}" if self.recurrence_id else self.uid

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "recurrence_id": self.recurrence_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "title": self.title,
            "description": self.description,
            "timezone": self.timezone,
            "all_day": self.all_day,
            "organizer": [self.organizer.email, self.organizer.name] if self.organizer else None,
            "attendees": [[a.person.email, a.person.name, a.role, a.status, a.kind] for a in self.attendees],
            "status": self.status.value,
            "properties": self.properties,
            "categories": list(self.categories),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalendarEvent:
        organizer = data.get("organizer")
        return cls(
            uid=data["uid"],
            recurrence_id=data.get("recurrence_id"),
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            title=data.get("title", ""),
            description=data.get("description", ""),
            timezone=data.get("timezone"),
            all_day=data.get("all_day", False),
            organizer=Person(organizer[0], organizer[1]) if organizer else None,
            attendees=tuple(
                Attendee(Person(e, n), role, status, kind)
                for e, n, role, status, kind in data.get("attendees", [])
            ),
            status=EventStatus(data.get("status", "confirmed")),
            properties=dict(data.get("properties") or {}),
            categories=tuple(data.get("categories") or ()),
        )


class Kind(StrEnum):
    CLOSING = "closing"
    KICKOFF = "kickoff"


class Outcome(StrEnum):
    WON = "won"
    LOST = "lost"


class Audience(StrEnum):
    REP = "rep"
    CUSTOMER = "customer"
    IMPLEMENTATION = "implementation"


class Condition(StrEnum):
    ALWAYS = "always"
    NO_OUTCOME = "no-outcome"
    WON = "won"
    LOST = "lost"


class Anchor(StrEnum):
    START = "start"
    END = "end"
    OUTCOME = "outcome"  # when the outcome was first seen (never before the call ends)


class Sender(StrEnum):
    REP = "rep"
    SERVICE = "service"


class Status(StrEnum):
    PLANNED = "planned"
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    STOPPED = "stopped"
    UNKNOWN = "unknown"  # handed to the mail server by a process that died before recording it

    @property
    def public(self) -> str:
        """The name `plan --json` promises: planned and claimed sends are both "pending"."""
        return "pending" if self in (Status.PLANNED, Status.CLAIMED) else self.value


@dataclass(frozen=True)
class Rule:
    """When to send which template to whom, relative to a closing or kickoff call."""

    name: str
    kind: Kind
    condition: Condition
    anchor: Anchor
    offset: timedelta
    to: tuple[Audience, ...]
    cc: tuple[Audience, ...] = ()
    sender: Sender = Sender.SERVICE
    business_hours: bool = False
    max_late: timedelta | None = None  # None: the schedule's max_late_days
    stop_on_reengagement: bool = False
    template: str = ""
    enabled: bool = True

    @property
    def template_name(self) -> str:
        return self.template or self.name

    @property
    def before_call(self) -> bool:
        """A prompt due before the call is pointless once the call has started."""
        return self.anchor is Anchor.START and self.offset <= timedelta(0)


@dataclass(frozen=True)
class Deal:
    """The customer side of an event: who they are and what the deal is called."""

    name: str
    company: str
    domains: tuple[str, ...]
    people: tuple[Person, ...]


@dataclass(frozen=True)
class Classification:
    kind: Kind | None
    rep: Person
    deal: Deal
    internal: tuple[Person, ...]  # company attendees other than the rep
    notes: str  # the description with the tags taken out


@dataclass(frozen=True)
class PlannedSend:
    key: str
    rule: str
    event_id: str
    deal: str
    due: datetime
    expires: datetime | None
    sender: Person | None  # None: the configured service sender
    reply_to: Person | None
    to: tuple[Person, ...]
    cc: tuple[Person, ...]
    audience: Audience  # who reads it: decides time zone and List-Unsubscribe
    template: str
    stop_on_reengagement: bool = False


@dataclass(frozen=True, kw_only=True)
class SendRecord(PlannedSend):
    """A planned send as the ledger holds it: the plan, plus where its delivery stands."""

    status: Status
    subject: str | None = None
    attempts: int = 0
    next_attempt: datetime | None = None
    attempt_id: str | None = None
    message_id: str | None = None
    refused: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    updated_at: datetime
    sent_at: datetime | None = None
    handed_at: datetime | None = None
    claimed_by: str | None = None  # while claimed: the instance holding it, until lease_until
    lease_until: datetime | None = None
    test: bool = False  # a test send (`preview --send-to`): sent at once, outside the plan

    @property
    def planned(self) -> PlannedSend:
        """The plan alone, to compare with a new one."""
        return PlannedSend(**{f.name: getattr(self, f.name) for f in fields(PlannedSend)})
