"""The Gmail transport: sends through the Gmail API as the sender, the rep or the service sender.

The message is the one `daemon.mail.message.build` makes for every transport, sent whole as
base64url `raw` MIME; Gmail takes the recipients from its To and Cc headers. Sending is not
idempotent, so the send request gets exactly one attempt on a fresh connection once its body is out:
httplib2 would silently repeat a POST whose answer was lost, and the client library would retry it
after a timeout. A lost answer is reported as `UnknownDeliveryError`, and `find` can then look the
message up by its Message-ID in the sender's mailbox. The library still retries answers that say the
message was not taken (429 and 5xx), and connections that never carried the request.

Gmail's per-user limits (Workspace: 2,000 messages a day, 100 recipients a message) are kept: a send
over the daily limit, or refused by Gmail for a rate or quota limit, raises `TransientDeliveryError`
and waits in the ledger; later sends of that sender wait too, without asking Gmail again meanwhile.
A message to more than 100 people raises `HeldDeliveryError`: it waits for a person, as customer mail
over `[mail] max_recipients` does (the config keeps that at most 100 with Gmail).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any

import httplib2

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
from daemon.google.access import GMAIL_READ_SCOPE, GMAIL_SEND_SCOPE, NUM_RETRIES, GoogleAccess, grant_problem
from daemon.mail import Readiness, Transport

if TYPE_CHECKING:
    from daemon.backends import Wiring

log = logging.getLogger(__name__)

DAY = timedelta(hours=24)
RATE_PAUSE = timedelta(minutes=15)  # after a 429 that names no time to wait until
QUOTA_PAUSE = timedelta(hours=1)  # after "daily limit exceeded": Gmail lifts it within 24 h, rolling
LIMIT_REASONS = frozenset(
    {"dailyLimitExceeded", "userRateLimitExceeded", "rateLimitExceeded", "quotaExceeded", "limitExceeded"}
)
SCOPE_REASONS = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})


class _AnswerLost(Exception):
    """The send request went out whole, then its answer was lost. Not an OSError on purpose: the
    client library retries those, and a retry here could deliver the message twice."""


class _OneShotHttp(httplib2.Http):
    """httplib2 with one difference for the Gmail send: a fresh connection and a single attempt."""

    def _conn_request(self, conn: Any, request_uri: str, method: str, body: Any, headers: Any) -> Any:
        if method != "POST" or not request_uri.split("?", 1)[0].endswith("/messages/send"):
            return super()._conn_request(conn, request_uri, method, body, headers)
        # A fresh connection: a lost answer then always means the server had the whole request,
        # never that a kept-alive connection had gone stale.
        conn.close()
        conn.connect()  # fails before anything is sent: the library may retry
        conn.request(method, request_uri, body, headers)  # fails before the request is whole
        try:
            raw = conn.getresponse()
            content = raw.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _AnswerLost(str(exc) or type(exc).__name__) from exc
        response = httplib2.Response(raw)
        return response, httplib2._decompressContent(response, content, self.limit_kwargs)


def _detail(exc: Any) -> tuple[int, str, str]:
    """Status, reason and message of a googleapiclient HttpError."""
    status = int(getattr(exc.resp, "status", 0) or 0)
    reason, text = "", ""
    try:
        error = json.loads(exc.content.decode("utf-8"))["error"]
        text = str(error.get("message", ""))
        errors = error.get("errors") or []
        reason = str(errors[0].get("reason", "")) if errors else ""
        if not reason:
            details = error.get("details") or []
            reason = next((str(d["reason"]) for d in details if isinstance(d, dict) and "reason" in d), "")
        reason = reason or str(error.get("status", ""))
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        text = exc.content.decode("utf-8", "replace") if isinstance(exc.content, bytes) else ""
    return status, reason, " ".join((text or http.client.responses.get(status, "")).split())[:300]


def _retry_after(text: str) -> datetime | None:
    """Gmail's 429 for mail sending says `Retry after 2026-03-01T10:00:00.000Z`."""
    match = re.search(r"[Rr]etry after (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)", text)
    if not match:
        return None
    try:
        return datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
    except ValueError:
        return None


class GmailTransport(Transport):
    idempotent = False  # a second send is a second email; see `find`

    def __init__(
        self,
        access: GoogleAccess,
        *,
        daily_limit: int = 2000,
        max_recipients: int = 100,
        lookup: bool = True,
        history: Callable[[str, datetime], int] | None = None,
    ) -> None:
        """`history(sender, since)`: how many messages the ledger recorded as sent by `sender` since
        then, so that the daily limit survives a restart; without it, only this process's sends count."""
        self.access = access
        self.daily_limit = daily_limit
        self.max_recipients = max_recipients
        self.lookup = lookup
        self.searchable = lookup
        self.history = history
        self._lock = threading.Lock()
        self._sent: dict[str, deque[datetime]] = {}
        self._paused: dict[str, tuple[datetime, str]] = {}
        self._no_lookup: set[str] = set()

    @classmethod
    def from_config(cls, wiring: Wiring) -> GmailTransport:
        return cls(wiring.google, history=wiring.sent_count)

    def _client(self, account: str, scope: str) -> Any:
        """Gmail for `account` with only `scope`: a grant of gmail.send alone must keep sending even
        if gmail.readonly, asked for separately, is missing."""
        return self.access.client("gmail", "v1", account, (scope,))

    # -- limits -------------------------------------------------------------------------------

    def _recipient_count(self, message: EmailMessage, recipients: Sequence[str]) -> int:
        headers = [str(v) for field in ("To", "Cc", "Bcc") for v in message.get_all(field, [])]
        in_headers = {address.lower() for _, address in getaddresses(headers) if address}
        return max(len(in_headers), len({r.lower() for r in recipients}))

    def _check_limits(self, sender: str, now: datetime) -> None:
        with self._lock:
            paused = self._paused.get(sender)
            if paused is not None and now < paused[0]:
                raise TransientDeliveryError(
                    f"Gmail sending for {sender} paused until {paused[0].isoformat()} ({paused[1]}): "
                    "the send waits in the ledger"
                )
            self._paused.pop(sender, None)
            sent = self._sent.setdefault(sender, deque())
            while sent and sent[0] <= now - DAY:
                sent.popleft()
            mine = count = len(sent)
            oldest = sent[0] if sent else None
        if self.history is not None:
            count = max(count, self.history(sender, now - DAY))
        if count >= self.daily_limit:
            until = f" until {(oldest + DAY).isoformat()}" if oldest is not None and count == mine else ""
            raise TransientDeliveryError(
                f"{sender} has sent {count} messages through Gmail in the last 24 hours, its daily limit "
                f"({self.daily_limit}): the send waits in the ledger{until}"
            )

    def _pause(self, sender: str, until: datetime, why: str) -> None:
        with self._lock:
            self._paused[sender] = (until, why)
        log.warning("Gmail sending for %s paused until %s: %s", sender, until.isoformat(), why)

    # -- sending ------------------------------------------------------------------------------

    def deliver(self, message: EmailMessage, envelope_from: str, recipients: Sequence[str]) -> dict[str, str]:
        sender = envelope_from
        count = self._recipient_count(message, recipients)
        if count > self.max_recipients:
            # Held like any send over [mail] max_recipients: nothing is wrong with the message itself.
            raise HeldDeliveryError(
                f"{count} recipients: Gmail sends a message to at most {self.max_recipients} "
                "(To and Cc together)"
            )
        self._check_limits(sender, clock.now())
        from google.auth.exceptions import GoogleAuthError, RefreshError
        from googleapiclient.errors import HttpError

        raw = base64.urlsafe_b64encode(message.as_bytes()).decode("ascii")
        try:
            client = self._client(sender, GMAIL_SEND_SCOPE)
            request = client.service.users().messages().send(userId="me", body={"raw": raw})
            request.http = self.access.authorized(
                client.credentials, _OneShotHttp(timeout=self.access.config.timeout)
            )
            request.execute(num_retries=NUM_RETRIES)
        except _AnswerLost as exc:
            raise UnknownDeliveryError(
                f"Gmail took the whole message from {sender}, then the answer was lost ({exc})"
            ) from None
        except HttpError as exc:
            raise self._send_error(sender, exc) from None
        except RefreshError as exc:
            self.access.forget(sender)
            raise TransientDeliveryError(
                f"Gmail account {sender}: {grant_problem(exc)}; "
                f"{self.access.grant_fix(sender, GMAIL_SEND_SCOPE)}. The send waits in the ledger"
            ) from None
        except (GrantError, ConfigError) as exc:
            raise TransientDeliveryError(
                f"Gmail account {sender}: {exc}. The send waits in the ledger"
            ) from None
        except GoogleAuthError as exc:  # the token endpoint could not be reached: nothing was sent
            raise TransientDeliveryError(
                f"Gmail account {sender}: cannot renew its access token: {exc}"
            ) from None
        except (OSError, httplib2.HttpLib2Error, http.client.HTTPException) as exc:
            raise TransientDeliveryError(
                f"cannot reach Gmail to send as {sender}: {exc or type(exc).__name__}"
            ) from None
        with self._lock:
            self._sent.setdefault(sender, deque()).append(clock.now())
        # Gmail answers for the whole message; a refused recipient comes back later as a bounce.
        return {}

    def _send_error(self, sender: str, exc: Any) -> DeliveryError:
        status, reason, text = _detail(exc)
        answer = f"{status} {reason + ': ' if reason else ''}{text}"
        lowered = text.lower()
        limited = reason in LIMIT_REASONS or "limit exceeded" in lowered or "quota exceeded" in lowered
        if status == 429 or (status == 403 and limited):
            daily = reason == "dailyLimitExceeded" or "daily" in lowered
            now = clock.now()
            named = _retry_after(text)
            until = (
                named if named is not None and named > now else now + (QUOTA_PAUSE if daily else RATE_PAUSE)
            )
            self._pause(sender, until, f"Gmail answered {answer}")
            return TransientDeliveryError(
                f"Gmail {'daily ' if daily else ''}sending limit reached for {sender} ({answer}): "
                f"the send waits in the ledger and is tried again after {until.isoformat()}"
            )
        if status >= 500:
            return TransientDeliveryError(
                f"Gmail answered {answer} to {sender}'s send, after {NUM_RETRIES} retries"
            )
        if status == 401 or status == 403 or (status == 400 and reason == "failedPrecondition"):
            # The account, not the message: keep the send until someone fixes the grant.
            self.access.forget(sender)
            return TransientDeliveryError(
                f"Gmail refused to send as {sender} ({answer}); "
                f"{self.access.grant_fix(sender, GMAIL_SEND_SCOPE)}. The send waits in the ledger"
            )
        if status == 404:
            return TransientDeliveryError(f"Gmail has no mailbox for {sender} ({answer}); check the sender")
        return PermanentDeliveryError(f"Gmail refused the message from {sender}: {answer}")

    # -- checking -------------------------------------------------------------------------------

    def check(self, senders: Sequence[str]) -> list[Readiness]:
        """Each sender's grant renewed at its token endpoint for gmail.send alone (and gmail.readonly,
        for looking a send up after a crash): a revoked, expired or too narrow grant shows here, and
        nothing is sent or stored."""
        return [self._check_sender(sender) for sender in dict.fromkeys(senders)]

    def _check_sender(self, sender: str) -> Readiness:
        subject = f"gmail {sender}"
        problem = self._grant_problem(sender, GMAIL_SEND_SCOPE)
        if problem is not None:
            return Readiness(subject, problem=problem)
        found = "token renewed, gmail.send granted"
        if not self.lookup:
            return Readiness(subject, found=found)
        if self._grant_problem(sender, GMAIL_READ_SCOPE) is not None:
            return Readiness(
                subject,
                found=found,
                warning=f"{GMAIL_READ_SCOPE} is not granted: a send whose outcome a crash left unknown "
                f"then needs a person to check it ({self.access.grant_fix(sender, GMAIL_READ_SCOPE)}, "
                "with --lookup)",
            )
        return Readiness(subject, found=f"{found}, and gmail.readonly to look sends up after a crash")

    def _grant_problem(self, sender: str, scope: str) -> str | None:
        """What is wrong with `sender`'s grant of `scope`, found by renewing its token; None: nothing."""
        import google_auth_httplib2
        from google.auth.exceptions import GoogleAuthError, RefreshError

        fix = self.access.grant_fix(sender, scope)
        try:
            credentials = self.access.credentials(sender, (scope,))
            credentials.refresh(
                google_auth_httplib2.Request(httplib2.Http(timeout=self.access.config.timeout))
            )
        except RefreshError as exc:
            why = str(exc.args[0] if exc.args else exc)
            if "scope" in why.lower():
                return f"Gmail account {sender}: the grant lacks {scope} ({why}); {fix}"
            return f"Gmail account {sender}: {grant_problem(exc)}; {fix}"
        except (GrantError, ConfigError) as exc:
            return f"Gmail account {sender}: {exc}"
        except (GoogleAuthError, OSError, httplib2.HttpLib2Error, http.client.HTTPException) as exc:
            return (
                f"Gmail account {sender}: cannot reach Google to renew its token: "
                f"{exc or type(exc).__name__}; check that this machine can reach Google "
                "(or [google] api_endpoint)"
            )
        granted = getattr(credentials, "granted_scopes", None)
        if granted is not None and scope not in granted:
            return f"Gmail account {sender}: the grant lacks {scope}; {fix}"
        return None

    # -- looking up ---------------------------------------------------------------------------

    def find(self, message_id: str, sender: str) -> bool | None:
        """Whether `sender`'s mailbox holds a message with this Message-ID: a send whose outcome was
        unknown did go out. None when it cannot tell: looking is off or gmail.readonly is not granted
        (logged once per sender). Raises TransientDeliveryError when the search failed."""
        if not self.lookup:
            return None
        from google.auth.exceptions import GoogleAuthError, RefreshError
        from googleapiclient.errors import HttpError

        query = f"rfc822msgid:{message_id.strip().strip('<>')}"
        try:
            answer = (
                self._client(sender, GMAIL_READ_SCOPE)
                .service.users()
                .messages()
                .list(userId="me", q=query, includeSpamTrash=True, maxResults=1)
                .execute(num_retries=NUM_RETRIES)
            )
        except HttpError as exc:
            status, reason, text = _detail(exc)
            if status == 403 and (reason in SCOPE_REASONS or "scope" in text.lower()):
                self._cannot_look(sender, f"{status} {text}")
                return None
            raise TransientDeliveryError(
                f"cannot search {sender}'s Gmail for {message_id}: {status} {reason} {text}"
            ) from None
        except RefreshError as exc:
            self.access.forget(sender)
            why = str(exc.args[0] if exc.args else exc)
            if "scope" in why.lower():
                self._cannot_look(sender, why)
                return None
            raise TransientDeliveryError(
                f"cannot search {sender}'s Gmail for {message_id}: {grant_problem(exc)}; "
                f"{self.access.grant_fix(sender, GMAIL_SEND_SCOPE)}"
            ) from None
        except (GrantError, ConfigError, GoogleAuthError) as exc:
            raise TransientDeliveryError(f"cannot search {sender}'s Gmail for {message_id}: {exc}") from None
        except (OSError, httplib2.HttpLib2Error, http.client.HTTPException) as exc:
            raise TransientDeliveryError(
                f"cannot reach Gmail to search {sender}'s mailbox: {exc or type(exc).__name__}"
            ) from None
        with self._lock:
            self._no_lookup.discard(sender)  # the grant may have been widened since
        return bool(answer.get("messages"))

    def _cannot_look(self, sender: str, why: str) -> None:
        with self._lock:
            first = sender not in self._no_lookup
            self._no_lookup.add(sender)
        if first:
            log.warning(
                "cannot look up sends in %s's Gmail (%s): grant %s too, or a send whose outcome is unknown "
                "needs a person to check it",
                sender,
                why,
                GMAIL_READ_SCOPE,
            )
