"""What a template sees: the send, its event, the deal and the people, as plain values.

Times are already in the reader's zone: the customer's event zone for customer mail, the company's otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from daemon.model import Attendee, Audience, CalendarEvent, Classification, Outcome, Person
from daemon.notes import follow_up, homework, not_invited, other_notes, promised, push_back
from daemon.playbook import Policy, classify, customer_zone, related

# An attendee's answer to the invite, as a template shows it and tests it.
RESPONSES = {s.upper(): s for s in ("accepted", "declined", "tentative", "delegated")}
NO_REPLY = "no reply"


def person(p: Person) -> dict[str, str]:
    return {"name": p.display_name, "first_name": p.first_name, "email": p.email}


def people(group: Iterable[Person]) -> list[dict[str, str]]:
    return [person(p) for p in group]


def attendees(group: Iterable[Person], event: CalendarEvent) -> list[dict[str, str]]:
    """People on an event, each with their answer to its invite."""
    answers: dict[str, Attendee] = {}
    for attendee in event.attendees:
        answers.setdefault(attendee.person.email, attendee)
    return [
        {
            **person(p),
            "response": RESPONSES.get(answers[p.email].status.upper(), NO_REPLY)
            if p.email in answers
            else NO_REPLY,
        }
        for p in group
    ]


def staff(group: Iterable[Person], policy: Policy) -> list[dict[str, str]]:
    """Implementation people, each with the role the config gives them ("" without one)."""
    return [{**person(p), "role": policy.roles.get(p.email, "")} for p in group]


def at(start: datetime, all_day: bool) -> str:
    """`Wednesday 2 December at 12:00 EST`, or the day alone for an all-day event: how a person
    writes a meeting's time in a sentence (no year)."""
    day = f"{start:%A} {start.day} {start:%B}"
    return day if all_day else f"{day} at {start:%H:%M} {start.tzname() or ''}".rstrip()


def _capital(item: str) -> str:
    """A list item as a list shows it: first letter upper case, the rest as written (`SSO` stays)."""
    return item[:1].upper() + item[1:]


def event_view(
    event: CalendarEvent, policy: Policy, zone: ZoneInfo, c: Classification | None = None
) -> dict[str, Any]:
    """What a template sees of one event; `c`: its classification, when the caller has it already."""
    c = c if c is not None else classify(event, policy)
    notes = c.notes if c else policy.tags.strip(event.description)
    start = event.start.astimezone(zone)
    invited = [a.person for a in event.attendees]
    return {
        "id": event.id,
        "title": policy.tags.strip(event.title) or "(no title)",
        "start": start,
        "end": event.end.astimezone(zone),
        "at": at(start, event.all_day),
        "all_day": event.all_day,
        "timezone": zone.key,
        "notes": notes,
        "other_notes": other_notes(notes),
        "homework": [_capital(i) for i in homework(notes)],
        "promised": [_capital(i) for i in promised(notes)],
        "push_back": [_capital(i) for i in push_back(notes)],
        "follow_up": _capital(follow_up(notes)),
        "not_invited": [{"name": n.name, "role": n.role} for n in not_invited(notes, invited)],
        "customer": attendees(c.deal.people, event) if c else [],
        "internal": attendees(c.internal, event) if c else [],
    }


class Variables:
    """What a template sees, each variable worked out when first read: a subject line reads a few."""

    def __init__(self, ways: dict[str, Callable[[], Any]]) -> None:
        self._ways = ways
        self._values: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            self._values[name] = self._ways[name]()
        return self._values[name]

    def add(self, name: str, way: Callable[[], Any]) -> None:
        self._ways[name] = way

    def pick(self, names: Collection[str] | None = None) -> dict[str, Any]:
        """These variables (known ones; all of them for None), as the template's context."""
        return {name: self[name] for name in self._ways if names is None or name in names}


def variables(
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
) -> Variables:
    """Every variable of a send's email, each worked out when first read (`.pick()` for a context)."""
    c = classify(event, policy)
    kickoff, closing = related(event, deal_events, policy)
    zone = ZoneInfo(policy.company_timezone)
    if audience is Audience.CUSTOMER:
        zone = customer_zone(event, kickoff, policy)  # the zone their mail was planned in
    rep = c.rep if c else (event.organizer or Person("unknown@invalid"))
    implementation = policy.implementation_for(rep)
    return Variables(
        {
            "rule": lambda: rule,
            "company": lambda: {"name": company},
            "rep": lambda: person(rep),
            "deal": lambda: {
                "name": c.deal.name if c else "",
                "company": c.deal.company if c else "the customer",
                "domains": list(c.deal.domains) if c else [],
            },
            "customer": lambda: attendees(c.deal.people, event) if c else [],
            "internal": lambda: attendees(c.internal, event) if c else [],
            "implementation": lambda: staff(implementation, policy),
            "lead": lambda: staff(implementation[:1], policy)[0] if implementation else None,
            "recipients": lambda: people(to),
            "copied": lambda: people(cc),
            "event": lambda: event_view(event, policy, zone, c),
            "kickoff": lambda: event_view(kickoff, policy, zone) if kickoff else None,
            "closing": lambda: event_view(closing, policy, zone) if closing else None,
            "outcome": lambda: outcome.value if outcome else None,
            "zone": lambda: zone.key,
            "now": lambda: sent_at.astimezone(zone) if sent_at else None,
        }
    )


# Every variable a template can use, with what it is: `templates vars` and the README show this table,
# with example values from the sample deal. `[]` marks a list; `kickoff`, `closing` and `lead` may be none.
PERSON = "{name, first_name, email}"
ATTENDEE = "{name, first_name, email, response}"
STAFF = "{name, first_name, email, role}"
VARIABLES: tuple[tuple[str, str], ...] = (
    ("rule", "the rule this email is sent by"),
    ("company.name", "your company's name, from [company] name"),
    ("rep.name", "the rep who owns the deal: the closing call's organizer"),
    ("rep.first_name", "the rep's first name, to greet them"),
    ("rep.email", "the rep's address"),
    ("deal.name", "the deal's key: the customer's main domain"),
    ("deal.company", "the customer's company, as its domain reads (Globex for globex.example)"),
    ("deal.domains[]", "the customer's domains"),
    ("customer[]", f"the customer's people on the event: {ATTENDEE}"),
    ("customer[].response", f"their answer to the invite: {', '.join(RESPONSES.values())} or {NO_REPLY}"),
    ("internal[]", f"your company's people on the event: {ATTENDEE}"),
    ("implementation[]", f"the implementation staff for this rep's deals, from the config: {STAFF}"),
    ("implementation[].role", "what they do, from [team.roles], as the customer is told; empty without one"),
    ("lead", f"the first of them, who leads the implementation, or none: {STAFF}"),
    ("recipients[]", f"who this email goes to: {PERSON}"),
    ("copied[]", f"who is copied: {PERSON}"),
    ("event.title", "the event's title, tags removed"),
    ("event.start", "when it starts, in the reader's time zone (format it with the when or day filter)"),
    ("event.end", "when it ends"),
    ("event.at", "when it starts as a sentence says it, no year; the day alone for an all-day event"),
    ("event.all_day", "true for an all-day event"),
    ("event.timezone", "the time zone its times are shown in"),
    ("event.notes", "the rep's notes: the description without tags (the quote filter shows them)"),
    ("event.other_notes", "the notes without their labelled lines (Homework:, Promised:, ...)"),
    ("event.homework[]", "the items of the notes' 'Homework:' lines or lists (use the bullets filter)"),
    ("event.promised[]", "the items of the notes' 'Promised:' lines or lists: what the rep promised"),
    ("event.push_back[]", "the items of the notes' 'Push-back:' lines: who or what may push back"),
    ("event.follow_up", "the notes' 'Follow-up:' line: a customer-safe line for a later check-in"),
    ("event.not_invited[]", "named on the notes' 'Also involved:' lines, not on the invite: {name, role}"),
    ("event.customer[]", f"the customer's people on this event: {ATTENDEE}"),
    ("event.internal[]", f"your company's people on this event: {ATTENDEE}"),
    ("event.id", "the event's id in followthrough"),
    ("kickoff", "the deal's kickoff call, with the same fields as event, or none"),
    ("closing", "the deal's closing call, with the same fields as event, or none"),
    ("outcome", "won, lost, or none while no outcome is recorded"),
    ("links", "the rep's one-click outcome links in mail about a closing call, or none: {won, lost}"),
    ("zone", "the reader's time zone"),
    ("now", "when the email is sent, in the reader's time zone"),
)
