"""What the dispatcher decides about one send: too late, held, put off, retried, given up, resent.

Pure functions of the send, the time and the server's answers; the dispatcher records what they decide
and reports a pass's decisions, send by send.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from daemon.errors import (
    AccountDeliveryError,
    DeliveryError,
    HeldDeliveryError,
    TransientDeliveryError,
    UnknownDeliveryError,
)
from daemon.ledger import put_off
from daemon.model import Audience, Person, SendRecord, Status
from daemon.playbook import Policy
from daemon.retry import compute_backoff

HOLD_CAP = timedelta(hours=1)  # the longest wait between two tries of a server that refuses our account
HOLD_RECHECK = timedelta(hours=1)  # a send over the recipient limit is looked at again this often


@dataclass(frozen=True)
class Delivery:
    """How hard to try: the claim's lease, the first retry's wait, how long without a deadline."""

    lease: timedelta = timedelta(minutes=5)
    retry_base: timedelta = timedelta(minutes=1)
    retry_window: timedelta = timedelta(days=1)
    resend_unknown_prompts: bool = True
    max_recipients: int = 50  # for customer mail, To and Cc together


@dataclass(frozen=True)
class Ended:
    """A send that reached where it ends in this pass (sent, failed, skipped, stopped, unknown), with
    when it was due and when it ended: what the metrics count."""

    rule: str
    status: Status
    due: datetime
    at: datetime


@dataclass
class DispatchReport:
    """What a pass of the dispatcher did, send by send; `trouble`: something a person should see."""

    sent: list[SendRecord] = field(default_factory=list)
    failed: list[tuple[SendRecord, str]] = field(default_factory=list)
    retrying: list[tuple[SendRecord, str]] = field(default_factory=list)
    skipped: list[tuple[SendRecord, str]] = field(default_factory=list)
    stopped: list[tuple[SendRecord, str]] = field(default_factory=list)
    unknown: list[tuple[SendRecord, str]] = field(default_factory=list)  # a person must decide
    held: list[tuple[SendRecord, str]] = field(default_factory=list)  # waiting for a person's fix
    halted: str | None = None  # why sending stopped for this pass (our account was refused)
    waiting: int = 0  # due sends left untried because sending stopped
    ended: list[Ended] = field(default_factory=list)  # each send that ended in this pass, once
    transport_errors: list[str] = field(default_factory=list)  # the kind of each (see `error_kind`)

    @property
    def trouble(self) -> bool:
        return bool(self.failed or self.retrying or self.unknown or self.held or self.halted)


def error_kind(exc: DeliveryError) -> str:
    """A transport's error as a metric's label: account (our login or account refused), held (a person
    must change something), unknown (the answer was lost), transient (a retry may work), permanent."""
    if isinstance(exc, AccountDeliveryError):
        return "account"
    if isinstance(exc, HeldDeliveryError):
        return "held"
    if isinstance(exc, UnknownDeliveryError):
        return "unknown"
    return "transient" if isinstance(exc, TransientDeliveryError) else "permanent"


ERROR_KINDS = ("account", "held", "unknown", "transient", "permanent")


def too_late(send: SendRecord, now: datetime, before_call: bool) -> str | None:
    """Why the send may no longer go out at `now`, or None while it may; `before_call`: its rule
    prompts before a call, which is pointless once the call has started."""
    if send.expires is None or now <= send.expires:
        return None
    if before_call:
        return f"too late: the call started at {send.expires.isoformat()}"
    return f"too late: due {send.due.isoformat()}, allowed until {send.expires.isoformat()}"


def suppressed(addresses: Collection[str]) -> str:
    return f"suppressed: {', '.join(sorted(addresses))} asked not to be written to"


def earlier_refusals(send: SendRecord) -> tuple[dict[str, str], dict[str, str]]:
    """The recipients refused at earlier tries of a send that went to the others: those the server put
    off (the next try goes to them alone), and those it refused for good."""
    later = put_off(send.refused) if send.sent_at is not None else {}
    return later, {r: a for r, a in send.refused.items() if r not in later}


def too_many(
    send: SendRecord, to: Sequence[Person], cc: Sequence[Person], policy: Policy, limit: int
) -> str | None:
    """Why a person must look at this send first, or None: mail outside the company to more than
    `limit` addresses shows every one of them to every other."""
    everyone = {p.email.lower() for p in (*to, *cc)}
    if len(everyone) <= limit:
        return None
    if send.audience != Audience.CUSTOMER.value and all(policy.is_internal(p.domain) for p in (*to, *cc)):
        return None  # among colleagues
    return (
        f"{len(everyone)} recipients, more than [mail] max_recipients = {limit}: "
        "held for a person (each would see every other address); raise the limit to send it "
        "as it is, or leave it to be skipped after its deadline"
    )


def retry_recipients(
    recipients: Sequence[str], later: Collection[str], blocked: Collection[str]
) -> tuple[list[str], str | None]:
    """Of a retry's recipients, those put off earlier (`later`, lower case); when none of them may be
    written to now, why the send gives up on them."""
    chosen = [r for r in recipients if r.lower() in later]
    if chosen:
        return chosen, None
    left = sorted(r for r in blocked if r.lower() in later)
    return [], suppressed(left) if left else "those put off are no longer among its recipients"


def after_delivery(send: SendRecord, refused: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """After the server took the message: the recipients it put off now (tried again later), and every
    recipient refused for good, at this try or an earlier one."""
    now_put_off = put_off(refused)
    final = earlier_refusals(send)[1] | {r: a for r, a in refused.items() if r not in now_put_off}
    return now_put_off, final


def after_refusal(send: SendRecord, exc: DeliveryError) -> tuple[dict[str, str], dict[str, str]]:
    """After the server refused the retry of a send that went to the others: those still put off, with
    the new answer when it is final (the send then gives up on them), and those refused for good."""
    later, final = earlier_refusals(send)
    if not exc.transient:
        later = dict.fromkeys(later, str(exc))
    return later, final


def sent_note(refused: Mapping[str, str], left_out: Collection[str]) -> str | None:
    """The note of a send that went out: who the server refused, and who was left out as suppressed."""
    notes = []
    if refused:
        notes.append("refused by the server: " + "; ".join(f"{r}: {a}" for r, a in refused.items()))
    if left_out:
        notes.append(f"left out (suppressed): {', '.join(sorted(left_out))}")
    return "; ".join(notes) or None


def deadline(send: SendRecord, delivery: Delivery) -> datetime:
    """The last moment a try may happen: the send's own deadline, or a window after it was due."""
    return send.expires or (send.due + delivery.retry_window)


def next_try(send: SendRecord, now: datetime, delivery: Delivery) -> datetime | None:
    """When a failed try is followed by another, or None when that would pass the deadline: give up."""
    when = now + compute_backoff(send.attempts, base=delivery.retry_base)
    return None if when > deadline(send, delivery) else when


def resend_at(send: SendRecord, now: datetime, delivery: Delivery) -> datetime:
    """When a send whose outcome is unknown, and which may go again, is sent again."""
    return now + compute_backoff(max(send.attempts, 1), base=delivery.retry_base)


def hold_wait(refusals: int, delivery: Delivery) -> timedelta:
    """The wait after `refusals` passes in a row in which the server refused our account: it grows, so a
    wrong password costs one failed login a pass, and fewer passes."""
    return compute_backoff(refusals, base=delivery.retry_base, cap=HOLD_CAP)


def may_resend(send: SendRecord, delivery: Delivery, idempotent: bool, found: bool | None) -> bool:
    """Whether a send whose outcome is unknown may simply go again: sending twice does no harm (an
    idempotent transport, a prompt to our own rep when so configured), or the sent mail shows it
    never went (`found` is False; None means the transport cannot tell)."""
    prompt = delivery.resend_unknown_prompts and send.audience == Audience.REP.value
    return idempotent or prompt or found is False
