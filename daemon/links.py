"""Links in emails that act with one click: a rep records an outcome, a customer unsubscribes.

A token is encrypted and authenticated (Fernet): opaque to whoever sees the URL, with a key per purpose, so
one kind of link can never act as the other. The newest secret makes tokens, all of them are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from daemon import clock
from daemon.model import Outcome

if TYPE_CHECKING:  # imported when a link is made or read: 8 MB that a company without links never needs
    from cryptography.fernet import MultiFernet


class Purpose(Enum):
    OUTCOME = "outcome"
    UNSUBSCRIBE = "unsubscribe"


class LinkError(Exception):
    """A link that cannot act: forged, changed or of the other kind (status 400), or expired (410)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OutcomeLink:
    event_id: str
    outcome: Outcome
    rule: str  # the email the link was in


@dataclass(frozen=True)
class Links:
    """Makes and reads the links under `base_url`, the public address of followthrough's web server."""

    base_url: str
    secrets: tuple[str, ...]  # the newest first: it makes tokens; every one of them is accepted
    expiry: timedelta

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("links need at least one secret key")

    def _keys(self, purpose: Purpose) -> MultiFernet:
        from cryptography.fernet import Fernet, MultiFernet

        # A key per purpose and secret: an outcome token does not even decrypt as an unsubscribe one.
        return MultiFernet(
            [
                Fernet(
                    base64.urlsafe_b64encode(hashlib.sha256(f"{purpose.value}\0{secret}".encode()).digest())
                )
                for secret in self.secrets
            ]
        )

    def _url(self, purpose: Purpose, payload: Any) -> str:
        data = json.dumps(payload, separators=(",", ":")).encode()
        token = self._keys(purpose).encrypt_at_time(data, int(clock.now().timestamp())).decode()
        return f"{self.base_url.rstrip('/')}/{purpose.value}/{token}"

    def outcome_url(self, event_id: str, outcome: Outcome, rule: str) -> str:
        """`rule`: the email the link is in, for the event's outcome log."""
        return self._url(Purpose.OUTCOME, [event_id, outcome.value, rule])

    def unsubscribe_url(self, addresses: list[str]) -> str:
        """One link for the people a message goes to: a lost deal's follow-ups stop for them all."""
        return self._url(Purpose.UNSUBSCRIBE, sorted({a.lower() for a in addresses}))

    def _read(self, purpose: Purpose, token: str, expires: bool = True) -> Any:
        from cryptography.fernet import InvalidToken

        keys = self._keys(purpose)
        try:
            data = keys.decrypt(token.encode())
            made = keys.extract_timestamp(token.encode())
        except (InvalidToken, ValueError):
            raise LinkError("This link is not valid: it may have been cut short or changed.", 400) from None
        if expires and clock.now().timestamp() - made > self.expiry.total_seconds():
            raise LinkError("This link has expired.", 410)
        return json.loads(data)

    def read_outcome(self, token: str) -> OutcomeLink:
        payload = self._read(Purpose.OUTCOME, token)
        try:
            event_id, outcome, rule = payload
            return OutcomeLink(str(event_id), Outcome(outcome), str(rule))
        except (TypeError, ValueError):
            raise LinkError("This link is not valid.", 400) from None

    def read_unsubscribe(self, token: str) -> list[str]:
        # Never expires: a way out of the mail must work as long as the mail can be read (CAN-SPAM
        # asks for 30 days at least); it stops as its key is retired.
        payload = self._read(Purpose.UNSUBSCRIBE, token, expires=False)
        if (
            not isinstance(payload, list)
            or not payload
            or not all(isinstance(a, str) and "@" in a for a in payload)
        ):
            raise LinkError("This link is not valid.", 400)
        return payload
