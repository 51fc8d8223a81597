"""Rendering without sending: `preview` of one email and `templates check` of them all.

Sample data is a made-up deal run through the real playbook, so templates are checked as they will be used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon import bundled
from daemon.config import Settings
from daemon.context import VARIABLES
from daemon.context import variables as send_variables
from daemon.errors import Problem, TemplateError, UserError
from daemon.ledger import open_ledger
from daemon.links import Links
from daemon.model import Attendee, Audience, CalendarEvent, Outcome, Person, PlannedSend
from daemon.playbook import OutcomeRecord, Policy, classify, plan
from daemon.render import Facts, Renderer, outcome_links
from daemon.templates import Rendered, Templates, when

SAMPLE_NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # fixed: a check gives the same answer every day
SAMPLE_LINKS = Links("https://followthrough.example.com", ("sample",), timedelta(days=30))


@dataclass(frozen=True)
class Shown:
    """One email as `preview` shows it: its send (the ledger's, or planned on the spot) and its text."""

    send: PlannedSend
    rendered: Rendered
    sample: bool  # rendered from the made-up sample deal, not from an event in the ledger


def sample_events(policy: Policy) -> tuple[CalendarEvent, CalendarEvent]:
    """A closing call and its kickoff with everything a template can show: answers to the invite
    (one tentative, one declined), and notes with every labelled line (see daemon/notes.py)."""
    domain = sorted(policy.company_domains)[0]
    rep = Person(f"sam.rivera@{domain}", "Sam Rivera")
    dana = Person("dana.fox@globex.example", "Dana Fox")
    lee = Person("lee.park@globex.example", "Lee Park")
    omar = Person("omar.haddad@globex.example", "Omar Haddad")
    closing = CalendarEvent(
        uid="sample-closing@followthrough",
        start=SAMPLE_NOW + timedelta(days=1),
        end=SAMPLE_NOW + timedelta(days=1, hours=1),
        title="Globex: final terms #closing",
        description=(
            "Dana owns the budget; Lee runs the ops team that will use it. Omar (procurement) signs off.\n"
            "Promised: SSO in the first week; weekly check-ins during the rollout\n"
            "Push-back: the shift leads, who lose their own spreadsheets\n"
            "Also involved: Ravi Shah (security), Dana Fox\n"
            "Follow-up: You mentioned looking at this again after the spring peak. If that's still the plan, "
            "I can send the checklist two ops teams used to move off spreadsheets in a month.\n"
            "Homework:\n- Send the SSO metadata\n- Name an internal admin\n- Share last quarter's volumes"
        ),
        timezone="America/New_York",
        organizer=rep,
        attendees=(
            Attendee(rep, status="ACCEPTED"),
            Attendee(dana, status="ACCEPTED"),
            Attendee(lee, status="TENTATIVE"),
            Attendee(omar, status="DECLINED"),
        ),
    )
    kickoff = CalendarEvent(
        uid="sample-kickoff@followthrough",
        start=SAMPLE_NOW + timedelta(days=8, hours=6),
        end=SAMPLE_NOW + timedelta(days=8, hours=7),
        title="Globex kickoff #kickoff",
        timezone="America/New_York",
        organizer=rep,
        attendees=(Attendee(rep, status="ACCEPTED"), Attendee(dana, status="ACCEPTED"), Attendee(lee)),
    )
    return closing, kickoff


def sample_policy(settings: Settings) -> Policy:
    policy = settings.policy()
    if policy.implementation:
        return policy
    # The check must also cover the lines that introduce implementation staff.
    return Policy(
        **{
            **policy.__dict__,
            "implementation": (Person("ivy.chen@" + sorted(policy.company_domains)[0], "Ivy Chen"),),
        }
    )


def _contexts(settings: Settings, policy: Policy, rule: str) -> list[dict[str, object]]:
    """Every situation a template may meet: with and without a kickoff, notes, people and staff."""
    closing, kickoff = sample_events(policy)
    bare = CalendarEvent(
        uid="sample-bare@followthrough",
        start=closing.start,
        end=closing.end,
        title="#closing",
        organizer=closing.organizer,
    )
    no_staff = Policy(**{**policy.__dict__, "implementation": (), "implementation_by_rep": {}})
    situations = (
        (closing, (closing, kickoff), policy),
        (kickoff, (closing, kickoff), policy),
        (bare, (), policy),
        (bare, (), no_staff),  # no implementation staff configured: no lead to introduce
    )
    contexts = []
    for event, deal_events, in_force in situations:
        for outcome in (Outcome.WON, Outcome.LOST, None):
            for audience in Audience:
                c = classify(event, in_force)
                to = (
                    (c.deal.people or (c.rep,))
                    if c and audience is Audience.CUSTOMER
                    else ((c.rep,) if c else ())
                )
                context = send_variables(
                    rule=rule,
                    event=event,
                    policy=in_force,
                    company=settings.company.name,
                    audience=audience,
                    to=to,
                    deal_events=deal_events,
                    outcome=outcome,
                    sent_at=SAMPLE_NOW,
                ).pick()
                # With the one-click outcome links where the rep's mail has them, and without.
                links = outcome_links(SAMPLE_LINKS, rule, audience, event, policy)
                contexts.append({**context, "links": None})
                if links is not None:
                    contexts.append({**context, "links": links})
    return contexts


def template_problems(templates: Templates, settings: Settings, policy: Policy) -> list[Problem]:
    """Every template and rep override rendered for every rule that uses it, in every sample situation."""
    problems: list[Problem] = list(templates.conflicts())
    uses: dict[str, list[str]] = {}
    for rule in policy.rules:
        if rule.enabled:
            uses.setdefault(rule.template_name, []).append(rule.name)
    for name in templates.names():
        uses.setdefault(name, [name])  # a template no rule uses yet is still checked
    for owner, name in templates.overrides():
        if name not in uses:
            problems.append(
                Problem(f"reps/{owner}/{name}", None, f"no rule sends {name!r}: this override is never used")
            )
    reps: list[str | None] = [None, *sorted({owner for owner, name in templates.overrides() if name in uses})]
    for name in sorted(uses):
        for rep in reps:
            if rep is not None and (rep, name) not in templates.overrides():
                continue
            for rule_name in uses[name]:
                for context in _contexts(settings, policy, rule_name):
                    try:
                        templates.render(name, context, rep=rep)
                    except TemplateError as exc:
                        if exc.problem not in problems:
                            problems.append(exc.problem)
                        break  # one problem per template and rule is enough to act on
    return problems


def check_templates(settings: Settings) -> tuple[list[Problem], int]:
    """Every template's problems, each naming its file and line; and how many files were checked."""
    templates = load_templates(settings)
    problems = template_problems(templates, settings, sample_policy(settings))
    checked = len(templates.names()) + len(templates.overrides())
    return problems, checked


def templates_note(templates: Templates) -> dict[str, Any]:
    """For `plan` and the console: the edits refused (the last good version runs) and what is broken."""
    stale = templates.stale()
    return {
        "refused": [p.as_json() for p in stale.values()],
        "broken": [p.as_json() for p in templates.problems or [] if p.file not in stale],
    }


def load_templates(settings: Settings) -> Templates:
    return Templates(settings.resolve(settings.templates.dir), defaults=bundled.TEMPLATES)


def _sample_send(settings: Settings, rule_name: str) -> tuple[Renderer, PlannedSend, Facts]:
    policy = sample_policy(settings)
    rule = policy.rule(rule_name)
    if rule is None:
        raise UserError(f"no rule named {rule_name!r}; rules: {', '.join(r.name for r in policy.rules)}")
    closing, kickoff = sample_events(policy)
    event = kickoff if rule.kind.value == "kickoff" else closing
    outcome = (
        OutcomeRecord(Outcome(rule.condition.value), SAMPLE_NOW)
        if rule.condition.value in ("won", "lost")
        else None
    )
    result = plan(event, classify(event, policy), outcome, policy)
    send = next((s for s in result.sends if s.rule == rule.name), None)
    if send is None:
        raise UserError(f"rule {rule.name!r} plans nothing for the sample deal: {result.dropped}")
    return _renderer(settings, policy, live_links=False), send, Facts(event, (closing, kickoff), outcome)


def preview_sample(settings: Settings, rule_name: str) -> tuple[list[tuple[str, str]], Rendered]:
    shown = sample_email(settings, rule_name)
    return _headers_of(settings, shown.send), shown.rendered


def preview_event(
    settings: Settings, rule_name: str, event_text: str, now: datetime
) -> tuple[list[tuple[str, str]], Rendered]:
    shown = event_email(settings, rule_name, event_text, now)
    return _headers_of(settings, shown.send), shown.rendered


def sample_email(settings: Settings, rule_name: str) -> Shown:
    """The rule's email for the sample deal. Raises UserError, TemplateError."""
    renderer, send, facts = _sample_send(settings, rule_name)
    return Shown(send, renderer.email(send, facts, send.due), sample=True)


def variables(settings: Settings, rule_name: str | None) -> list[dict[str, str]]:
    """Every template variable with its description and its value for the sample deal of `rule_name`
    (the first rule's when none is given)."""
    rule_name = rule_name or settings.policy().rules[0].name
    renderer, send, facts = _sample_send(settings, rule_name)
    context = renderer.context(send, facts, send.due)
    return [
        {"name": name, "description": description, "example": _example(context, name)}
        for name, description in VARIABLES
    ]


def _lookup(value: Any, parts: list[str]) -> Any:
    """The value at a variable's path; in a list (`[]`), the first item that has one."""
    if not parts:
        return value
    part, rest = parts[0], parts[1:]
    value = value.get(part.removesuffix("[]")) if isinstance(value, dict) else None
    if part.endswith("[]") and isinstance(value, list):
        found = [v for item in value if (v := _lookup(item, rest)) not in (None, "", [])]
        return found[0] if found else None
    return _lookup(value, rest)


def _example(context: dict[str, Any], name: str) -> str:
    value = _lookup(context, name.split("."))
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, dict):
        if "role" in value and "email" not in value:  # someone the notes name
            return f"{value['name']} ({value['role']})" if value["role"] else str(value["name"])
        if "email" in value:
            return f"{value['name']} <{value['email']}>"
        return f"{value['title']}, {when(value['start'])}" if "title" in value else json.dumps(value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return json.dumps(value)
    text = str(value)
    first = text.splitlines()[0] if text.strip() else text
    return first if first == text else first + " …"  # one line: the notes run on


def event_email(
    settings: Settings, rule_name: str, event_text: str, now: datetime, live_links: bool = True
) -> Shown:
    """The rule's email for an event in the ledger (its id, or a unique prefix): the send the ledger
    holds, or the one the event plans now. `live_links`: False for a copy that leaves this console (a
    test send), whose Won and Lost links must not work. Raises UserError, TemplateError."""
    with open_ledger(settings.store_url, settings.store.busy_timeout) as ledger:
        policy = settings.policy()
        renderer = _renderer(settings, policy, live_links)
        stored = ledger.find_event(event_text)
        key = f"{rule_name}:{stored.event.id}"
        send = ledger.send(key)
        if send is None:
            if policy.rule(rule_name) is None:
                raise UserError(
                    f"no rule named {rule_name!r}; rules: {', '.join(r.name for r in policy.rules)}"
                )
            c = classify(stored.event, policy)
            deal_events = ledger.events_of_deal(c.deal.name) if c else []
            outcome = ledger.outcome(stored.event.id)
            result = plan(stored.event, c, outcome, policy, deal_events)
            planned = next((s for s in result.sends if s.rule == rule_name), None)
            if planned is None:
                why = result.dropped.get(key, "the event is not a call of this rule's kind")
                raise UserError(f"rule {rule_name!r} sends nothing for event {stored.event.id}: {why}")
            # Rendered from what was just read, as `plan` does: the send is not in the ledger yet.
            rendered = renderer.email(planned, Facts(stored.event, deal_events, outcome), planned.due)
            return Shown(planned, rendered, sample=False)
        rendered = renderer.email(send, Facts.stored(ledger, send), send.sent_at or now)
        return Shown(send, rendered, sample=False)


def _renderer(settings: Settings, policy: Policy, live_links: bool) -> Renderer:
    links = settings.links() if live_links else inert_links(settings)
    return Renderer(load_templates(settings), policy, settings.company.name, links)


def inert_links(settings: Settings) -> Links | None:
    """Links as the emails show them, under the company's base_url, made with a key no server accepts:
    for sample data and test sends, whose clicks must change nothing."""
    if settings.web is None or settings.web.base_url is None:
        return None
    return Links(
        settings.web.base_url, ("a key for previews, which no server accepts",), settings.web.link_expiry
    )


def _headers_of(settings: Settings, send: PlannedSend) -> list[tuple[str, str]]:
    return _headers(settings, send.sender, send.to, send.cc, send.reply_to, send.due)


def _headers(
    settings: Settings,
    sender: Person | None,
    to: tuple[Person, ...],
    cc: tuple[Person, ...],
    reply_to: Person | None,
    due: datetime,
) -> list[tuple[str, str]]:
    headers = [("From", str(sender or settings.sender)), ("To", ", ".join(str(p) for p in to))]
    if cc:
        headers.append(("Cc", ", ".join(str(p) for p in cc)))
    if reply_to:
        headers.append(("Reply-To", str(reply_to)))
    headers.append(("Due", due.isoformat()))
    return headers
