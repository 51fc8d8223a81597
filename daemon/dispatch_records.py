"""What became of a claimed send, recorded: held, put off, retried, given up, failed, skipped or stopped.

The dispatcher decides (with the pure rules of delivery.py); this records each ending in the ledger, logs
it once and counts it in the pass's report.
"""

from __future__ import annotations

import logging
from datetime import datetime

from daemon import delivery as decide
from daemon.delivery import Delivery, DispatchReport, Ended
from daemon.ledger import Ledger, gave_up, moves
from daemon.mail.message import message_id
from daemon.model import SendRecord, Status

log = logging.getLogger(__name__)


class SendRecords:
    """The ledger's moves for a claimed send, each conditional on its attempt still being the one claimed."""

    def __init__(self, ledger: Ledger, delivery: Delivery) -> None:
        self.ledger = ledger
        self.delivery = delivery

    @staticmethod
    def ended(report: DispatchReport, send: SendRecord, status: Status, at: datetime) -> None:
        report.ended.append(Ended(send.rule, status, send.due, at))

    def hold(
        self,
        send: SendRecord,
        now: datetime,
        reason: str,
        report: DispatchReport,
        until: datetime,
        tried: bool = True,
    ) -> None:
        """Back to pending with the reason, until `until` or the next start; the try is not counted,
        so holding never leads to giving up (the deadline still skips it)."""
        assert send.attempt_id is not None
        if not self.ledger.record(send.key, send.attempt_id, moves.Held(reason, until), now):
            return
        if tried:
            log.warning(
                "send %s held until %s: %s", send.key, until.isoformat(), reason, extra={"send_key": send.key}
            )
            report.held.append((send, reason))
        else:
            report.waiting += 1

    def put_off(
        self,
        send: SendRecord,
        now: datetime,
        later: dict[str, str],
        final: dict[str, str],
        subject: str,
        domain: str,
        report: DispatchReport,
        give_up: bool = False,
    ) -> None:
        """Delivered, but the server put off some recipients (a 4xx, or a 5.7.x policy refusal): the same
        message goes to them, and only them, at the next try; the ledger's `refused` says who they are."""
        assert send.attempt_id is not None
        answers = "; ".join(f"{r}: {a}" for r, a in later.items())
        delivered = moves.Delivered(now, subject, message_id(send.key, domain), final | later)
        when = decide.next_try(send, now, self.delivery)
        if give_up or when is None:
            last = decide.deadline(send, self.delivery)
            why = "refused for good" if give_up else f"no try left before its deadline {last.isoformat()}"
            self.give_up(send, now, f"gave up after {send.attempts} attempts: {why}", report, delivered)
            return
        reason = f"will retry at {when.isoformat()}: sent to the others; the server put off {answers}"
        if self.ledger.record(send.key, send.attempt_id, moves.PutOff(reason, when, delivered), now):
            log.warning("send %s: %s", send.key, reason, extra={"send_key": send.key})
            report.retrying.append((send, reason))

    def give_up(
        self,
        send: SendRecord,
        now: datetime,
        why: str,
        report: DispatchReport,
        delivered: moves.Delivered | None = None,
    ) -> None:
        """A send that went to some recipients will not be tried again for the others: it is sent, with
        a note naming who never got it and why; the pass reports it as a failure too."""
        reason = gave_up(delivered.refused if delivered else send.refused, why)
        assert send.attempt_id is not None
        if self.ledger.record(send.key, send.attempt_id, moves.Sent(reason, delivered), now):
            log.error("send %s: %s", send.key, reason, extra={"send_key": send.key})
            report.sent.append(send)
            report.failed.append((send, reason))
            first = send.sent_at or (delivered.at if delivered else now)
            self.ended(report, send, Status.SENT, first)

    def retry_or_fail(self, send: SendRecord, now: datetime, reason: str, report: DispatchReport) -> None:
        assert send.attempt_id is not None
        when = decide.next_try(send, now, self.delivery)
        if when is None:
            self.fail(send, now, f"gave up after {send.attempts} attempts: {reason}", report)
            return
        self.ledger.record(
            send.key, send.attempt_id, moves.Retry(f"will retry at {when.isoformat()}: {reason}", when), now
        )
        log.warning(
            "send %s failed for now (attempt %d), retry at %s: %s",
            send.key,
            send.attempts,
            when.isoformat(),
            reason,
            extra={"send_key": send.key},
        )
        report.retrying.append((send, reason))

    def end_unsent(
        self, send: SendRecord, now: datetime, move: moves.Skipped | moves.Stopped, report: DispatchReport
    ) -> None:
        """Skipped or stopped before it went out; one that went to some recipients can only end sent."""
        assert send.attempt_id is not None and move.reason is not None
        if send.sent_at is not None:
            self.give_up(send, now, move.reason, report)
            return
        if not self.ledger.record(send.key, send.attempt_id, move, now):
            return
        skipped = isinstance(move, moves.Skipped)
        log.info(
            "send %s %s: %s",
            send.key,
            "skipped" if skipped else "stopped",
            move.reason,
            extra={"send_key": send.key},
        )
        (report.skipped if skipped else report.stopped).append((send, move.reason))
        self.ended(report, send, Status.SKIPPED if skipped else Status.STOPPED, now)

    def fail(self, send: SendRecord, now: datetime, reason: str, report: DispatchReport) -> None:
        if send.sent_at is not None:  # it went to some recipients already: it can only end sent
            self.give_up(send, now, reason, report)
            return
        assert send.attempt_id is not None
        recorded = self.ledger.record(send.key, send.attempt_id, moves.Failed(reason), now)
        log.error("send %s failed: %s", send.key, reason, extra={"send_key": send.key})
        report.failed.append((send, reason))
        if recorded:
            self.ended(report, send, Status.FAILED, now)
