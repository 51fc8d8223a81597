"""One pass of the pipeline: sync every calendar, re-plan what changed, send what is due.

`tick` runs one pass; the scheduler calls the same methods on its own timetable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from daemon import collector
from daemon.backends import Wiring, make_sources, make_transport
from daemon.config import Settings
from daemon.delivery import Delivery, DispatchReport
from daemon.dispatch import Dispatcher
from daemon.errors import LedgerError, SourceError, UserError
from daemon.instances import dead_here, instance_id
from daemon.ledger import CalendarChanges, Ledger, open_ledger
from daemon.mail import Transport
from daemon.model import CalendarEvent, Outcome
from daemon.operations import TEMPLATES_META
from daemon.planner import Planner, filing
from daemon.playbook import Policy, classify
from daemon.preview import load_templates, sample_policy, template_problems, templates_note
from daemon.progress import Progress
from daemon.render import Renderer
from daemon.sources import CalendarSource

log = logging.getLogger(__name__)

# How long one instance may hold a calendar's sync before another may take it over.
SYNC_LEASE = timedelta(minutes=15)


@dataclass
class CalendarReport:
    name: str
    error: str | None = None
    unchanged: bool = False
    busy: bool = False  # another instance is syncing it right now
    new: int = 0
    changed: int = 0
    gone: int = 0
    problems: list[str] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)  # events that could not be read or planned
    seconds: float = 0.0  # how long its sync took


@dataclass
class PassReport:
    calendars: list[CalendarReport] = field(default_factory=list)
    dispatch: DispatchReport = field(default_factory=DispatchReport)
    replanned: int = 0
    stopped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.error or c.unusable for c in self.calendars) or self.dispatch.trouble


def policy_digest(policy: Policy) -> str:
    """Stable across processes: sets are sorted, since their order changes with hash seeds."""
    stable = (
        sorted(policy.company_domains),
        policy.company_timezone,
        policy.tags,
        policy.rules,
        policy.implementation,
        sorted(policy.implementation_by_rep.items()),
        (policy.hours.start, policy.hours.end, sorted(policy.hours.days), policy.hours.timezone),
        policy.max_late,
        sorted(policy.customer_timezones.items()),
    )
    return hashlib.blake2b(repr(stable).encode(), digest_size=12).hexdigest()


class Engine:
    """The pipeline wired from a config: sources, playbook, ledger, dispatcher."""

    def __init__(
        self,
        settings: Settings,
        *,
        ledger: Ledger | None = None,
        transport: Transport | None = None,
        sources: list[CalendarSource] | None = None,
        watch_templates: bool = False,
    ) -> None:
        self.settings = settings
        self.watch_templates = watch_templates  # `run`: take template edits as they are saved
        self._templates_noted: dict[str, Any] | None = None
        self.policy = settings.policy()
        self.ledger = ledger or open_ledger(settings.store_url, settings.store.busy_timeout)
        self.instance = instance_id()
        self._last_error: dict[str, str] = {}
        templates = load_templates(settings)
        links = settings.links()
        self.renderer = Renderer(templates, self.policy, settings.company.name, links)
        self.planner = Planner(self.ledger, self.policy, self.renderer, Progress())
        wiring = Wiring(settings, self.ledger)
        self.sources = sources if sources is not None else make_sources(wiring)
        self.dispatcher = Dispatcher(
            self.ledger,
            transport or make_transport(wiring),
            self.renderer,
            service_sender=settings.sender,
            unsubscribe=settings.unsubscribe_address,
            links=links,
            delivery=Delivery(
                lease=settings.schedule.claim_lease,
                retry_base=settings.schedule.retry_base,
                resend_unknown_prompts=settings.mail.resend_unknown_prompts,
                max_recipients=settings.mail.max_recipients,
            ),
            instance=self.instance,
            is_dead=dead_here,
        )

    def close(self) -> None:
        self.ledger.close()

    @property
    def progress(self) -> Progress:
        """`tick` and `demo` on a terminal show the pass as it goes, planning included."""
        return self.planner.progress

    @progress.setter
    def progress(self, progress: Progress) -> None:
        self.planner.progress = progress

    # -- one pass -------------------------------------------------------------------------
    def tick(self, now: datetime) -> PassReport:
        report = PassReport()
        try:
            if self.watch_templates:
                self.reload_templates(now)
            self.settle_interrupted(now, report)
            report.replanned += self.replan_if_rules_changed(now)
            for index, source in enumerate(self.sources, 1):
                self.progress.calendar(source.name, index, len(self.sources))
                report.calendars.append(self.sync(source, now, report))
        finally:
            self.progress.done()
        report.dispatch = self.dispatcher.dispatch_due(now)
        return report

    def reload_templates(self, now: datetime) -> None:
        """Take the template edits that pass the check; the others keep their last good version. What
        runs is noted in the ledger, for `plan` and the console."""
        templates = self.renderer.templates
        policy = sample_policy(self.settings)
        templates.reload(lambda t: template_problems(t, self.settings, policy))
        note = templates_note(templates)
        if note != self._templates_noted:
            if self._templates_noted is None:  # at start: what is broken cannot send until fixed
                for problem in templates.problems or []:
                    log.error("template %s: sends that use it wait until it is fixed", problem)
            self.ledger.set_meta(TEMPLATES_META, json.dumps({**note, "at": now.isoformat()}))
            self._templates_noted = note

    def accept_removals(self, names: Iterable[str]) -> None:
        """A person confirms that these calendars really lost the events their next sync removes,
        which a source may otherwise hold as a broken feed."""
        known = {source.name: source for source in self.sources}
        for name in names:
            if name not in known:
                raise UserError(f"no calendar named {name!r}; the calendars are: {', '.join(sorted(known))}")
            known[name].accept_removals = True

    def sync(self, source: CalendarSource, now: datetime, report: PassReport) -> CalendarReport:
        """Sync one calendar; its failure is reported and never stops the others."""
        result = CalendarReport(source.name)
        started = time.monotonic()
        if not self.ledger.take_sync_lease(source.name, self.instance, now, SYNC_LEASE):
            holder = self.ledger.sync_lease_owner(source.name)
            if not (
                holder
                and dead_here(holder)
                and self.ledger.take_sync_lease(source.name, self.instance, now, SYNC_LEASE, from_dead=holder)
            ):
                result.busy = True
                return result
            log.warning(
                "calendar %s: took over the sync from %s, which is no longer running",
                source.name,
                holder,
                extra={"calendar": source.name},
            )
        try:
            with collector.eased():
                return self._sync(source, now, report, result)
        finally:
            result.seconds = time.monotonic() - started
            self.ledger.release_sync_lease(source.name, self.instance)

    def _sync(
        self, source: CalendarSource, now: datetime, report: PassReport, result: CalendarReport
    ) -> CalendarReport:
        try:
            batch = source.sync(self.ledger.cursor(source.name), now)
        except SourceError as exc:
            result.error = str(exc)
            # Said once while it lasts: a revoked grant must not fill the log at every poll.
            if self._last_error.get(source.name) != result.error:
                log.error("calendar %s: %s", source.name, exc, extra={"calendar": source.name})
            self._last_error[source.name] = result.error
            return result
        except LedgerError:
            raise  # not this calendar's fault: the whole pass stops and says why
        except Exception as exc:  # a bug or a surprise in one calendar must not stop the rest
            result.error = f"calendar {source.name!r}: unexpected error: {type(exc).__name__}: {exc}"
            log.exception("calendar %s: unexpected error", source.name, extra={"calendar": source.name})
            return result
        if self._last_error.pop(source.name, None):
            log.info("calendar %s: readable again", source.name, extra={"calendar": source.name})
        result.problems = batch.problems
        result.unusable = batch.unusable
        for problem in batch.problems:
            log.warning("calendar %s: %s", source.name, problem, extra={"calendar": source.name})
        if batch.unchanged:
            result.unchanged = True
            return result
        self.progress.read(len(batch.upserted))
        # One search for tags an event: filing and planning both ask it.
        marked = {ev.id for ev in batch.upserted if self.policy.tags.marks_any(ev)}
        filings = {ev.id: filing(ev, self.policy, marked=ev.id in marked) for ev in batch.upserted}
        changes = CalendarChanges(source.name, batch.upserted, batch.removed, batch.state, filings)
        domains = {i: f.domains for i, f in filings.items()}
        new, changed, gone = self.ledger.apply_sync(changes, now)
        result.new, result.changed, result.gone = len(new), len(changed), len(gone)
        by_id = {ev.id: ev for ev in batch.upserted}
        unplanned = self.settle_many([*new, *changed, *gone], by_id, now, report, domains, marked)
        result.problems += list(unplanned.values())
        result.unusable += list(unplanned)
        log.info(
            "calendar %s: %d new, %d changed, %d gone",
            source.name,
            len(new),
            len(changed),
            len(gone),
            extra={"calendar": source.name},
        )
        return result

    def settle_many(
        self,
        event_ids: list[str],
        events: dict[str, CalendarEvent],
        now: datetime,
        report: PassReport,
        domains: Mapping[str, AbstractSet[str]] | None = None,
        marked: set[str] | None = None,
    ) -> dict[str, str]:
        """Act on stored events that changed, all together (see `Planner.settle`); the ledger marks each
        until its plan is committed, so a pass cut short by a crash is finished by the next one (see
        `settle_interrupted`). Returns the events that cannot be planned, with why."""
        done = self.planner.settle(event_ids, events, now, domains, marked)
        report.replanned += done.replanned
        report.stopped += done.stopped
        return done.problems

    def settle_interrupted(self, now: datetime, report: PassReport) -> None:
        """Plan the events a crashed pass stored but did not get to plan.

        Not those of a calendar another live instance is syncing: it is planning them right now, and
        planning them here too only doubles the work and races it.
        """
        busy = [
            source
            for source, owner in self.ledger.sync_leases(now).items()
            if owner != self.instance and not dead_here(owner)
        ]
        unsettled = self.ledger.unsettled_events(skip_sources=busy)
        if unsettled:
            log.warning("finishing the planning of %d event(s) an earlier pass left", len(unsettled))
            stored = {i: s.event for i, s in self.ledger.events_by_id(unsettled).items() if not s.deleted}
            self.settle_many(unsettled, stored, now, report)

    def replan_if_rules_changed(self, now: datetime) -> int:
        """Edited rules apply to events already known, not only to the next change."""
        digest = policy_digest(self.policy)
        if self.ledger.get_meta("policy") == digest:
            # Events stored before the ledger told calls apart, or since by an older version beside this
            # one: filed now. Planning took them as possible calls meanwhile, so no plan changes.
            unfiled = self.ledger.unfiled_events()
            if unfiled:
                log.info("filing %d stored event(s) as calls or not", len(unfiled))
                self.planner.refile(unfiled)
            return 0
        ids = self.ledger.all_event_ids()
        if ids:
            log.info(
                "the rules changed since the last pass: filing and planning %d stored event(s) again",
                len(ids),
            )
        self.planner.refile(ids)  # first: planning finds a deal's calls by how they are filed
        problems = self.planner.replan(ids, now)  # each is logged; the event keeps its sends meanwhile
        if problems:  # not taken as done: the next pass plans them all again under the new rules
            log.error("edited rules not applied to %d event(s); trying again next pass", len(problems))
        else:
            self.ledger.set_meta("policy", digest)
        return len(ids)

    def record_outcome(
        self, event_text: str, outcome: Outcome, now: datetime, source: str = "cli", detail: str | None = None
    ) -> tuple[str, dict[str, int]]:
        """A person records an outcome (`source`: "cli", or "link" with `detail` saying which); the event
        is re-planned at once."""
        stored = self.ledger.find_event(event_text)
        if classify(stored.event, self.policy) is None:
            raise UserError(
                f"event {stored.event.id} was not organized by {', '.join(self.policy.company_domains)}: "
                "followthrough does not act on it"
            )
        self.ledger.record_outcome(stored.event.id, outcome, source, now, detail)
        return stored.event.id, self.planner.replan_one(stored, now)
