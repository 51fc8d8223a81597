"""Rendering one send: its template over the context of its event, the deal's events and the outcome.

The one path for `plan` (the subject, from the events in memory), the dispatcher and `preview`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon.context import Variables, variables
from daemon.email_parts import MarkdownSafe
from daemon.errors import TemplateError
from daemon.ledger import Known, Ledger
from daemon.links import Links
from daemon.model import Audience, CalendarEvent, Kind, Outcome, PlannedSend
from daemon.playbook import OutcomeRecord, Policy, event_kind
from daemon.templates import Rendered, Templates


@dataclass(frozen=True)
class Facts:
    """What a send's email is written from: its event, the deal's events and the outcome, if known."""

    event: CalendarEvent
    deal_events: Sequence[CalendarEvent]
    outcome: OutcomeRecord | None

    @classmethod
    def stored(cls, ledger: Ledger, send: PlannedSend) -> Facts:
        """As the ledger knows them now. Raises TemplateError when the send's event is not there."""
        stored = ledger.event(send.event_id)
        if stored is None:
            raise TemplateError(f"send {send.key}: its event {send.event_id} is not in the ledger")
        deal_events = ledger.events_of_deal(send.deal) if send.deal else []
        return cls(stored.event, deal_events, ledger.outcome(send.event_id))

    @classmethod
    def known(cls, known: Known, send: PlannedSend) -> Facts:
        """As a batch's read of the ledger found them (`Ledger.known`). Raises TemplateError when the
        send's event is not there."""
        event = known.events.get(send.event_id)
        if event is None:
            raise TemplateError(f"send {send.key}: its event {send.event_id} is not in the ledger")
        deal_events = known.deal_events.get(send.deal, ()) if send.deal else ()
        return cls(event, deal_events, known.outcomes.get(send.event_id))


@dataclass(frozen=True)
class Renderer:
    """The templates, the policy and the company name every rendering of a send needs; the links, when
    the company serves them."""

    templates: Templates
    policy: Policy
    company: str
    links: Links | None = None

    def email(self, send: PlannedSend, facts: Facts, at: datetime) -> Rendered:
        """The whole email as it reads at `at`. Raises TemplateError."""
        context = self.context(send, facts, at)
        return self.templates.render(send.template, context, rep=context["rep"]["email"])

    def subject(self, send: PlannedSend, facts: Facts, at: datetime) -> str:
        """Only the subject: what `plan` shows, at a fraction of the cost. Raises TemplateError."""
        known = self.variables(send, facts, at)
        rep = known["rep"]["email"]  # whose template it is
        names = self.templates.subject_names(send.template, rep)
        return self.templates.render_subject(send.template, known.pick(names), rep=rep)

    def context(self, send: PlannedSend, facts: Facts, at: datetime) -> dict[str, Any]:
        return self.variables(send, facts, at).pick()

    def variables(self, send: PlannedSend, facts: Facts, at: datetime) -> Variables:
        outcome = facts.outcome.outcome if facts.outcome else None
        found = variables(
            rule=send.rule,
            audience=send.audience,
            to=send.to,
            cc=send.cc,
            sent_at=at,
            event=facts.event,
            deal_events=facts.deal_events,
            outcome=outcome,
            policy=self.policy,
            company=self.company,
        )
        found.add(
            "links", lambda: outcome_links(self.links, send.rule, send.audience, facts.event, self.policy)
        )
        return found


def outcome_links(
    links: Links | None, rule: str, audience: Audience, event: CalendarEvent, policy: Policy
) -> dict[str, str] | None:
    """The rep's one-click Won and Lost links of a closing call, in mail to the rep:
    `won` and `lost` as Markdown links (the text part shows `Won <url>`), `won_url` and `lost_url` bare."""
    if links is None or audience != Audience.REP or event_kind(event, policy.tags) != Kind.CLOSING:
        return None
    urls = {o.value: links.outcome_url(event.id, o, rule) for o in (Outcome.WON, Outcome.LOST)}
    return {
        "won": MarkdownSafe(f"[Won]({urls['won']})"),
        "lost": MarkdownSafe(f"[Lost]({urls['lost']})"),
        "won_url": urls["won"],
        "lost_url": urls["lost"],
    }
