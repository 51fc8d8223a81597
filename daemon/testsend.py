"""Test sends: one email rendered exactly as `preview` shows it, sent at once to one colleague as `[TEST]`.

Never to the customer: the only recipient is the address given, in the company's own domains; the ledger
records it as a test, which the dispatcher never claims and no sender's limit counts.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime

from daemon.backends import Wiring, make_transport
from daemon.config import Settings
from daemon.errors import (
    AccountDeliveryError,
    DeliveryError,
    PermanentDeliveryError,
    UnknownDeliveryError,
    UserError,
)
from daemon.ledger import Ledger, moves, open_ledger
from daemon.mail import Transport
from daemon.mail.message import build as build_message
from daemon.mail.message import mailto_unsubscribe, message_id
from daemon.model import Audience, Person, PlannedSend, clean_line
from daemon.playbook import Policy
from daemon.preview import Shown, event_email, sample_email
from daemon.templates import Rendered

log = logging.getLogger(__name__)

PREFIX = "[TEST] "
KEY_LIMIT = 700  # the ledger's key column


@dataclass(frozen=True)
class SentTest:
    """What a test send did: the key it is recorded under, and the message as it went out."""

    key: str
    subject: str  # with its [TEST] prefix
    address: str  # the one recipient
    sender: str  # the From address it went out with
    note: str | None = None  # why it did not go as the real send would (from the service sender)


def recipient(text: str, policy: Policy) -> Person:
    """The one address a test goes to: `ann@acme.example` or `Ann Lee <ann@acme.example>`, in the
    company's domains (a test is for the people who run followthrough, never a way to write to anyone
    else). Raises UserError naming the text."""
    try:
        person = Person.parse(text) if text.count("@") == 1 else None
    except ValueError:
        person = None
    if person is None:
        raise UserError(f"a test goes to one email address, and {text!r} is not one")
    if not policy.is_internal(person.domain):
        domains = ", ".join(sorted(policy.company_domains))
        raise UserError(
            f"a test goes only to an address in the company's domains ({domains}); {person.email} is not"
        )
    return person


def key_for(rule: str, event_id: str | None, at: datetime) -> str:
    """`test:<rule>:<event id or "sample">:<UTC time>:<random>`: its own key, never a planned send's."""
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    tail = f":{stamp}:{secrets.token_hex(3)}"
    head = f"test:{rule}:"
    return head + (event_id or "sample")[: KEY_LIMIT - len(head) - len(tail)] + tail


def addressed(send: PlannedSend, key: str, to: Person, at: datetime) -> PlannedSend:
    """The send as the test makes it: due now, to `to` alone; the rest (sender, Reply-To, audience,
    template) as the real send has it. Reply-To is the rep, a colleague, never the customer."""
    return replace(
        PlannedSend(**{f.name: getattr(send, f.name) for f in fields(PlannedSend)}),
        key=key,
        due=at,
        expires=None,
        to=(to,),
        cc=(),
        stop_on_reengagement=False,  # never a sequence: nothing for a customer's reply to stop
    )


def falls_back(error: DeliveryError, sender: Person, service: Person) -> bool:
    """Whether a test refused as sent by the rep goes again from the service sender: when the server
    refused the rep as sender, or the rep's account cannot send now (a transient failure: Gmail without
    a grant for them). Never after a refusal of the message or of our whole account, which would meet
    the same answer, nor after a hand-over whose outcome is unknown, which may have arrived."""
    if sender.email == service.email or isinstance(error, UnknownDeliveryError):
        return False
    if isinstance(error, AccountDeliveryError):
        return error.sender is not None and error.sender.lower() == sender.email.lower()
    return error.transient


def send_test(settings: Settings, rule: str, event: str | None, address: str, now: datetime) -> SentTest:
    """Send the rule's email, rendered as `preview` shows it (sample data without `event`, else the event
    in the ledger with this id or unique prefix), to `address` only, its subject starting `[TEST] `,
    through the configured transport; record it in the ledger as a test, sent or failed.

    Raises UserError for a bad address or rule or event, or when the test failed (recorded with the
    reason), TemplateError when the template does not render, LedgerError.
    """
    policy = settings.policy()
    to = recipient(address, policy)
    shown = sample_email(settings, rule) if event is None else event_email(settings, rule, event, now, False)
    with open_ledger(settings.store_url, settings.store.busy_timeout) as ledger:
        if ledger.is_suppressed([to.email]):
            raise UserError(f"{to.email} is on the suppression list: followthrough never writes to it")
        key = key_for(shown.send.rule, None if shown.sample else shown.send.event_id, now)
        send = addressed(shown.send, key, to, now)
        rendered = replace(shown.rendered, subject=clean_line(PREFIX + shown.rendered.subject, 250))
        transport = make_transport(Wiring(settings, ledger))
        try:
            return _send(ledger, transport, settings, shown, send, rendered, now)
        finally:
            transport.close()


def _send(
    ledger: Ledger,
    transport: Transport,
    settings: Settings,
    shown: Shown,
    send: PlannedSend,
    rendered: Rendered,
    now: datetime,
) -> SentTest:
    service = settings.sender
    sender = send.sender or service
    refusal = None  # why the rep could not send it, when the service sender did instead
    try:
        try:
            _deliver(transport, settings, shown, send, sender, rendered, now)
        except DeliveryError as exc:
            if not falls_back(exc, sender, service):
                raise
            refusal = f"the transport would not send it as {sender.email} ({exc})"
            log.info("test %s: %s; trying from %s", send.key, refusal, service.email)
            send, sender = replace(send, sender=None), service
            _deliver(transport, settings, shown, send, sender, rendered, now)
    except DeliveryError as exc:
        unknown = isinstance(exc, UnknownDeliveryError)
        why = f"{refusal}; from {service.email}: {exc}" if refusal else str(exc)
        move: moves.Move = moves.Unknown(why) if unknown else moves.Failed(why)
        ledger.record_test(send, rendered.subject, move, now)
        log.info("test %s to %s %s: %s", send.key, send.to[0].email, "unknown" if unknown else "failed", why)
        what = "may or may not have arrived" if unknown else "failed"
        raise UserError(
            f"the test of {shown.send.rule} to {send.to[0].email} {what}: {why} (recorded as {send.key})"
        ) from None
    note = f"sent from {service.email}: {refusal}" if refusal else None
    delivered = moves.Delivered(now, rendered.subject, message_id(send.key, sender.domain), {})
    ledger.record_test(send, rendered.subject, moves.Sent(note, delivered), now)
    log.info("test %s sent to %s", send.key, send.to[0].email)
    return SentTest(send.key, rendered.subject, send.to[0].email, sender.email, note)


def _deliver(
    transport: Transport,
    settings: Settings,
    shown: Shown,
    send: PlannedSend,
    sender: Person,
    rendered: Rendered,
    now: datetime,
) -> None:
    """The message the dispatcher would build for the real send, `shown`, handed to the transport for
    the test's one recipient. Raises DeliveryError (UnsafeMessageError when the built message is not
    what was set)."""
    # Never a one-click link in a test: clicking it would suppress the tester's own address.
    unsubscribe = None
    if shown.send.stop_on_reengagement:
        unsubscribe = mailto_unsubscribe(settings.unsubscribe_address)
    message = build_message(
        key=send.key,
        rendered=rendered,
        sender=sender,
        to=send.to,
        reply_to=send.reply_to,
        date=now,
        unsubscribe=unsubscribe,
        automated=send.audience is not Audience.CUSTOMER,
    )
    refused = transport.deliver(message, sender.email, [p.email for p in send.to])
    if refused:
        raise PermanentDeliveryError("; ".join(f"the server refused {r}: {a}" for r, a in refused.items()))
