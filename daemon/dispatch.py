"""The dispatcher: claims due sends, renders them, hands them to the transport, records the result.

Transient failures go back to the ledger with a retry time; permanent ones are recorded with the
server's answer; what only a person can fix (our own account, a recipient limit) waits in the ledger,
held, without counting as a try. Nothing is dropped silently. A send that went to some of its recipients
and waits to reach the others (put off by the server) can only end sent, naming who never got it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from daemon import clock, collector
from daemon import delivery as decide
from daemon.delivery import Delivery, DispatchReport, error_kind
from daemon.dispatch_records import SendRecords
from daemon.errors import (
    AccountDeliveryError,
    DeliveryError,
    HeldDeliveryError,
    LedgerError,
    TemplateError,
    UnknownDeliveryError,
    UnsafeMessageError,
)
from daemon.ledger import ClaimTerms, Handing, Known, Ledger, Record, moves
from daemon.links import Links
from daemon.mail import Transport
from daemon.mail.message import build as build_message
from daemon.mail.message import mailto_unsubscribe, message_id
from daemon.model import Audience, Person, SendRecord, Status
from daemon.render import Facts, Renderer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Ready:
    """A claimed send whose message is built, waiting for its turn to be handed over."""

    send: SendRecord
    message: EmailMessage
    sender: Person
    recipients: list[str]
    later: set[str]  # those put off at an earlier try: only they get it now
    blocked: set[str]  # left out, suppressed
    subject: str


@dataclass(frozen=True)
class _InFlight:
    """A message handed over, its answer not read yet: `finish` reads it."""

    item: _Ready
    now: datetime
    finish: Callable[[], dict[str, str]]


@dataclass(frozen=True)
class _Result:
    """A delivered send's result, committed with the next hand-over or at the batch's end."""

    send: SendRecord
    record: Record


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger,
        transport: Transport,
        renderer: Renderer,
        *,
        service_sender: Person,
        unsubscribe: str,
        links: Links | None = None,
        delivery: Delivery | None = None,
        instance: str | None = None,
        is_dead: Callable[[str], bool] | None = None,
    ) -> None:
        self.ledger = ledger
        self.transport = transport
        self.renderer = renderer
        self.policy = renderer.policy
        self.service_sender = service_sender
        self.unsubscribe = unsubscribe  # where unsubscribe mail goes when there are no links
        self.links = links  # one-click links, when the company serves them
        self.delivery = delivery or Delivery()
        self.records = SendRecords(ledger, self.delivery)  # what became of each claimed send
        self.instance = instance  # recorded as the owner of each claim (`host:pid:nonce`)
        self.is_dead = is_dead  # whether another instance's process is known to be dead
        self._stop = threading.Event()
        self._started = False
        self._refusals = 0  # passes in a row in which the server refused our account: for the wait
        self._hold_until: datetime | None = None  # this pass's wait for sends held by such a refusal
        self._refused_senders: dict[str, str] = {}  # this pass: envelope senders the server refused
        self._results: list[_Result] = []  # delivered, recorded with the next hand-over or the batch's end

    def dispatch_due(self, now: datetime) -> DispatchReport:
        report = DispatchReport()
        if not self._started:
            # A new process may run with fixed settings: sends held for a fix are tried at once.
            self._started = True
            self.ledger.release_held()
        self._hold_until = None
        self._refused_senders = {}
        dead = self._dead_owners()
        for orphan in self.ledger.orphans(now, dead):
            self._settle_orphan(orphan, now, report)
        report.unknown += [(s, s.reason or "") for s in self.ledger.sends([Status.UNKNOWN])]
        batch: list[SendRecord] = []
        try:
            with collector.eased():
                while not self._stop.is_set():
                    # Few at a time: a claim is a lease, and a slow server must not outlast it. A long
                    # pass reads the clock again, so leases are counted from when they are really taken.
                    moment = max(now, clock.now())
                    terms = ClaimTerms(
                        self.delivery.lease, limit=10, owner=self.instance, from_dead=tuple(dead)
                    )
                    batch = self.ledger.claim_due(moment, terms)
                    if not batch:
                        break
                    self._batch(batch, moment, report)
                    if report.halted is not None:
                        # One refused login a pass: the other due sends wait, unclaimed, with the reason.
                        report.waiting += self.ledger.hold_due(moment, self._until(moment), report.halted)
                        break
        finally:
            if self._results:  # an error cut the batch short: what went out is still recorded
                try:
                    self._record_results(report)
                except LedgerError as exc:
                    log.error("results not recorded (their sends will be looked at as unknown): %s", exc)
            # Claims of this pass not handed over (stopping, or an error) go back at once, not when
            # their lease runs out; the ledger leaves alone any that were finished or handed over.
            if batch:
                why = "followthrough stopped before" if self.stopping else "the pass ended before"
                self._release_where(why, attempt_ids=[s.attempt_id for s in batch if s.attempt_id])
            self.transport.close()
        return report

    def stop(self) -> None:
        """Stop after the message in flight: no new claim, no next message (safe from any thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def release_own(self, why: str) -> list[str]:
        """Put every claim of this instance not yet handed over back to planned, at once."""
        if self.instance is None:
            return []
        return self._release_where(why, owner=self.instance)

    def _release_where(
        self, why: str, *, owner: str | None = None, attempt_ids: list[str] | None = None
    ) -> list[str]:
        try:
            keys = self.ledger.release_claims(
                clock.now(),
                f"released: {why} sending it; due again at once",
                owner=owner,
                attempt_ids=attempt_ids or (),
            )
        except LedgerError as exc:  # never hides what stopped the pass: the lease frees them later
            log.error("claims not released (their lease will free them): %s", exc)
            return []
        for key in keys:
            log.info("send %s: claim released, not sent (%s sending it)", key, why, extra={"send_key": key})
        return keys

    def _dead_owners(self) -> list[str]:
        """Instances holding claims whose process is known to be dead: taken over at once."""
        if self.is_dead is None:
            return []
        dead = sorted(o for o in self.ledger.claim_owners() if o != self.instance and self.is_dead(o))
        for owner in dead:
            log.warning("taking over the claims of %s, which is no longer running", owner)
        return dead

    def _batch(self, batch: list[SendRecord], moment: datetime, report: DispatchReport) -> None:
        """Write every message of a claimed batch from one read of the ledger and hand them over one by
        one, each written while the server takes the one before. Each message's result is committed with
        the next one's hand-over: one commit a message, and still claim, hand-over and result durable
        in that order for each send."""
        known = self.ledger.known(batch)  # the data of now: read once for the batch
        in_flight: _InFlight | None = None
        try:
            for claimed in batch:
                item = self._prepare(claimed, max(moment, clock.now()), known, report)
                if in_flight is not None:
                    flight, in_flight = in_flight, None  # its answer is read once, whatever happens
                    self._finish(flight, report)
                if item is None:
                    continue
                if self._stop.is_set():
                    break  # stopping: the message in flight was the last one
                send, now = item.send, max(moment, clock.now())
                if report.halted is not None:  # not tried: back to pending, as it was
                    self.records.hold(send, now, report.halted, report, self._until(now), tried=False)
                    continue
                refused_sender = self._refused_senders.get(item.sender.email)
                if refused_sender is not None:  # the server refused this sender earlier in the pass
                    self.records.hold(send, now, refused_sender, report, self._until(now), tried=False)
                    continue
                rule = self.policy.rule(send.rule)
                late = decide.too_late(send, now, before_call=rule is not None and rule.before_call)
                if late is not None:  # its moment passed while the batch was being sent
                    self.records.end_unsent(send, now, moves.Skipped(late), report)
                    continue
                in_flight = self._start(item, now, report)
        finally:
            if in_flight is not None:  # handed over: its answer is read and kept whatever stopped us
                self._finish(in_flight, report)
        self._record_results(report)

    def _prepare(
        self, send: SendRecord, now: datetime, known: Known, report: DispatchReport
    ) -> _Ready | None:
        """The send's message, ready to hand over; or None, when the send ended or waits (recorded)."""
        assert send.attempt_id is not None
        rule = self.policy.rule(send.rule)
        late = decide.too_late(send, now, before_call=rule is not None and rule.before_call)
        if late is not None:
            self.records.end_unsent(send, now, moves.Skipped(late), report)
            return None
        blocked = known.blocked(p.email for p in (*send.to, *send.cc))
        to = tuple(p for p in send.to if p.email not in blocked)
        cc = tuple(p for p in send.cc if p.email not in blocked)
        if not to:
            self.records.end_unsent(send, now, moves.Stopped(decide.suppressed(blocked)), report)
            return None
        sender = send.sender or self.service_sender
        refused_sender = self._refused_senders.get(sender.email)
        if refused_sender is not None:  # the server refused this sender earlier in the pass
            self.records.hold(send, now, refused_sender, report, self._until(now), tried=False)
            return None
        # Those the server put off (4xx, 5.7.x) when the message went to the others: only they get it now.
        later = {r.lower() for r in decide.earlier_refusals(send)[0]}
        crowded = None if later else decide.too_many(send, to, cc, self.policy, self.delivery.max_recipients)
        if crowded is not None:
            self.records.hold(send, now, crowded, report, now + decide.HOLD_RECHECK)
            return None
        try:
            rendered = self.renderer.email(send, Facts.known(known, send), now)
        except TemplateError as exc:
            self.records.retry_or_fail(send, now, f"template error: {exc}", report)
            return None
        try:
            message = build_message(
                key=send.key,
                rendered=rendered,
                sender=sender,
                to=to,
                cc=cc,
                reply_to=send.reply_to,
                date=now,
                unsubscribe=self.unsubscribe_uri(to) if send.stop_on_reengagement else None,
                # Every internal mail is a machine's: out-of-office replies must not answer it.
                automated=send.audience != Audience.CUSTOMER.value,
            )
        except UnsafeMessageError as exc:
            self.records.fail(send, now, str(exc), report)
            return None
        recipients = [p.email for p in (*to, *cc)]
        if later:
            recipients, why = decide.retry_recipients(recipients, later, blocked)
            if why is not None:  # not one of them may be written to now
                self.records.give_up(send, now, why, report)
                return None
        return _Ready(send, message, sender, recipients, later, blocked, rendered.subject)

    def _start(self, item: _Ready, now: datetime, report: DispatchReport) -> _InFlight | None:
        """Commit the hand-over (with the results waiting), then give the message to the transport."""
        send, recipients = item.send, item.recipients
        assert send.attempt_id is not None
        handing = Handing(send.key, send.attempt_id, now, self.delivery.lease, tuple(recipients))
        handed, blocked = self._record_results(report, handing)
        if blocked:  # unsubscribed since the batch was read: written again, without them, at once
            self._release_where("a recipient unsubscribed just before", attempt_ids=[send.attempt_id])
            return None
        if not handed:
            log.warning(
                "send %s: claim lost to another process before sending; left to it",
                send.key,
                extra={"send_key": send.key},
            )
            return None
        try:
            finish = self.transport.start(item.message, item.sender.email, recipients)
        except DeliveryError as exc:
            self._delivery_failed(item, exc, now, report)
            return None
        return _InFlight(item, now, finish)

    def _finish(self, flight: _InFlight, report: DispatchReport) -> None:
        """The transport's answer for a message handed over: its result, kept for the next commit."""
        item, now = flight.item, flight.now
        send, sender, recipients = item.send, item.sender, item.recipients
        assert send.attempt_id is not None
        try:
            refused = flight.finish()
        except DeliveryError as exc:
            self._delivery_failed(item, exc, now, report)
            return
        self._refusals = 0
        now_put_off, final = decide.after_delivery(send, refused)
        if now_put_off:
            self.records.put_off(send, now, now_put_off, final, item.subject, sender.domain, report)
            return
        note = decide.sent_note(final, item.blocked)
        delivered = moves.Delivered(now, item.subject, message_id(send.key, sender.domain), final)
        self._results.append(
            _Result(send, Record(send.key, send.attempt_id, moves.Sent(note, delivered), now))
        )
        log.info(
            "send %s sent to %s%s",
            send.key,
            ", ".join(recipients),
            f" ({note})" if note else "",
            extra={"send_key": send.key},
        )
        report.sent.append(send)

    def _delivery_failed(
        self, item: _Ready, exc: DeliveryError, now: datetime, report: DispatchReport
    ) -> None:
        report.transport_errors.append(error_kind(exc))
        self._after_error(item.send, exc, now, item.later, item.subject, item.sender, report)

    def _record_results(
        self, report: DispatchReport, handing: Handing | None = None
    ) -> tuple[bool, set[str]]:
        """Commit the results waiting, and the hand-over of `handing` if any, in one transaction;
        whether the hand-over was made, and the suppressed recipients that stopped it."""
        results = self._results
        if not results and handing is None:
            return False, set()
        # Kept until committed: if the transaction fails, the pass's end records them on their own.
        made, handed, blocked = self.ledger.record_and_hand([r.record for r in results], handing)
        self._results = []
        for result, recorded in zip(results, made, strict=True):
            if recorded:
                send = result.send
                self.records.ended(report, send, Status.SENT, send.sent_at or result.record.at)
        return handed, blocked

    def _after_error(
        self,
        send: SendRecord,
        exc: DeliveryError,
        now: datetime,
        later: set[str],
        subject: str,
        sender: Person,
        report: DispatchReport,
    ) -> None:
        """What the transport's error means for the send: looked up later, held, retried, or failed."""
        if isinstance(exc, UnknownDeliveryError):
            if self.transport.searchable:
                # Looked up once the claim's lease runs out: a search right now could miss it.
                log.warning(
                    "send %s: %s; will look it up in the sent mail later",
                    send.key,
                    exc,
                    extra={"send_key": send.key},
                )
                return
            self._settle_orphan(send, now, report, what=str(exc))
        elif isinstance(exc, AccountDeliveryError):
            if exc.sender is None:
                report.halted = str(exc)
                log.error("sending stopped for this pass: %s", exc)
            else:
                self._refused_senders[exc.sender] = str(exc)
            self.records.hold(send, now, str(exc), report, self._until(now))
        elif isinstance(exc, HeldDeliveryError):
            self.records.hold(send, now, str(exc), report, self._until(now))
        elif later:  # it went to the others before: it can only end as sent
            earlier, final = decide.after_refusal(send, exc)
            self.records.put_off(send, now, earlier, final, subject, sender.domain, report, not exc.transient)
        elif exc.transient:
            self.records.retry_or_fail(send, now, str(exc), report)
        else:
            self.records.fail(send, now, str(exc), report)

    def _settle_orphan(
        self, send: SendRecord, now: datetime, report: DispatchReport, what: str | None = None
    ) -> None:
        """A send whose delivery may or may not have happened: by default, because the process that
        handed it to the transport stopped before recording the result; or `what` says why."""
        assert send.attempt_id is not None
        sender = send.sender or self.service_sender
        unsearched = ""  # why the sent mail could not tell, said in the reason a person reads
        try:
            found = self.transport.find(message_id(send.key, sender.domain), sender.email)
        except DeliveryError as exc:
            log.warning(
                "send %s: cannot check whether it was sent: %s", send.key, exc, extra={"send_key": send.key}
            )
            found = None
            unsearched = f"; its sent mail could not be searched: {exc}"
        if found:
            reason = "outcome unknown after a crash, then found in the sender's sent mail: sent"
            if self.ledger.record(send.key, send.attempt_id, moves.Arrived(reason), now):
                log.warning("send %s: %s", send.key, reason, extra={"send_key": send.key})
                self.records.ended(report, send, Status.SENT, send.handed_at or now)
            return
        handed = send.handed_at.isoformat() if send.handed_at else now.isoformat()
        what = what or f"handed to the mail server at {handed} by a process that stopped before recording it"
        if decide.may_resend(send, self.delivery, self.transport.idempotent, found):
            when = decide.resend_at(send, now, self.delivery)
            reason = f"outcome unknown ({what}): sending again at {when.isoformat()}"
            if self.ledger.record(send.key, send.attempt_id, moves.Retry(reason, when), now):
                log.warning("send %s: %s", send.key, reason, extra={"send_key": send.key})
            return
        reason = (
            f"outcome unknown: {what}{unsearched}. Check whether it arrived, then run "
            f"`followthrough resolve {send.key} sent` or `... resend`"
        )
        if self.ledger.record(send.key, send.attempt_id, moves.Unknown(reason), now):
            log.error("send %s: %s", send.key, reason, extra={"send_key": send.key})
            report.unknown.append((send, reason))
            self.records.ended(report, send, Status.UNKNOWN, now)

    def unsubscribe_uri(self, to: Sequence[Person]) -> str:
        """The one-click link that stops the mail to everyone it goes to, or else a mailto to a person."""
        if self.links is not None:
            return self.links.unsubscribe_url([p.email for p in to])
        return mailto_unsubscribe(self.unsubscribe)

    def _until(self, now: datetime) -> datetime:
        """When sends held by a refusal of our account are tried again: the wait grows with each pass
        refused in a row, so a wrong password costs one failed login a pass, and fewer passes."""
        if self._hold_until is None:
            self._refusals += 1
            self._hold_until = now + decide.hold_wait(self._refusals, self.delivery)
        return self._hold_until
