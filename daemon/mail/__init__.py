"""Mail transports: each delivers one built message to its recipients.

The contract (tests/integration/test_transport_contract.py runs it against outbox and SMTP, and
tests/integration/test_gmail.py the same checks against Gmail):
- `deliver(message, envelope_from, recipients)` returns the recipients the server refused, with its
  answer; an empty dict means every recipient was accepted. An answer starting with 4 is temporary:
  the dispatcher delivers the same message to those recipients again later, and only to them.
- It raises `TransientDeliveryError` when trying again later may work (4xx, a dropped connection, a
  timeout) and `PermanentDeliveryError` when it will not (5xx for every recipient).
- It raises `AccountDeliveryError` when the server refuses our own connection, login or account
  (settings a person must fix: the dispatcher stops sending for the pass and keeps every send), and
  `HeldDeliveryError` when only this message must wait for a person (e.g. a recipient limit).
- `start(message, envelope_from, recipients)` does the same in two steps: it hands the message over and
  returns `finish`, which gives what `deliver` gives and raises what it raises. SMTP returns before
  the server's last answer, so the dispatcher writes the next message while the server takes this
  one; `finish` is called before the transport is used again. Others deliver whole in `start`.
- Consecutive deliveries share one connection and one login; `close()` ends it (the dispatcher calls
  it after each pass), and the transport may be used again afterwards.
- `check(senders)` proves, sending nothing, that mail from those senders could be handed over (the
  server reached and logged in to, each sender's grant, the folder writable): what `doctor` reports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage


@dataclass(frozen=True)
class Readiness:
    """What `Transport.check` found for one leg of the way out: a server, a sender's grant, a folder."""

    subject: str  # what was checked: "smtp mail.acme.example:587", "gmail alice@acme.example"
    found: str = ""  # what works, when it does
    problem: str | None = None  # what stops mail, naming what to fix
    warning: str | None = None  # works, but should be looked at


class Transport(ABC):
    # Delivering the same message twice has no visible effect (the outbox overwrites its file):
    # a send whose outcome a crash left unknown can simply be delivered again.
    idempotent: bool = False
    # `find` can tell whether a message went out, so an unknown outcome is looked up, not guessed.
    searchable: bool = False

    @abstractmethod
    def deliver(self, message: EmailMessage, envelope_from: str, recipients: Sequence[str]) -> dict[str, str]:
        """Hand the message over; return refused recipients mapped to the server's answer."""

    def start(
        self, message: EmailMessage, envelope_from: str, recipients: Sequence[str]
    ) -> Callable[[], dict[str, str]]:
        """`deliver` in two steps: hand the message over, then `finish()` for its outcome."""
        refused = self.deliver(message, envelope_from, recipients)
        return lambda: refused

    def close(self) -> None:  # noqa: B027 - most transports hold nothing open
        """End any open connection."""

    def check(self, senders: Sequence[str]) -> list[Readiness]:
        """Whether mail from `senders` could be handed over, found without sending anything."""
        return [Readiness(type(self).__name__, warning="this transport cannot be checked without sending")]

    def find(self, message_id: str, sender: str) -> bool | None:
        """Whether a message with this Message-ID is in the sender's sent mail; None: cannot tell.

        Asked before resending a message whose outcome a crash left unknown.
        """
        return None
