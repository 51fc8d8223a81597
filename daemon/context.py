"""What a template sees: the send, its event, the deal and the people, as plain values.

Times are already in the reader's zone: the customer's event zone for customer mail, the company's otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from daemon.model import Audience, CalendarEvent, Classification, Outcome, Person
from daemon.playbook import Policy, classify, customer_zone, homework, related


def person(p: Person) -> dict[str, str]:
    return {"name": p.display_name, "first_name": p.first_name, "email": p.email}


def people(group: Iterable[Person]) -> list[dict[str, str]]:
    return [person(p) for p in group]


def event_view(
    event: CalendarEvent, policy: Policy, zone: ZoneInfo, c: Classification | None = None
) -> dict[str, Any]:
    """What a template sees of one event; `c`: its classification, when the caller has it already."""
    c = c if c is not None else classify(event, policy)
    notes = c.notes if c else policy.tags.strip(event.description)
    return {
        "id": event.id,
        "title": policy.tags.strip(event.title) or "(no title)",
        "start": event.start.astimezone(zone),
        "end": event.end.astimezone(zone),
        "all_day": event.all_day,
        "timezone": zone.key,
        "notes": notes,
        "homework": list(homework(notes)),
        "customer": people(c.deal.people) if c else [],
        "internal": people(c.internal) if c else [],
    }


def build(
    *,
    rule: str,
    event: CalendarEvent,
    policy: Policy,
    company: str,
    audience: Audience,
    to: Sequence[Person],
    cc: Sequence[Person] = (),
    deal_events: Sequence[CalendarEvent] = (),
    outcome: Outcome | None = None,
    sent_at: datetime | None = None,
) -> dict[str, Any]:
    c = classify(event, policy)
    kickoff, closing = related(event, deal_events, policy)
    zone = ZoneInfo(policy.company_timezone)
    if audience is Audience.CUSTOMER:
        zone = customer_zone(event, kickoff, policy)  # the zone their mail was planned in
    rep = c.rep if c else (event.organizer or Person("unknown@invalid"))
    implementation = policy.implementation_for(rep)
    return {
        "rule": rule,
        "company": {"name": company},
        "rep": person(rep),
        "deal": {
            "name": c.deal.name if c else "",
            "company": c.deal.company if c else "the customer",
            "domains": list(c.deal.domains) if c else [],
        },
        "customer": people(c.deal.people) if c else [],
        "internal": people(c.internal) if c else [],
        "implementation": people(implementation),
        "lead": person(implementation[0]) if implementation else None,
        "recipients": people(to),
        "copied": people(cc),
        "event": event_view(event, policy, zone, c),
        "kickoff": event_view(kickoff, policy, zone) if kickoff else None,
        "closing": event_view(closing, policy, zone) if closing else None,
        "outcome": outcome.value if outcome else None,
        "zone": zone.key,
        "now": sent_at.astimezone(zone) if sent_at else None,
    }


# Every variable a template can use, with what it is: `templates vars` and the README show this table,
# with example values from the sample deal. `[]` marks a list; `kickoff`, `closing` and `lead` may be none.
PERSON = "{name, first_name, email}"
VARIABLES: tuple[tuple[str, str], ...] = (
    ("rule", "the rule this email is sent by"),
    ("company.name", "your company's name, from [company] name"),
    ("rep.name", "the rep who owns the deal: the closing call's organizer"),
    ("rep.first_name", "the rep's first name, to greet them"),
    ("rep.email", "the rep's address"),
    ("deal.name", "the deal's key: the customer's main domain"),
    ("deal.company", "the customer's company, as its domain reads (Globex for globex.example)"),
    ("deal.domains[]", "the customer's domains"),
    ("customer[]", f"the customer's people on the event: {PERSON}"),
    ("internal[]", f"your company's people on the event: {PERSON}"),
    ("implementation[]", f"the implementation staff for this rep's deals, from the config: {PERSON}"),
    ("lead", f"the first of them, who leads the implementation, or none: {PERSON}"),
    ("recipients[]", f"who this email goes to: {PERSON}"),
    ("copied[]", f"who is copied: {PERSON}"),
    ("event.title", "the event's title, tags removed"),
    ("event.start", "when it starts, in the reader's time zone (format it with the when or day filter)"),
    ("event.end", "when it ends"),
    ("event.all_day", "true for an all-day event"),
    ("event.timezone", "the time zone its times are shown in"),
    ("event.notes", "the rep's notes: the description without tags (show them with the quote filter)"),
    ("event.homework[]", "the items under a 'Homework:' line in the notes (the bullets filter lists them)"),
    ("event.customer[]", f"the customer's people on this event: {PERSON}"),
    ("event.internal[]", f"your company's people on this event: {PERSON}"),
    ("event.id", "the event's id in followthrough"),
    ("kickoff", "the deal's kickoff call, with the same fields as event, or none"),
    ("closing", "the deal's closing call, with the same fields as event, or none"),
    ("outcome", "won, lost, or none while no outcome is recorded"),
    ("zone", "the reader's time zone"),
    ("now", "when the email is sent, in the reader's time zone"),
)
