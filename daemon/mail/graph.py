"""The Microsoft 365 transport: sends through Microsoft Graph `sendMail` from the sender's own mailbox.

The message is the one `daemon.mail.message.build` makes for every transport, posted whole as base64
MIME (`Content-Type: text/plain`); Exchange takes the recipients from its headers. 202 means accepted,
not delivered. The POST gets exactly one attempt, on a connection of its own: an answer lost after the
request went out is `UnknownDeliveryError`, and `find` then looks the message up in the sender's Sent
Items by our Message-ID before anything is sent again.

Exchange Online's limits per mailbox (30 messages a minute, 10,000 recipients a day by default;
`[microsoft] messages_per_minute`, `recipients_per_day`) are kept: a send over one, or answered 429,
raises `TransientDeliveryError` and waits in the ledger; that sender's later sends wait too, without
asking Graph meanwhile.
"""

from __future__ import annotations

import base64
import logging
import threading
import urllib.parse
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import getaddresses
from typing import TYPE_CHECKING

import httpx

from daemon import clock
from daemon.errors import (
    ConfigError,
    DeliveryError,
    GrantError,
    HeldDeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownDeliveryError,
)
from daemon.mail import Readiness, Transport
from daemon.microsoft.access import MicrosoftAccess, Throttled, error_of, parse_retry_after, token_roles

if TYPE_CHECKING:
    from daemon.backends import Wiring

log = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)
DAY = timedelta(hours=24)
RATE_PAUSE = timedelta(minutes=1)  # after a 429 that names no time to wait until
MAX_RECIPIENTS = 500  # Exchange Online's limit for one message, To, Cc and Bcc together
# What to grant, in Entra ID or (scoped to the mailboxes) as Exchange RBAC for Applications roles.
SEND_GRANT = "Mail.Send (Entra ID), or the Exchange RBAC role Application Mail.Send"
LOOKUP_GRANT = "Mail.ReadBasic.All (Entra ID), or the Exchange RBAC role Application Mail.ReadBasic"


def _user(address: str) -> str:
    return urllib.parse.quote(address, safe="@")


class GraphTransport(Transport):
    idempotent = False  # a second POST is a second email; see `find`

    def __init__(
        self,
        access: MicrosoftAccess,
        *,
        messages_per_minute: int = 30,
        recipients_per_day: int = 10_000,
        lookup: bool = True,
        history: Callable[[str, datetime], int] | None = None,
    ) -> None:
        """`history(sender, since)`: how many messages the ledger recorded as sent by `sender` since
        then, so that limits survive a restart; without it, only this process's sends count."""
        self.access = access
        self.messages_per_minute = messages_per_minute
        self.recipients_per_day = recipients_per_day
        self.lookup = lookup
        self.searchable = lookup
        self.history = history
        self._lock = threading.Lock()
        self._sent: dict[str, deque[tuple[datetime, int]]] = {}  # sender -> (when, recipients)
        self._paused: dict[str, tuple[datetime, str]] = {}

    @classmethod
    def from_config(cls, wiring: Wiring) -> GraphTransport:
        config = wiring.microsoft.config
        return cls(
            wiring.microsoft,
            messages_per_minute=config.messages_per_minute,
            recipients_per_day=config.recipients_per_day,
            lookup=config.lookup,
            history=wiring.sent_count,
        )

    # -- limits -------------------------------------------------------------------------------

    @staticmethod
    def _recipient_count(message: EmailMessage, recipients: Sequence[str]) -> int:
        headers = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
        in_headers = {address.lower() for _, address in getaddresses(headers) if address}
        return max(len(in_headers), len({r.lower() for r in recipients}))

    def _check_limits(self, sender: str, count: int, now: datetime) -> None:
        with self._lock:
            paused = self._paused.get(sender)
            if paused is not None and now < paused[0]:
                raise TransientDeliveryError(
                    f"Microsoft 365 sending for {sender} paused until {paused[0].isoformat()} ({paused[1]}): "
                    "the send waits in the ledger"
                )
            self._paused.pop(sender, None)
            sent = self._sent.setdefault(sender, deque())
            while sent and sent[0][0] <= now - DAY:
                sent.popleft()
            last_minute = sum(1 for when, _ in sent if when > now - MINUTE)
            today = sum(n for _, n in sent)
        if self.history is not None:
            # The ledger counts messages, not recipients: each message has one at least.
            last_minute = max(last_minute, self.history(sender, now - MINUTE))
            today = max(today, self.history(sender, now - DAY))
        if last_minute >= self.messages_per_minute:
            raise TransientDeliveryError(
                f"{sender} has sent {last_minute} messages in the last minute, Exchange's limit "
                f"({self.messages_per_minute}): the send waits in the ledger"
            )
        if today + count > self.recipients_per_day:
            raise TransientDeliveryError(
                f"{sender} has sent to {today} recipients in the last 24 hours; {count} more would pass "
                f"Exchange's daily limit ({self.recipients_per_day}): the send waits in the ledger"
            )

    def _pause(self, sender: str, until: datetime, why: str) -> None:
        with self._lock:
            self._paused[sender] = (until, why)
        log.warning("Microsoft 365 sending for %s paused until %s: %s", sender, until.isoformat(), why)

    # -- sending ------------------------------------------------------------------------------

    def deliver(self, message: EmailMessage, envelope_from: str, recipients: Sequence[str]) -> dict[str, str]:
        sender = envelope_from
        count = self._recipient_count(message, recipients)
        if count > MAX_RECIPIENTS:
            raise HeldDeliveryError(
                f"{count} recipients: Exchange Online sends a message to at most {MAX_RECIPIENTS}"
            )
        self._check_limits(sender, count, clock.now())
        body = base64.b64encode(message.as_bytes())
        try:
            headers = self.access.headers({"Content-Type": "text/plain"})
        except (GrantError, ConfigError) as exc:
            raise TransientDeliveryError(f"Microsoft 365: cannot send as {sender}: {exc}") from None
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(
                f"cannot reach Microsoft's sign-in to send as {sender}: {exc or type(exc).__name__}"
            ) from None
        url = self.access.url(f"/users/{_user(sender)}/sendMail")
        client = self.access.fresh_client()
        try:
            self.access.requests += 1
            response = client.post(url, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.WriteError, httpx.WriteTimeout) as exc:
            # The request never went out whole: Graph cannot have taken it.
            raise TransientDeliveryError(
                f"cannot reach Microsoft Graph to send as {sender}: {exc or type(exc).__name__}"
            ) from None
        except httpx.TransportError as exc:
            raise UnknownDeliveryError(
                f"Microsoft Graph took the whole message from {sender}, then the answer was lost "
                f"({exc or type(exc).__name__})"
            ) from None
        finally:
            client.close()
        if response.status_code == 202:
            with self._lock:
                self._sent.setdefault(sender, deque()).append((clock.now(), count))
            return {}  # for the whole message; a refused recipient comes back as a bounce
        raise self._send_error(sender, response)

    def _send_error(self, sender: str, response: httpx.Response) -> DeliveryError:
        status = response.status_code
        code, text = error_of(response)
        answer = f"{status} {code + ': ' if code else ''}{text}"
        if status in (429, 503):
            now = clock.now()
            wait = parse_retry_after(response.headers.get("Retry-After"), now)
            until = now + (wait if wait is not None else RATE_PAUSE)
            self._pause(sender, until, f"Graph answered {answer}")
            return TransientDeliveryError(
                f"Microsoft Graph is throttling {sender}'s sending ({answer}): the send waits in the "
                f"ledger and is tried again after {until.isoformat()}"
            )
        if status == 504:
            return UnknownDeliveryError(
                f"Microsoft Graph answered {answer} to {sender}'s send: it may have gone"
            )
        if status >= 500:
            return TransientDeliveryError(f"Microsoft Graph answered {answer} to {sender}'s send")
        if status in (401, 403):
            return TransientDeliveryError(
                f"Microsoft Graph refused to send as {sender} ({answer}): grant the app {SEND_GRANT}, "
                "with the mailbox in its scope. The send waits in the ledger"
            )
        if status == 404:
            return TransientDeliveryError(
                f"Microsoft 365 has no mailbox {sender} ({answer}); check the sender"
            )
        return PermanentDeliveryError(f"Microsoft Graph refused the message from {sender}: {answer}")

    # -- checking -------------------------------------------------------------------------------

    def check(self, senders: Sequence[str]) -> list[Readiness]:
        """The app's token (its secret or certificate, its consent), what it says of Mail.Send, then each
        sender's mailbox reached through its Sent Items, as the never-send-twice lookup reads it: nothing
        is sent. Exchange RBAC for Applications grants appear in no token: without Mail.Send in it, that
        permission cannot be checked short of sending, which is said, not failed."""
        subject = f"microsoft app {self.access.config.client_id}"
        try:
            token = self.access.token()
        except (GrantError, ConfigError) as exc:
            return [Readiness(subject, problem=str(exc))]
        except httpx.HTTPError as exc:
            return [
                Readiness(
                    subject,
                    problem=f"cannot reach Microsoft's sign-in at {self.access.config.authority_url}: "
                    f"{exc or type(exc).__name__}; check that this machine can reach it (or [microsoft] "
                    "authority, ca_file)",
                )
            ]
        if "Mail.Send" in token_roles(token):
            found = [Readiness(subject, found="token acquired; Mail.Send granted in Entra ID")]
        else:
            found = [
                Readiness(
                    subject,
                    found="token acquired; Mail.Send not in it",
                    warning=f"sending cannot be checked without sending: grant the app {SEND_GRANT} "
                    "(a role assignment shows in no token; Test-ServicePrincipalAuthorization lists it)",
                )
            ]
        return found + [self._check_sender(sender) for sender in dict.fromkeys(senders)]

    def _check_sender(self, sender: str) -> Readiness:
        subject = f"microsoft {sender}"
        if not self.lookup:
            return Readiness(
                subject,
                found="not checked ([microsoft] lookup = false)",
                warning="a send whose outcome a crash left unknown is not looked up in Sent Items: "
                "it waits for a person (`followthrough resolve`)",
            )
        try:
            response = self.access.get(
                f"/users/{_user(sender)}/mailFolders/sentitems/messages",
                params={"$top": "1", "$select": "id,internetMessageId"},
            )
        except (httpx.HTTPError, Throttled, GrantError, ConfigError) as exc:
            return Readiness(subject, problem=f"cannot reach {sender}'s mailbox: {exc or type(exc).__name__}")
        if response.status_code == 200:
            return Readiness(subject, found="mailbox reached; Sent Items readable to look sends up")
        code, text = error_of(response)
        if response.status_code == 403:
            return Readiness(
                subject,
                problem=f"Graph refused to read {sender}'s Sent Items ({code}: {text}): grant the app "
                f"{LOOKUP_GRANT}, and include the mailbox in the scope of its role assignments "
                "(New-ManagementScope, New-ManagementRoleAssignment). Without it a send whose outcome "
                "is unknown cannot be looked up and waits for a person; [microsoft] lookup = false "
                "accepts that",
            )
        if response.status_code == 404:
            return Readiness(subject, problem=f"Microsoft 365 has no mailbox {sender} ({code}: {text})")
        return Readiness(
            subject, problem=f"Graph answered {response.status_code} {code}: {text} for {sender}"
        )

    # -- looking up ---------------------------------------------------------------------------

    def find(self, message_id: str, sender: str) -> bool | None:
        """Whether `sender`'s Sent Items hold a message with this Message-ID: a send whose outcome was
        unknown did go out. None when looking is off. Raises TransientDeliveryError when the search
        failed, PermanentDeliveryError naming the permission when Graph refuses it (403)."""
        if not self.lookup:
            return None
        wanted = message_id.strip()
        if not wanted.startswith("<"):
            wanted = f"<{wanted}>"
        quoted = wanted.replace("'", "''")
        try:
            response = self.access.get(
                f"/users/{_user(sender)}/mailFolders/sentitems/messages",
                params={"$filter": f"internetMessageId eq '{quoted}'", "$select": "id,internetMessageId"},
            )
        except (GrantError, ConfigError, Throttled) as exc:
            raise TransientDeliveryError(f"cannot search {sender}'s Sent Items for {wanted}: {exc}") from None
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(
                f"cannot reach Microsoft Graph to search {sender}'s Sent Items: {exc or type(exc).__name__}"
            ) from None
        if response.status_code == 403:
            code, text = error_of(response)
            raise PermanentDeliveryError(
                f"Graph refused to search {sender}'s Sent Items ({code}: {text}): the app needs "
                f"{LOOKUP_GRANT} for this mailbox to tell whether a send went out"
            )
        if response.status_code != 200:
            code, text = error_of(response)
            raise TransientDeliveryError(
                f"cannot search {sender}'s Sent Items for {wanted}: {response.status_code} {code} {text}"
            )
        try:
            return bool(response.json().get("value"))
        except (ValueError, AttributeError):
            raise TransientDeliveryError(
                f"Graph's answer to the search of {sender}'s Sent Items is unreadable"
            ) from None

    def close(self) -> None:
        """Nothing to end: the one-shot sends close their own connections, and the shared Graph client
        (with its kept-alive connections for calendars) belongs to the access."""
