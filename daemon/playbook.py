"""The playbook: classify a calendar event and plan its sends from the rules.

Pure functions only: no clock, no I/O, no database. Everything they need comes in as arguments.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from daemon.model import (
    Anchor,
    Audience,
    CalendarEvent,
    Classification,
    Condition,
    Deal,
    EventStatus,
    Kind,
    Outcome,
    Person,
    PlannedSend,
    Rule,
    Sender,
)
from daemon.rules import DEFAULT_RULES

D = timedelta(days=1)


@functools.lru_cache(maxsize=64)
def _tag_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![\w#])(?:{alternatives})(?![\w-])", re.IGNORECASE)


@functools.lru_cache(maxsize=8192)
def _internal(company_domains: frozenset[str], domain: str) -> bool:
    """`Policy.is_internal`, remembered: a sync asks it of every attendee of every event."""
    domain = domain.lower()
    return any(domain == d or domain.endswith("." + d) for d in company_domains)


@functools.lru_cache(maxsize=8)
def _deal_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w#]){re.escape(prefix)}([\w.&-]+)", re.IGNORECASE)


@functools.lru_cache(maxsize=64)
def _label_names(words: tuple[str, ...]) -> frozenset[str]:
    return frozenset(w.strip().lower().lstrip("#") for w in words) - {""}


@dataclass(frozen=True)
class Tags:
    """Words that mark an event. Matched case-insensitively in the title or the description."""

    closing: tuple[str, ...] = ("#closing",)
    kickoff: tuple[str, ...] = ("#kickoff",)
    won: tuple[str, ...] = ("#won", "#signed")
    lost: tuple[str, ...] = ("#lost",)
    deal_prefix: str = "#deal:"

    @property
    def words(self) -> tuple[str, ...]:
        """Every tag word, of every kind."""
        return (*self.closing, *self.kickoff, *self.won, *self.lost)

    def _pattern(self, words: Iterable[str]) -> re.Pattern[str]:
        return _tag_pattern(tuple(words))

    def has(self, words: tuple[str, ...], text: str) -> bool:
        return bool(words) and self._pattern(words).search(text) is not None

    def labelled(self, words: tuple[str, ...], categories: Iterable[str]) -> bool:
        """Whether a category is named like one of the tags, with or without its `#`: Outlook users
        label events with categories ("Closing", "Won") rather than words in the text."""
        names = _label_names(tuple(words))
        return any(c.strip().lower().lstrip("#") in names for c in categories)

    def marks(self, words: tuple[str, ...], event: CalendarEvent) -> bool:
        """Whether the event carries one of the tags, in its title, description or categories."""
        text = f"{event.title}\n{event.description}"
        return self.has(words, text) or (bool(event.categories) and self.labelled(words, event.categories))

    def marks_any(self, event: CalendarEvent) -> bool:
        """Whether the event carries any tag at all: one search where `marks` of each kind of tag takes
        four, and most events carry none. A match of all the words is a match of one of them."""
        return self.marks(self.words, event)

    def deal(self, text: str) -> str | None:
        match = _deal_pattern(self.deal_prefix).search(text)
        return match.group(1) if match else None

    def strip(self, text: str) -> str:
        """The text with every tag taken out, for showing the rep's notes."""
        text = self._pattern(self.words).sub("", text) if self.words else text
        text = _deal_pattern(self.deal_prefix).sub("", text)
        return "\n".join(line.rstrip() for line in text.strip().splitlines())


@dataclass(frozen=True)
class BusinessHours:
    start: time = time(9)
    end: time = time(17)  # time.max stands for 24:00
    days: frozenset[int] = frozenset(range(5))  # Monday is 0
    timezone: str | None = None  # customer mail's zone when nothing says where the customer is


@dataclass(frozen=True)
class Policy:
    """Everything the planner needs to know about the company, from the config."""

    company_domains: frozenset[str]
    company_timezone: str = "UTC"
    tags: Tags = field(default_factory=Tags)
    rules: tuple[Rule, ...] = DEFAULT_RULES
    implementation: tuple[Person, ...] = ()
    implementation_by_rep: Mapping[str, tuple[Person, ...]] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)  # implementation address -> their role
    hours: BusinessHours = field(default_factory=BusinessHours)
    max_late: timedelta = 3 * D
    customer_timezones: Mapping[str, str] = field(default_factory=dict)  # customer domain -> IANA zone

    def is_internal(self, domain: str) -> bool:
        return _internal(self.company_domains, domain)

    def implementation_for(self, rep: Person) -> tuple[Person, ...]:
        return self.implementation_by_rep.get(rep.email, self.implementation)

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


@dataclass(frozen=True)
class OutcomeRecord:
    outcome: Outcome
    seen_at: datetime  # when followthrough first learned it: from a tag or the command line
    source: str = "tag"


@dataclass(frozen=True)
class Plan:
    sends: tuple[PlannedSend, ...]
    dropped: Mapping[str, str]  # send key -> why the rule does not apply (now)


_PROPERTY_PREFIX = "followthrough."


def event_kind(event: CalendarEvent, tags: Tags, *, marked: bool | None = None) -> Kind | None:
    """The kind of call the event is. `marked`: `Tags.marks_any` of the event, when already known."""
    prop = event.properties.get(_PROPERTY_PREFIX + "kind", "").strip().lower()
    if prop in (Kind.CLOSING, Kind.KICKOFF):
        return Kind(prop)
    if not (tags.marks_any(event) if marked is None else marked):
        return None
    if tags.marks(tags.closing, event):
        return Kind.CLOSING
    if tags.marks(tags.kickoff, event):
        return Kind.KICKOFF
    return None


def tagged_outcome(event: CalendarEvent, tags: Tags, *, marked: bool | None = None) -> Outcome | None:
    """The outcome the event's tags say. `marked`: as for `event_kind`."""
    prop = event.properties.get(_PROPERTY_PREFIX + "outcome", "").strip().lower()
    if prop in ("won", "signed"):
        return Outcome.WON
    if prop == "lost":
        return Outcome.LOST
    if not (tags.marks_any(event) if marked is None else marked):
        return None
    won, lost = tags.marks(tags.won, event), tags.marks(tags.lost, event)
    if won == lost:  # neither, or contradictory tags: no outcome until the rep settles it
        return None
    return Outcome.WON if won else Outcome.LOST


def acts_on(event: CalendarEvent, tags: Tags, *, marked: bool | None = None) -> bool:
    """Whether the event's tags give it a kind or an outcome (`event_kind` or `tagged_outcome`), found
    with one search of its text for an event without tags, as most are. `marked`: as for `event_kind`."""
    marked = tags.marks_any(event) if marked is None else marked
    return bool(event_kind(event, tags, marked=marked) or tagged_outcome(event, tags, marked=marked))


def company_name(domain: str) -> str:
    """A readable company name from a domain: `globex-corp.co.uk` -> `Globex Corp`."""
    label = domain.split(".")[0]
    return " ".join(part.capitalize() for part in re.split(r"[-_]", label) if part) or domain


def classify(event: CalendarEvent, policy: Policy) -> Classification | None:
    """Who is who in an event, or None when the company did not organize it (it triggers nothing)."""
    organizer = event.organizer
    if organizer is None or not policy.is_internal(organizer.domain):
        return None
    customers, internal = _parties(event, organizer, policy)
    name, explicit, domains = _deal(event, customers, policy)
    deal = Deal(
        name=name.lower(),
        company=company_name(domains[0]) if domains else (explicit or "the customer"),
        domains=domains,
        people=tuple(customers),
    )
    return Classification(
        kind=event_kind(event, policy.tags),
        rep=organizer,
        deal=deal,
        internal=tuple(internal),
        notes=policy.tags.strip(event.description),
    )


def deal_name(event: CalendarEvent, policy: Policy) -> str | None:
    """The name of the event's deal, as `classify` finds it, or None when it does not classify: what the
    ledger files each event of a sync under, without the rest of `classify`'s work."""
    organizer = event.organizer
    if organizer is None or not policy.is_internal(organizer.domain):
        return None
    return _deal(event, _parties(event, organizer, policy)[0], policy)[0].lower()


def _parties(event: CalendarEvent, organizer: Person, policy: Policy) -> tuple[list[Person], list[Person]]:
    """The event's customers and the company's people other than the organizer, each once."""
    customers: list[Person] = []
    internal: list[Person] = []
    for attendee in event.attendees:
        person = attendee.person
        if not attendee.is_person or person.email == organizer.email:
            continue
        bucket = internal if policy.is_internal(person.domain) else customers
        if person not in bucket:
            bucket.append(person)
    return customers, internal


def _deal(
    event: CalendarEvent, customers: list[Person], policy: Policy
) -> tuple[str, str | None, tuple[str, ...]]:
    """The deal's name as written, the name the event gives explicitly, and the customers' domains, most
    frequent first."""
    domains = tuple(d for d, _ in Counter(p.domain for p in customers).most_common())
    explicit = event.properties.get(_PROPERTY_PREFIX + "deal") or policy.tags.deal(
        f"{event.title}\n{event.description}"
    )
    return explicit or (domains[0] if domains else clean_deal(event.title) or event.uid), explicit, domains


def clean_deal(title: str) -> str:
    return re.sub(r"#\S+", "", title).strip()


def next_business_time(moment: datetime, zone: ZoneInfo, hours: BusinessHours) -> datetime:
    """The first instant at or after `moment` that falls in business hours, in UTC."""
    local = moment.astimezone(zone)
    day = local.date()
    for _ in range(8):
        if day.weekday() in hours.days:
            opens = datetime.combine(day, hours.start, tzinfo=zone)
            closes = (
                datetime.combine(day + D, time(0), tzinfo=zone)
                if hours.end == time.max
                else datetime.combine(day, hours.end, tzinfo=zone)
            )
            if local < opens:
                return opens.astimezone(UTC)
            if local < closes:
                return moment.astimezone(UTC)
        day += D
        local = datetime.combine(day, time(0), tzinfo=zone)
    return moment.astimezone(UTC)  # no business days configured: send when due


@dataclass(frozen=True)
class DealCalls:
    """A deal's kickoff and closing calls that are not cancelled, each earliest first: what `related`
    looks through, classified once however many of the deal's events are planned against it."""

    kickoffs: tuple[CalendarEvent, ...] = ()
    closings: tuple[CalendarEvent, ...] = ()

    @classmethod
    def of(cls, deal_events: Iterable[CalendarEvent], policy: Policy) -> DealCalls:
        kickoffs: list[CalendarEvent] = []
        closings: list[CalendarEvent] = []
        for e in deal_events:
            kind = event_kind(e, policy.tags) if e.status is not EventStatus.CANCELLED else None
            if kind is Kind.KICKOFF:
                kickoffs.append(e)
            elif kind is Kind.CLOSING:
                closings.append(e)
        # A stable sort: of calls at the same time, the first given comes first, as min() and max() pick.
        return cls(tuple(sorted(kickoffs, key=_start)), tuple(sorted(closings, key=_start)))

    def related(self, event: CalendarEvent) -> tuple[CalendarEvent | None, CalendarEvent | None]:
        """The deal's next kickoff after `event`, and its latest closing call before it."""
        after = bisect.bisect_right(self.kickoffs, event.start, key=_start)
        kickoff = next((e for e in self.kickoffs[after:] if e.id != event.id), None)
        last = bisect.bisect_left(self.closings, event.start, key=_start) - 1
        while last >= 0 and self.closings[last].id == event.id:
            last -= 1
        if last < 0:
            return kickoff, None
        first = last
        while first > 0 and self.closings[first - 1].start == self.closings[last].start:
            first -= 1
        closing = next(e for e in self.closings[first : last + 1] if e.id != event.id)
        return kickoff, closing


def _start(event: CalendarEvent) -> datetime:
    return event.start


def related(
    event: CalendarEvent, deal_events: Sequence[CalendarEvent], policy: Policy
) -> tuple[CalendarEvent | None, CalendarEvent | None]:
    """The deal's next kickoff after this event, and its latest closing call before it."""
    return DealCalls.of(deal_events, policy).related(event)


def customer_zone(event: CalendarEvent, kickoff: CalendarEvent | None, policy: Policy) -> ZoneInfo:
    """The one zone the customer lives in, for planning their mail and for the times it shows.

    The event's own zone, else their kickoff's (the deal's next, as `related` finds it), else the zone
    configured for their domain, else `[schedule] business_timezone`, else the company's. An event in
    UTC says nothing of where anyone is.
    """
    if event.timezone:
        return ZoneInfo(event.timezone)
    if kickoff is not None and kickoff.timezone:
        return ZoneInfo(kickoff.timezone)
    for domain in sorted(customer_domains(event, policy)):
        parts = domain.split(".")
        for i in range(len(parts) - 1):  # a subdomain counts as its company's domain
            configured = policy.customer_timezones.get(".".join(parts[i:]))
            if configured:
                return ZoneInfo(configured)
    return ZoneInfo(policy.hours.timezone or policy.company_timezone)


def _anchor(rule: Rule, event: CalendarEvent, outcome: OutcomeRecord | None) -> datetime:
    if rule.anchor is Anchor.START:
        return event.start
    if rule.anchor is Anchor.END or outcome is None:
        return event.end
    return max(outcome.seen_at, event.end)


def _condition_fails(rule: Rule, outcome: OutcomeRecord | None) -> str | None:
    if rule.condition is Condition.NO_OUTCOME and outcome is not None:
        return f"outcome recorded: {outcome.outcome}"
    if rule.condition in (Condition.WON, Condition.LOST):
        if outcome is None:
            return "no outcome recorded"
        if outcome.outcome.value != rule.condition.value:
            return f"outcome is {outcome.outcome}"
    return None


def _people(audiences: tuple[Audience, ...], c: Classification, policy: Policy) -> list[Person]:
    people: list[Person] = []
    for audience in audiences:
        if audience is Audience.REP:
            group: Iterable[Person] = (c.rep,)
        elif audience is Audience.CUSTOMER:
            group = c.deal.people
        else:
            group = policy.implementation_for(c.rep)
        people += [p for p in group if p not in people]
    return people


def plan(
    event: CalendarEvent,
    classification: Classification | None,
    outcome: OutcomeRecord | None,
    policy: Policy,
    deal_events: Sequence[CalendarEvent] = (),
) -> Plan:
    """The sends this event calls for, and why each other rule of its kind does not apply.

    `deal_events`: the deal's other events, which can tell where the customer is (their kickoff).
    """
    if classification is None or classification.kind is None:
        return Plan((), {})
    c = classification
    zone = customer_zone(event, related(event, deal_events, policy)[0], policy)
    sends: list[PlannedSend] = []
    dropped: dict[str, str] = {}
    for rule in policy.rules:
        if rule.kind is not c.kind:
            continue
        key = f"{rule.name}:{event.id}"
        why = (
            "rule disabled"
            if not rule.enabled
            else "event cancelled"
            if event.status is EventStatus.CANCELLED
            else _condition_fails(rule, outcome)
        )
        sender = c.rep if rule.sender is Sender.REP else None
        to = _people(rule.to, c, policy)
        # Nobody is copied on mail sent in their own name: the rep has it, and a customer would
        # read the rep copying themselves as a machine writing.
        cc = [p for p in _people(rule.cc, c, policy) if p not in to and p != sender]
        if why is None and not to:
            why = f"nobody to send to ({', '.join(rule.to)})"
        if why is not None:
            dropped[key] = why
            continue
        due = _anchor(rule, event, outcome) + rule.offset
        if outcome is not None and rule.condition in (Condition.WON, Condition.LOST):
            due = max(due, outcome.seen_at)  # never act on an outcome before knowing it
        if rule.business_hours:
            due = next_business_time(due, zone, policy.hours)
        expires = event.start if rule.before_call else due + (rule.max_late or policy.max_late)
        audience = (
            Audience.CUSTOMER
            if Audience.CUSTOMER in rule.to
            else Audience.IMPLEMENTATION
            if Audience.IMPLEMENTATION in rule.to
            else Audience.REP
        )
        sends.append(
            PlannedSend(
                key=key,
                rule=rule.name,
                event_id=event.id,
                deal=c.deal.name,
                due=due.astimezone(UTC),
                expires=expires.astimezone(UTC),
                sender=sender,
                reply_to=None if audience is Audience.REP else c.rep,
                to=tuple(to),
                cc=tuple(cc),
                audience=audience,
                template=rule.template_name,
                stop_on_reengagement=rule.stop_on_reengagement,
            )
        )
    return Plan(tuple(sends), dropped)


def customer_domains(event: CalendarEvent, policy: Policy) -> set[str]:
    """Every outside domain in an event, whoever organized it: a meeting with them at all."""
    domains = {a.person.domain for a in event.attendees if a.is_person}
    if event.organizer:
        domains.add(event.organizer.domain)
    return {d for d in domains if not policy.is_internal(d)}
