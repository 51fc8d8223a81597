"""The dispatcher: claims due sends, renders them, hands them to the transport, records the result.

Transient failures go back to the ledger with a retry time; permanent ones are recorded with the
server's answer. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from daemon import clock
from daemon.context import for_send
from daemon.errors import DeliveryError, TemplateError, UnknownDeliveryError, UnsafeMessageError
from daemon.ledger import Ledger, SendRecord
from daemon.mail import Transport
from daemon.mail.message import build as build_message
from daemon.mail.message import message_id
from daemon.model import Audience, Person, PlannedSend, Status
from daemon.playbook import Policy
from daemon.retry import compute_backoff
from daemon.templates import Rendered, Templates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """How hard to try: the claim's lease, the first retry's wait, how long without a deadline."""

    lease: timedelta = timedelta(minutes=5)
    retry_base: timedelta = timedelta(minutes=1)
    retry_window: timedelta = timedelta(days=1)
    resend_unknown_prompts: bool = True


@dataclass
class DispatchReport:
    sent: list[SendRecord] = field(default_factory=list)
    failed: list[tuple[SendRecord, str]] = field(default_factory=list)
    retrying: list[tuple[SendRecord, str]] = field(default_factory=list)
    skipped: list[tuple[SendRecord, str]] = field(default_factory=list)
    stopped: list[tuple[SendRecord, str]] = field(default_factory=list)
    unknown: list[tuple[SendRecord, str]] = field(default_factory=list)  # a person must decide

    @property
    def trouble(self) -> bool:
        return bool(self.failed or self.retrying or self.unknown)


def render_send(
    ledger: Ledger,
    templates: Templates,
    policy: Policy,
    company: str,
    send: SendRecord | PlannedSend,
    at: datetime,
) -> Rendered:
    """Render a send from what the ledger knows now: its event, the deal's other events, the outcome."""
    stored = ledger.event(send.event_id)
    if stored is None:
        raise TemplateError(f"send {send.key}: its event {send.event_id} is not in the ledger")
    deal_events = ledger.events_of_deal(send.deal) if send.deal else []
    outcome = ledger.outcome(send.event_id)
    context = for_send(
        send,
        event=stored.event,
        policy=policy,
        company=company,
        deal_events=deal_events,
        outcome=outcome.outcome if outcome else None,
        at=at,
    )
    return templates.render(send.template, context)


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger,
        transport: Transport,
        templates: Templates,
        policy: Policy,
        *,
        company: str,
        service_sender: Person,
        unsubscribe: str,
        delivery: Delivery | None = None,
    ) -> None:
        self.ledger = ledger
        self.transport = transport
        self.templates = templates
        self.policy = policy
        self.company = company
        self.service_sender = service_sender
        self.unsubscribe = unsubscribe
        self.delivery = delivery or Delivery()

    def render(self, send: SendRecord, at: datetime) -> Rendered:
        """The send's email as it would go out at `at`. Raises TemplateError."""
        return render_send(self.ledger, self.templates, self.policy, self.company, send, at)

    def dispatch_due(self, now: datetime) -> DispatchReport:
        report = DispatchReport()
        for orphan in self.ledger.orphans(now):
            self._settle_orphan(orphan, now, report)
        report.unknown += [(s, s.reason or "") for s in self.ledger.sends([Status.UNKNOWN])]
        try:
            while True:
                # Few at a time: a claim is a lease, and a slow server must not outlast it. A long
                # pass reads the clock again, so leases are counted from when they are really taken.
                moment = max(now, clock.now())
                batch = self.ledger.claim_due(moment, self.delivery.lease, limit=10)
                if not batch:
                    break
                for send in batch:
                    self._one(send, max(moment, clock.now()), report)
        finally:
            self.transport.close()
        return report

    def _one(self, send: SendRecord, now: datetime, report: DispatchReport) -> None:
        assert send.attempt_id is not None
        if send.expires is not None and now > send.expires:
            rule = self.policy.rule(send.rule)
            reason = (
                f"too late: the call started at {send.expires.isoformat()}"
                if rule is not None and rule.before_call
                else f"too late: due {send.due.isoformat()}, allowed until {send.expires.isoformat()}"
            )
            if self.ledger.finish(send.key, Status.SKIPPED, now, reason, attempt_id=send.attempt_id):
                log.info("send %s skipped: %s", send.key, reason)
                report.skipped.append((send, reason))
            return
        blocked = self.ledger.is_suppressed(p.email for p in (*send.to, *send.cc))
        to = tuple(p for p in send.to if p.email not in blocked)
        cc = tuple(p for p in send.cc if p.email not in blocked)
        if not to:
            reason = f"suppressed: {', '.join(sorted(blocked))} asked not to be written to"
            if self.ledger.finish(send.key, Status.STOPPED, now, reason, attempt_id=send.attempt_id):
                log.info("send %s stopped: %s", send.key, reason)
                report.stopped.append((send, reason))
            return
        try:
            rendered = self.render(send, now)
        except TemplateError as exc:
            self._retry_or_fail(send, now, f"template error: {exc}", report)
            return
        sender = send.sender or self.service_sender
        try:
            message = build_message(
                key=send.key,
                rendered=rendered,
                sender=sender,
                to=to,
                cc=cc,
                reply_to=send.reply_to,
                date=now,
                unsubscribe=self.unsubscribe if send.stop_on_reengagement else None,
                # Every internal mail is a machine's: out-of-office replies must not answer it.
                automated=send.audience != Audience.CUSTOMER.value,
            )
        except UnsafeMessageError as exc:
            self._fail(send, now, str(exc), report)
            return
        recipients = [p.email for p in (*to, *cc)]
        if not self.ledger.mark_handed(send.key, send.attempt_id, now, self.delivery.lease):
            log.warning("send %s: claim lost to another process before sending; left to it", send.key)
            return
        try:
            refused = self.transport.deliver(message, sender.email, recipients)
        except UnknownDeliveryError as exc:
            if self.transport.searchable:
                # Looked up once the claim's lease runs out: a search right now could miss it.
                log.warning("send %s: %s; will look it up in the sent mail later", send.key, exc)
                return
            self._settle_orphan(send, now, report, what=str(exc))
            return
        except DeliveryError as exc:
            if exc.transient:
                self._retry_or_fail(send, now, str(exc), report)
            else:
                self._fail(send, now, str(exc), report)
            return
        note: str | None = None
        if refused:
            note = "refused by the server: " + "; ".join(f"{r}: {a}" for r, a in refused.items())
        if blocked:
            note = (note + "; " if note else "") + f"left out (suppressed): {', '.join(sorted(blocked))}"
        self.ledger.finish(
            send.key,
            Status.SENT,
            now,
            note,
            attempt_id=send.attempt_id,
            sent_at=now,
            subject=rendered.subject,
            refused=refused or None,
            message_id=message_id(send.key, sender.domain),
        )
        log.info("send %s sent to %s%s", send.key, ", ".join(recipients), f" ({note})" if note else "")
        report.sent.append(send)

    def _settle_orphan(
        self, send: SendRecord, now: datetime, report: DispatchReport, what: str | None = None
    ) -> None:
        """A send whose delivery may or may not have happened: by default, because the process that
        handed it to the transport stopped before recording the result; or `what` says why."""
        sender = send.sender or self.service_sender
        try:
            found = self.transport.find(message_id(send.key, sender.domain), sender.email)
        except DeliveryError as exc:
            log.warning("send %s: cannot check whether it was sent: %s", send.key, exc)
            found = None
        if found:
            reason = "outcome unknown after a crash, then found in the sender's sent mail: sent"
            if self.ledger.finish(
                send.key, Status.SENT, now, reason, attempt_id=send.attempt_id, sent_at=send.handed_at or now
            ):
                log.warning("send %s: %s", send.key, reason)
            return
        handed = send.handed_at.isoformat() if send.handed_at else now.isoformat()
        what = what or f"handed to the mail server at {handed} by a process that stopped before recording it"
        resend = self.delivery.resend_unknown_prompts and send.audience == Audience.REP.value
        # found is False: the transport looked and it is not there, so sending is safe.
        if self.transport.idempotent or resend or found is False:
            when = now + compute_backoff(max(send.attempts, 1), base=self.delivery.retry_base)
            reason = f"outcome unknown ({what}): sending again at {when.isoformat()}"
            if self.ledger.finish(
                send.key,
                Status.PLANNED,
                now,
                reason,
                attempt_id=send.attempt_id,
                handed_at=None,
                next_attempt=when,
            ):
                log.warning("send %s: %s", send.key, reason)
            return
        reason = (
            f"outcome unknown: {what}. Check whether it arrived, then run "
            f"`followthrough resolve {send.key} sent` or `... resend`"
        )
        if self.ledger.finish(send.key, Status.UNKNOWN, now, reason, attempt_id=send.attempt_id):
            log.error("send %s: %s", send.key, reason)
            report.unknown.append((send, reason))

    def _retry_or_fail(self, send: SendRecord, now: datetime, reason: str, report: DispatchReport) -> None:
        assert send.attempt_id is not None
        deadline = send.expires or (send.due + self.delivery.retry_window)
        when = now + compute_backoff(send.attempts, base=self.delivery.retry_base)
        if when > deadline:
            self._fail(send, now, f"gave up after {send.attempts} attempts: {reason}", report)
            return
        self.ledger.retry_later(send.key, send.attempt_id, now, when, reason)
        log.warning(
            "send %s failed for now (attempt %d), retry at %s: %s",
            send.key,
            send.attempts,
            when.isoformat(),
            reason,
        )
        report.retrying.append((send, reason))

    def _fail(self, send: SendRecord, now: datetime, reason: str, report: DispatchReport) -> None:
        self.ledger.finish(send.key, Status.FAILED, now, reason, attempt_id=send.attempt_id)
        log.error("send %s failed: %s", send.key, reason)
        report.failed.append((send, reason))
