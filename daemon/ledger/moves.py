"""The moves a send can make once planned, as typed values, and the columns each one writes.

Callers pick a move (Sent, Failed, Retry, Held, PutOff, ...); only `settle` turns it into columns. A send
that went out to some of its recipients (`sent_at` set) can only end sent, whichever end is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon.model import Status


def put_off(refused: Mapping[str, str]) -> dict[str, str]:
    """Of the recipients a server refused (address: answer, "452 4.5.3 ..."), those it put off: a 4xx,
    or a 5.7.x policy refusal ("554 5.7.1 <x>: Relay access denied") that a fix of the mail settings
    lifts. A send that went to the others is retried to them alone; the rest are refused for good."""
    return {r: a for r, a in refused.items() if _put_off_answer(a)}


def _put_off_answer(answer: str) -> bool:
    code, _, text = answer.partition(" ")
    return code[:1] == "4" or (code[:1] == "5" and text.startswith("5.7."))


def gave_up(refused: Mapping[str, str], why: str) -> str:
    """The note of a send that went to some recipients and will not be tried again for the others."""
    later = put_off(refused)
    missed = [f"{r} (put off: {a})" for r, a in later.items()]
    missed += [f"{r} (refused: {a})" for r, a in refused.items() if r not in later]
    why = why if why.startswith("gave up") else f"gave up, {why}"
    return f"sent to the others; not to {', '.join(missed)}: {why}" if missed else f"sent; {why}"


@dataclass(frozen=True)
class Delivered:
    """What a delivery leaves on its send: when it first went out, as what, and who refused it."""

    at: datetime
    subject: str
    message_id: str
    refused: Mapping[str, str]


@dataclass(frozen=True)
class Move:
    """A move of a send, with the reason written to its transition."""

    reason: str | None


@dataclass(frozen=True)
class Sent(Move):
    """It went out; `delivered` is None when only the note changes (it went out at an earlier try)."""

    delivered: Delivered | None = None


@dataclass(frozen=True)
class Arrived(Move):
    """Its outcome was unknown, and it turned out to have arrived: found in the sent mail, or by hand."""


@dataclass(frozen=True)
class Failed(Move):
    pass


@dataclass(frozen=True)
class Skipped(Move):
    pass


@dataclass(frozen=True)
class Stopped(Move):
    pass


@dataclass(frozen=True)
class Unknown(Move):
    """Handed to the server, and no one knows whether it arrived: a person decides."""


@dataclass(frozen=True)
class Retry(Move):
    """Pending again, tried at `when`; the try counts."""

    when: datetime


@dataclass(frozen=True)
class Held(Move):
    """Pending, waiting for a person's fix until `until` or the next start; the try does not count."""

    until: datetime


@dataclass(frozen=True)
class PutOff(Move):
    """Delivered to some recipients; retried at `when` to those the server put off."""

    when: datetime
    delivered: Delivered


@dataclass(frozen=True)
class Resend(Move):
    """A person asks for a failed or unknown send again: due at once, a fresh window, no deadline."""


HELD = "held: "  # the reason of a send held for a person's fix starts so: released at the next start
UNSENT = {Failed: Status.FAILED, Skipped: Status.SKIPPED, Stopped: Status.STOPPED}


@dataclass(frozen=True)
class Current:
    """What a move needs to know of the send as it stands."""

    sent_at: datetime | None
    handed_at: datetime | None
    attempts: int
    refused: Mapping[str, str]


def settle(move: Move, current: Current, at: datetime) -> tuple[Status, str | None, dict[str, Any]]:
    """The status, reason and other columns a move writes to a send standing as `current`."""
    first = current.sent_at
    if isinstance(move, Sent | Arrived) or (first is not None and type(move) in UNSENT):
        return _sent(move, current, at)
    if isinstance(move, Failed | Skipped | Stopped):
        return UNSENT[type(move)], move.reason, {}
    if isinstance(move, Unknown):
        return Status.UNKNOWN, move.reason, {}
    if isinstance(move, Retry):
        return Status.PLANNED, move.reason, {"next_attempt": move.when, "handed_at": None}
    if isinstance(move, Held):
        values = {"next_attempt": move.until, "handed_at": None, "attempts": max(current.attempts - 1, 0)}
        return Status.PLANNED, f"{HELD}{move.reason}", values
    if isinstance(move, PutOff):
        values = {"next_attempt": move.when, "handed_at": None, **_delivered(move.delivered, first)}
        return Status.PLANNED, move.reason, values
    if isinstance(move, Resend):
        values = {"due": at, "expires": None, "next_attempt": None, "handed_at": None, "attempts": 0}
        return Status.PLANNED, move.reason, values
    raise TypeError(f"not a move of a send: {move!r}")


def _sent(move: Move, current: Current, at: datetime) -> tuple[Status, str | None, dict[str, Any]]:
    if isinstance(move, Sent):
        values = _delivered(move.delivered, current.sent_at) if move.delivered else {}
        return Status.SENT, move.reason, values
    if isinstance(move, Arrived):
        # A retry to recipients put off earlier: they got it too; it went out when it first did.
        earlier = put_off(current.refused) if current.sent_at is not None else {}
        refused = {r: a for r, a in current.refused.items() if r not in earlier}
        return (
            Status.SENT,
            move.reason,
            {
                "sent_at": current.sent_at or current.handed_at or at,
                "refused": refused or None,
            },
        )
    # An end that did not go out, of a send that went to some: sent, naming who never got it.
    return Status.SENT, gave_up(current.refused, move.reason or "it will not go out"), {}


def _delivered(delivered: Delivered, first: datetime | None) -> dict[str, Any]:
    return {
        "sent_at": first or delivered.at,  # a send retried for some recipients went out at its first try
        "subject": delivered.subject,
        "refused": dict(delivered.refused) or None,
        "message_id": delivered.message_id,
    }
