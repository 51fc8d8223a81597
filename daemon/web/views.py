"""What the console shows, as plain data: the schedule by day, history rows, a preview as JSON.

Pure functions of sends, rules and rendered emails; the routes in pages.py and api.py fetch, these shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.utils import getaddresses
from typing import Any
from zoneinfo import ZoneInfo

from daemon.display import addresses, status_text
from daemon.errors import Problem
from daemon.model import Rule, SendRecord, Status
from daemon.templates import Rendered

# Statuses as the page colours them; "waiting": pending, but held with a reason a person should read.
TROUBLE = frozenset({"failed", "unknown", "waiting"})


@dataclass(frozen=True)
class Row:
    """One send as a line of the schedule or history."""

    send: SendRecord
    when: str  # local time, HH:MM on the schedule, the full moment in history
    status: str  # pending | claimed | waiting | sent | failed | unknown | cancelled | skipped | stopped
    status_text: str
    recipients: list[str]
    copied: list[str]

    @property
    def trouble(self) -> bool:
        return self.status in TROUBLE or bool(self.send.refused)


@dataclass
class Day:
    day: date
    label: str  # "Today, Wednesday 2 December"
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class Schedule:
    waiting: list[Row]  # pending sends due before today: held, or not yet taken
    days: list[Day]
    later: int  # pending sends beyond the days shown


def status_of(send: SendRecord) -> str:
    if send.status is Status.PLANNED and send.reason:
        return "waiting"
    if send.status is Status.CLAIMED:
        return "claimed"
    return Status(send.status).public


def row(send: SendRecord, zone: ZoneInfo, when: str) -> Row:
    status = status_of(send)
    text = send.reason if status == "waiting" and send.reason else status_text(send, zone)
    return Row(send, when, status, text, addresses(send.to), addresses(send.cc))


def day_label(day: date, today: date) -> str:
    name = f"{day:%A} {day.day} {day:%B}" + (f" {day.year}" if day.year != today.year else "")
    if day == today:
        return f"Today, {name}"
    if day == today + timedelta(days=1):
        return f"Tomorrow, {name}"
    return name


def schedule(sends: list[SendRecord], zone: ZoneInfo, now: datetime, days: int | None) -> Schedule:
    """The sends due from the start of today (in the company's zone) for `days` days (None: all),
    grouped by day; cancelled ones left out. Pending sends from before today come first: they wait."""
    today = now.astimezone(zone).date()
    end = None if days is None else today + timedelta(days=days)
    waiting: list[Row] = []
    by_day: dict[date, Day] = {}
    later = 0
    for send in sorted(sends, key=lambda s: s.due):
        local = send.due.astimezone(zone)
        pending = send.status in (Status.PLANNED, Status.CLAIMED)
        if local.date() < today:
            if pending:
                waiting.append(row(send, zone, f"{local:%a %d %b %H:%M}"))
            continue
        if send.status is Status.CANCELLED:
            continue
        if end is not None and local.date() >= end:
            later += 1 if pending else 0
            continue
        entry = by_day.setdefault(local.date(), Day(local.date(), day_label(local.date(), today)))
        entry.rows.append(row(send, zone, f"{local:%H:%M}"))
    return Schedule(waiting, list(by_day.values()), later)


def history_rows(sends: list[SendRecord], zone: ZoneInfo) -> list[Row]:
    return [row(s, zone, f"{(s.sent_at or s.updated_at).astimezone(zone):%d %b %Y %H:%M}") for s in sends]


def header_people(value: str | None) -> list[str]:
    """`Ann <a@x>, "Belson, Gavin" <g@y>` as one string a person: names with commas stay whole."""
    if not value:
        return []
    return [f"{name} <{address}>" if name else address for name, address in getaddresses([value])]


def preview_json(
    rule: str, template: str | None, headers: list[tuple[str, str]], rendered: Rendered
) -> dict[str, Any]:
    """`GET /api/preview/<rule>`'s answer for an email that rendered."""
    named = dict(headers)
    return {
        "rule": rule,
        "template": template,
        "subject": rendered.subject,
        "from": named.get("From"),
        "to": header_people(named.get("To")),
        "cc": header_people(named.get("Cc")),
        "text": rendered.text,
        "html": rendered.html,
        "errors": [],
    }


def preview_failed(rule: str, template: str | None, problems: list[Problem | str]) -> dict[str, Any]:
    """The same answer for an email that did not render: no parts, the problems with file and line
    (a reason that is no template's fault, such as an event the rule sends nothing for, has neither)."""
    return {
        "rule": rule,
        "template": template,
        "subject": None,
        "from": None,
        "to": [],
        "cc": [],
        "text": None,
        "html": None,
        "errors": [
            p.as_json() if isinstance(p, Problem) else {"file": None, "line": None, "message": p}
            for p in problems
        ],
    }


def span(delta: timedelta) -> str:
    """`2 days`, `1 hour`, `30 minutes`, `1 day 12 hours`: a rule's offset as people say it."""
    seconds = int(abs(delta).total_seconds())
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts[:2])


def timing(rule: Rule) -> str:
    """When a rule sends: `24 hours before the start`, `at the outcome`, `90 days after the end`."""
    anchor = {"start": "the start", "end": "the end", "outcome": "the outcome"}[rule.anchor.value]
    if not rule.offset:
        return f"at {anchor}"
    return f"{span(rule.offset)} {'before' if rule.offset < timedelta(0) else 'after'} {anchor}"


def audience(rule: Rule) -> str:
    to = ", ".join(a.value for a in rule.to)
    return f"{to}; cc {', '.join(a.value for a in rule.cc)}" if rule.cc else to
