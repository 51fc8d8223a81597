"""Planning in bulk: the events a pass changed, planned against what the ledger knows of their deals.

Each deal's calls and the outcomes are read once, the plans made in memory by the playbook and written a
chunk at a time: a few transactions per few hundred events, however large the calendar or a deal.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime

from daemon.errors import LedgerError, TemplateError
from daemon.ledger import EventPlan, Filing, Ledger, StoredEvent
from daemon.model import CalendarEvent, EventStatus, Kind, Outcome, SendRecord
from daemon.playbook import (
    DealCalls,
    OutcomeRecord,
    Policy,
    acts_on,
    classify,
    customer_domains,
    deal_name,
    event_kind,
    plan,
    tagged_outcome,
)
from daemon.progress import Progress
from daemon.render import Facts, Renderer

log = logging.getLogger(__name__)

# Events planned and written together, in one transaction: a pass cut short loses at most one chunk's
# planning, which the next pass does again (`Engine.settle_interrupted`).
CHUNK = 500

# A live event a pass settled, with when it was first seen (None: ask the ledger) and its customer domains
# (None: not known yet).
Meeting = tuple[CalendarEvent, datetime | None, AbstractSet[str] | None]


def filing(event: CalendarEvent, policy: Policy, *, marked: bool | None = None) -> Filing:
    """How the ledger files the event, so that planning can look it up: the deal `classify` puts it in,
    the customers it meets, and whether it is a call (what planning reads of a deal). `marked`: as for
    `event_kind`."""
    domains = frozenset(customer_domains(event, policy))
    call = event_kind(event, policy.tags, marked=marked) is not None
    return Filing(deal_name(event, policy), domains, call)


@dataclass
class Settled:
    """What settling a pass's events did. An event in `problems` (why it cannot be planned) stays
    unsettled, so the next pass tries it again."""

    problems: dict[str, str] = field(default_factory=dict)
    replanned: int = 0
    stopped: list[tuple[str, str]] = field(default_factory=list)


class Deals:
    """The deals of one pass, each read from the ledger once: its calls, as `related` looks through
    them, and the closing calls that take the customer's zone from a kickoff (they say none themselves).
    `known`: events in memory already, as the ledger stores them, which need not be read again."""

    def __init__(self, ledger: Ledger, policy: Policy, known: Mapping[str, CalendarEvent]) -> None:
        self.ledger = ledger
        self.policy = policy
        self.known = dict(known)
        self.calls: dict[str, DealCalls] = {}
        self.zoneless_closings: dict[str, list[CalendarEvent]] = {}

    def load(self, deals: Iterable[str]) -> None:
        missing = [deal for deal in dict.fromkeys(deals) if deal not in self.calls]
        if not missing:
            return
        # Only a deal's calls matter here: its meetings, most of its events, are left in the ledger.
        members = self.ledger.deal_calls(missing)
        unknown = [i for ids in members.values() for i in ids if i not in self.known]
        if unknown:
            self.known.update((i, stored.event) for i, stored in self.ledger.events_by_id(unknown).items())
        tags = self.policy.tags
        for deal in missing:
            events = [self.known[i] for i in members.get(deal, ()) if i in self.known]
            calls = self.calls[deal] = DealCalls.of(events, self.policy)
            closings = {e.id for e in calls.closings}
            self.zoneless_closings[deal] = [
                e
                for e in events
                if not e.timezone
                and (
                    e.id in closings
                    or (e.status is EventStatus.CANCELLED and event_kind(e, tags) is Kind.CLOSING)
                )
            ]

    def of(self, deal: str) -> DealCalls:
        self.load([deal])
        return self.calls[deal]


class Planner:
    """Plans events from the ledger's view of their deals, and writes the plans in few transactions."""

    def __init__(self, ledger: Ledger, policy: Policy, renderer: Renderer, progress: Progress) -> None:
        self.ledger = ledger
        self.policy = policy
        self.renderer = renderer
        self.progress = progress

    # -- a pass's changes ---------------------------------------------------------------------------
    def settle(
        self,
        event_ids: Sequence[str],
        events: Mapping[str, CalendarEvent],
        now: datetime,
        domains: Mapping[str, AbstractSet[str]] | None = None,
        marked: Collection[str] | None = None,
    ) -> Settled:
        """Act on stored events that changed (`events`: those known in memory; `domains`: the customer domains
        of some of those, known already; `marked`: those of them with any tag, when known): their tagged
        outcomes, their plans, the closing calls of a kickoff's deal, a re-engagement.

        Ordinary meetings, most of them, are marked settled in bulk: no tag, no sends to move or cancel,
        no outcome to keep. Every event stays unsettled until its plan is committed.
        """
        tags = self.policy.tags
        involved = self.ledger.with_sends_or_outcome(list(event_ids))
        active: list[str] = []
        quiet: list[str] = []
        for event_id in event_ids:
            event = events.get(event_id)
            tagged = None if marked is None else event_id in marked
            if event_id in involved or (event is not None and acts_on(event, tags, marked=tagged)):
                active.append(event_id)
            else:
                quiet.append(event_id)
        done = Settled()
        deals = Deals(self.ledger, self.policy, events)
        followed = set(active)  # closings a kickoff re-plans once a pass; these are planned anyway
        for start in range(0, len(active), CHUNK):
            self.progress.planning(start, len(event_ids))
            chunk = active[start : start + CHUNK]
            self._settle_chunk(chunk, deals, followed, now, done)
        known = domains or {}
        meetings = [(e, None, known.get(i)) for i in quiet if (e := events.get(i)) is not None]
        # Stopped before they are marked settled: a pass cut short in between looks at them again.
        done.stopped += self._stop_on_reengagement(meetings, now, done)
        self.ledger.mark_settled([i for i in quiet if i not in done.problems])  # nothing to plan
        self.progress.planning(len(event_ids), len(event_ids))
        done.replanned += len(quiet)
        return done

    def _settle_chunk(
        self, chunk: list[str], deals: Deals, followed: set[str], now: datetime, done: Settled
    ) -> None:
        """Plan one chunk, stop the follow-ups its meetings end, and write the plans: the chunk's events are
        settled in that write, so a pass cut short before it does all of this again."""
        stored = self.ledger.events_by_id(chunk)
        ok: list[str] = []
        tagged: dict[str, Outcome | None] = {}
        kickoffs: dict[str, str] = {}  # kickoff id -> its deal
        wanted: set[str] = set()
        for event_id in chunk:
            found = stored.get(event_id)
            try:
                if found is not None:
                    c = classify(found.event, self.policy)
                    if not found.deleted:
                        tagged[event_id] = tagged_outcome(found.event, self.policy.tags)
                        if c is not None and c.kind is not None:
                            wanted.add(c.deal.name)
                    # A kickoff added, moved, or deleted: the zone of its deal's closing calls may change.
                    if c is not None and c.kind is Kind.KICKOFF:
                        kickoffs[event_id] = c.deal.name
                        wanted.add(c.deal.name)
            except Exception as exc:  # one event's surprise must not stop the others
                done.problems[event_id] = self._problem(event_id, exc)
                tagged.pop(event_id, None)
                continue
            ok.append(event_id)
        deals.load(wanted)
        following = {
            kickoff: [e for e in deals.zoneless_closings[deal] if e.id != kickoff]
            for kickoff, deal in kickoffs.items()
        }
        follow = {e.id: e for closings in following.values() for e in closings if e.id not in followed}
        known = self.ledger.outcomes([*ok, *follow])
        outcomes = self._after_tags(known, tagged, now)
        plans: list[EventPlan] = []
        meetings: list[Meeting] = []
        for event_id in ok:
            found = stored.get(event_id)
            live = found.event if found is not None and not found.deleted else None
            try:
                plans.append(self._plan(event_id, live, outcomes.get(event_id), deals, now))
            except Exception as exc:
                done.problems[event_id] = self._problem(event_id, exc)
                tagged.pop(event_id, None)
                continue
            done.replanned += 1 + len(following.get(event_id, ()))
            if found is not None and live is not None:
                meetings.append((live, found.first_seen, None))
            for closing in following.get(event_id, ()):
                if closing.id in follow and closing.id not in followed:
                    followed.add(closing.id)
                    try:
                        plans.append(self._plan(closing.id, closing, outcomes.get(closing.id), deals, now))
                    except Exception as exc:
                        done.problems[closing.id] = self._problem(closing.id, exc)
        done.stopped += self._stop_on_reengagement(meetings, now, done)
        plans = [p for p in plans if p.event_id not in done.problems]  # unsettled: tried again next pass
        written = self.ledger.write_plans(plans, now, tagged)
        for event_id, outcome in written.outcomes.items():
            if outcome is not None:
                log.info(
                    "event %s: outcome %s seen in its tags", event_id, outcome, extra={"event_id": event_id}
                )
            else:
                log.info("event %s: outcome tag removed", event_id, extra={"event_id": event_id})

    @staticmethod
    def _after_tags(
        known: Mapping[str, OutcomeRecord], tagged: Mapping[str, Outcome | None], now: datetime
    ) -> dict[str, OutcomeRecord]:
        """The outcomes once the tags are noted, as `Ledger.write_plans` notes them: a tag's outcome is
        learned now unless already known; a tag that is gone takes its outcome with it, not a person's."""
        outcomes = dict(known)
        for event_id, outcome in tagged.items():
            was = known.get(event_id)
            if outcome is not None and (was is None or was.outcome != outcome):
                outcomes[event_id] = OutcomeRecord(outcome, now, "tag")
            elif outcome is None and was is not None and was.source == "tag":
                del outcomes[event_id]
        return outcomes

    @staticmethod
    def _problem(event_id: str, exc: Exception) -> str:
        if isinstance(exc, LedgerError):
            raise exc
        log.error("event %s: cannot be planned", event_id, exc_info=exc, extra={"event_id": event_id})
        return f"event {event_id}: cannot be planned: {type(exc).__name__}: {exc}"

    # -- planning -----------------------------------------------------------------------------------
    def _plan(
        self,
        event_id: str,
        event: CalendarEvent | None,
        outcome: OutcomeRecord | None,
        deals: Deals,
        now: datetime,
    ) -> EventPlan:
        """The event's plan (`event`: None once deleted from every calendar), its subjects rendered."""
        if event is None:
            return EventPlan(event_id, cancel_all_reason="event deleted from every calendar")
        c = classify(event, self.policy)
        # Of the deal's events, a plan and a template read only the kickoff that tells where the customer
        # is and the closing call before this event: `related` finds the same two among these two alone.
        deal_events = [e for e in deals.of(c.deal.name).related(event) if e] if c and c.kind else []
        result = plan(event, c, outcome, self.policy, deal_events)
        # A send already past its deadline when planned is not news: note why, keep `plan` clean.
        dropped = dict(result.dropped)
        sends = []
        for send in result.sends:
            if send.expires is not None and send.expires < now:
                dropped[send.key] = f"already too late when planned (deadline {send.expires.isoformat()})"
            else:
                sends.append(send)
        # Subjects for `plan`; the whole email is rendered when it is sent, from the data of then.
        subjects = {}
        facts = Facts(event, deal_events, outcome)
        for send in sends:
            try:
                subjects[send.key] = self.renderer.subject(send, facts, send.due)
            except TemplateError as exc:  # shown in `plan`; the send itself retries at its time
                subjects[send.key] = f"(template error: {exc})"
        cancelled = "event cancelled" if event.status is EventStatus.CANCELLED else None
        return EventPlan(event_id, sends, subjects, dropped, cancel_all_reason=cancelled)

    def replan(self, event_ids: Sequence[str], now: datetime) -> dict[str, str]:
        """Plan these events again as they are stored (edited rules apply to events already known), a
        chunk at a time. Returns the events that cannot be planned, with why."""
        problems: dict[str, str] = {}
        deals = Deals(self.ledger, self.policy, {})
        for start in range(0, len(event_ids), CHUNK):
            self.progress.stored("planning", start, len(event_ids))
            chunk = event_ids[start : start + CHUNK]
            stored = self.ledger.events_by_id(chunk)
            outcomes = self.ledger.outcomes(chunk)
            deals.load(self._deals(found.event for found in stored.values() if not found.deleted))
            plans = []
            for event_id, found in stored.items():
                live = None if found.deleted else found.event
                try:
                    plans.append(self._plan(event_id, live, outcomes.get(event_id), deals, now))
                except Exception as exc:
                    problems[event_id] = self._problem(event_id, exc)
            self.ledger.write_plans(plans, now)
        self.progress.stored("planning", len(event_ids), len(event_ids))
        return problems

    def refile(self, event_ids: Sequence[str]) -> int:
        """File these events again as the rules see them now (their deal, domains, being a call), a chunk
        at a time: edited rules may have moved them, and planning looks them up that way. An event that
        cannot be filed keeps its filing, and says why in the log. Returns how many were filed anew."""
        written = 0
        for start in range(0, len(event_ids), CHUNK):
            self.progress.stored("filing", start, len(event_ids))
            filings: dict[str, tuple[Filing, str]] = {}
            for event_id, found in self.ledger.events_by_id(event_ids[start : start + CHUNK]).items():
                try:
                    filings[event_id] = (filing(found.event, self.policy), found.digest)
                except Exception as exc:  # one event's surprise must not stop the others
                    log.error(
                        "event %s: cannot be filed", event_id, exc_info=exc, extra={"event_id": event_id}
                    )
            written += self.ledger.refile(filings)
        self.progress.stored("filing", len(event_ids), len(event_ids))
        return written

    def replan_one(self, found: StoredEvent, now: datetime) -> dict[str, int]:
        """Plan one event again, as a person recorded its outcome: counts of sends planned, updated and
        cancelled."""
        event_id = found.event.id
        live = None if found.deleted else found.event
        deals = Deals(self.ledger, self.policy, {})
        new_plan = self._plan(event_id, live, self.ledger.outcome(event_id), deals, now)
        return dict(self.ledger.write_plans([new_plan], now).counts[event_id])

    def _deals(self, events: Iterable[CalendarEvent]) -> set[str]:
        """The deals these events are planned against: those of closing and kickoff calls."""
        return {c.deal.name for event in events if (c := classify(event, self.policy)) and c.kind}

    # -- re-engagement ------------------------------------------------------------------------------
    def _stop_on_reengagement(
        self, meetings: Sequence[Meeting], now: datetime, done: Settled
    ) -> list[tuple[str, str]]:
        """A new meeting with a lost customer ends the follow-up sequence at once. The pending sequences
        of all the meetings' customers are asked for at once; only news stops one: an outcome known before
        the meeting was first seen (`meetings`: each with that moment, None for "ask the ledger", and its
        customer domains, None for "find them")."""
        candidates = [
            (event, first_seen, domains)
            for event, first_seen, known in meetings
            if event.status is not EventStatus.CANCELLED
            and (domains := customer_domains(event, self.policy) if known is None else known)
        ]
        wanted = set().union(*(domains for _, _, domains in candidates))
        # Only an outcome known before a meeting was first seen (never after this pass began) stops
        # anything: in a first pass, none is.
        pending = self.ledger.pending_sequences(wanted, lost_before=now) if wanted else {}
        if not pending:
            return []
        outcomes = self.ledger.outcomes({s.event_id for sends in pending.values() for s in sends})
        lost = {domain for domain, sends in pending.items() if any(s.event_id in outcomes for s in sends)}
        candidates = [c for c in candidates if c[2] & lost]
        ask = [event.id for event, first_seen, _ in candidates if first_seen is None]
        seen = self.ledger.first_seen(ask) if ask else {}
        stopped: list[tuple[str, str]] = []
        tried: set[str] = set()
        for event, first_seen, domains in candidates:
            first_seen = first_seen or seen.get(event.id)
            if first_seen is None:
                continue
            try:
                stopped += self._stop_for(event, first_seen, domains & lost, pending, outcomes, tried, now)
            except LedgerError:
                raise
            except Exception as exc:  # one meeting's surprise must not stop the others
                done.problems[event.id] = self._problem(event.id, exc)
        return stopped

    def _stop_for(
        self,
        event: CalendarEvent,
        first_seen: datetime,
        domains: AbstractSet[str],
        pending: Mapping[str, Sequence[SendRecord]],
        outcomes: Mapping[str, OutcomeRecord],
        tried: set[str],
        now: datetime,
    ) -> list[tuple[str, str]]:
        """The follow-ups to the customers of `domains` that this meeting, first seen then, stops."""
        stopped: list[tuple[str, str]] = []
        for domain in sorted(domains):
            for send in pending[domain]:
                outcome = outcomes.get(send.event_id)
                if send.event_id == event.id or send.key in tried or outcome is None:
                    continue
                if outcome.seen_at >= first_seen:
                    continue  # known before the loss, or learned in the same pass: not news
                tried.add(send.key)
                reason = f"customer re-engaged: new event {event.title!r} ({event.id})"
                if self.ledger.stop_sequence(send.key, reason, now):
                    log.info(
                        "send %s stopped: %s",
                        send.key,
                        reason,
                        extra={"send_key": send.key, "event_id": send.event_id},
                    )
                    stopped.append((send.key, reason))
        return stopped
