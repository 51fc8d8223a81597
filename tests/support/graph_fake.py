"""A local fake of Microsoft Graph and of the Entra ID token endpoint, over HTTPS on 127.0.0.1.

The real MSAL and httpx talk to it through `[microsoft] authority`, `graph_endpoint` and `ca_file` (a
throwaway CA from private_ca.py), so discovery, token requests, paging and errors go through their code.

- `/{tenant}/v2.0/.well-known/openid-configuration` and `/{tenant}/oauth2/v2.0/token`: client
  credentials by secret, or by certificate assertion: a JWT whose `x5t` (SHA-1) or `x5t#S256` header
  names one of `certificates` (the app registration's), signed with that certificate's key (RS256 or
  PS256), `aud` the token endpoint, `iss` and `sub` the client id, not expired; else 401 `invalid_client`
  as Entra ID answers (AADSTS700027 for an unknown key or a bad signature). The access token is an
  unsigned JWT whose `roles` are the app's permissions.
- `/v1.0/users/{id}/calendarView/delta`: a mailbox's events in a window, `@odata.nextLink` pages (and
  empty ones, on request), a `@odata.deltaLink` whose next round returns only what changed since, as
  full events or `{"id", "@removed"}` (deleted, or moved out of the window); `expire_delta_tokens`
  makes old links answer 410 `syncStateNotFound`; `duplicate_changes` sends each change twice.
- Series (`put_series`): a `seriesMaster`, which no calendar view lists but `/v1.0/users/{id}/events/{id}`
  answers, and its `occurrence`s: each with the master's `seriesMasterId`, `originalStart` (UTC, `Z`) and
  an `iCalUId` of its own, as Graph v1.0 documents ("different for each occurrence in a recurring
  series"; the series-wide `uid` is beta's, so the fake gives none). `move_occurrence` makes one an
  `exception` at another time, its `originalStart` kept.
- `/v1.0/users/{id}/sendMail` (base64 MIME, `text/plain`): 202, the message then in the sender's Sent
  Items; `/v1.0/users/{id}/mailFolders/sentitems/messages?$filter=internetMessageId eq '…'`.
- `fail(status, times, path, retry_after)`: the next matching requests answer that status (429 and 503
  with `Retry-After`). `answers`: scripted answers for the next sends (None: the connection drops after
  the request was read). `scope`: the mailboxes the app may use (Exchange RBAC); others get 403.
- Permissions: `roles` are the app's Entra ID application permissions, carried in its token;
  `rbac_roles` those granted by Exchange RBAC for Applications role assignments, which no token shows.
  Either allows: calendars need Calendars.Read, sendMail Mail.Send, Sent Items Mail.ReadBasic(.All) or
  Mail.Read; without, 403 `ErrorAccessDenied`.
Every request is logged in `requests`.
"""

from __future__ import annotations

import base64
import email
import email.policy
import itertools
import json
import re
import secrets
import ssl
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.support.private_ca import PrivateCa, make_private_ca

TENANT = "contoso-tenant"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "fake-client-secret-value"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ROLES = ("Calendars.Read", "Mail.Send", "Mail.ReadBasic.All")


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # without the query
    query: dict[str, str]
    headers: dict[str, str]
    status: int
    body: bytes = b""


@dataclass
class Failure:
    status: int
    times: int
    path: str
    retry_after: str | None
    code: str


@dataclass
class Mailbox:
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # Graph id -> event resource
    changed: dict[str, int] = field(default_factory=dict)  # Graph id -> change number
    deleted: dict[str, int] = field(default_factory=dict)  # Graph id -> change number of its deletion
    sent: list[EmailMessage] = field(default_factory=list)


def graph_time(moment: datetime) -> dict[str, str]:
    """A Graph dateTimeTimeZone in UTC, as Graph answers with `Prefer: outlook.timezone="UTC"`."""
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


GOID_PREFIX = "040000008200E00074C5B7101A82E008"  # Exchange's global object ids (MS-OXOCAL)


def occurrence_uid(series_uid: str, original_start: datetime) -> str:
    """An occurrence's own iCalUId: in a global object id, the instance's date where the series' has
    zeros (MS-OXOCAL, PidLidGlobalObjectId); otherwise the date appended. Either way not the series'."""
    day = original_start.astimezone(UTC)
    if series_uid.upper().startswith(GOID_PREFIX) and len(series_uid) >= 40:
        stamp = f"{day.year:04X}{day.month:02X}{day.day:02X}"
        return series_uid[:32] + stamp + series_uid[40:]
    return f"{series_uid}:{day:%Y%m%d}"


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    head, payload = token.split(".")[:2]
    return {
        "header": json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))),
        "payload": json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))),
    }


def _moment(value: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(value["dateTime"][:19]).replace(tzinfo=UTC)


class FakeGraph:
    """The fake's state and knobs; the HTTPS server runs in a background thread until `close()`."""

    def __init__(self, *, max_page: int = 50, directory: Path | None = None, port: int = 0) -> None:
        self._tmp = tempfile.TemporaryDirectory() if directory is None else None
        self.ca: PrivateCa = make_private_ca(directory or Path(self._tmp.name) / "ca")  # type: ignore[union-attr]
        self.max_page = max_page
        self.mailboxes: dict[str, Mailbox] = {}
        self.requests: list[Seen] = []
        self.failures: list[Failure] = []
        self.answers: list[tuple[int, dict[str, Any]] | None] = []
        self.roles: set[str] = set(ROLES)
        self.rbac_roles: set[str] = set()
        self.scope: set[str] | None = None  # None: every mailbox (a tenant-wide consent)
        self.secret = CLIENT_SECRET
        self.certificates: list[x509.Certificate] = []  # the app registration's uploaded certificates
        self.assertions: list[dict[str, Any]] = []  # the verified client assertions' headers and claims
        self.empty_pages = 0  # empty pages put before the last page of every round
        self.duplicate_changes = False
        self.token_requests = 0
        self.tokens: set[str] = set()
        self._seq = itertools.count(1)
        self._rounds: dict[str, tuple[str, float, float, int, list[dict[str, Any]]]] = {}
        self._expired: set[str] = set()
        self.lock = threading.RLock()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca.cert_file, self.ca.key_file)
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.origin}/{TENANT}"

    @property
    def graph(self) -> str:
        return f"{self.origin}/v1.0"

    def toml(self, **more: str) -> str:
        """The [microsoft] table of a config using this fake."""
        lines = [
            "[microsoft]",
            f'tenant_id = "{TENANT}"',
            f'client_id = "{CLIENT_ID}"',
            f'authority = "{self.authority}"',
            f'graph_endpoint = "{self.graph}"',
            f'ca_file = "{self.ca.ca_file}"',
            *(f"{k} = {v}" for k, v in more.items()),
        ]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> FakeGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calendars ------------------------------------------------------------------------
    def mailbox(self, address: str) -> Mailbox:
        return self.mailboxes.setdefault(address.lower(), Mailbox())

    def put_event(self, mailbox: str, event: dict[str, Any]) -> dict[str, Any]:
        """Add or replace an event (`id` made up if missing); returns it as stored."""
        with self.lock:
            box = self.mailbox(mailbox)
            stored = {
                "id": event.get("id") or "AAMk" + secrets.token_hex(8),
                "type": "singleInstance",
                "isCancelled": False,
                "isAllDay": False,
                "categories": [],
                "originalStartTimeZone": "UTC",
                **event,
                "lastModifiedDateTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            box.events[stored["id"]] = stored
            box.changed[stored["id"]] = next(self._seq)
            box.deleted.pop(stored["id"], None)
            return stored

    def put_series(
        self,
        mailbox: str,
        ical_uid: str,
        first: datetime,
        count: int,
        *,
        every: timedelta = timedelta(days=7),
        length: timedelta = timedelta(hours=1),
        zone: str = "UTC",
        **fields: Any,
    ) -> tuple[str, list[dict[str, Any]]]:
        """A recurring meeting: its master's Graph id, and its `count` occurrences, `every` apart on the
        wall clock of `zone` (an IANA name: 10:00 stays 10:00 across a change to summer time)."""
        master = self.put_event(
            mailbox,
            {
                "iCalUId": ical_uid,
                "start": graph_time(first),
                "end": graph_time(first + length),
                **fields,
                "type": "seriesMaster",
                "recurrence": {"pattern": {"type": "daily", "interval": every.days or 1}},
            },
        )
        occurrences = []
        local = first.astimezone(ZoneInfo(zone))
        for n in range(count):
            start = (local + n * every).astimezone(UTC)
            occurrences.append(
                self.put_event(
                    mailbox,
                    {
                        **fields,
                        "iCalUId": occurrence_uid(ical_uid, start),
                        "start": graph_time(start),
                        "end": graph_time(start + length),
                        "type": "occurrence",
                        "seriesMasterId": master["id"],
                        "originalStart": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    },
                )
            )
        return master["id"], occurrences

    def move_occurrence(self, mailbox: str, event_id: str, start: datetime, **fields: Any) -> dict[str, Any]:
        """One occurrence moved (and edited): an `exception` now, whose `originalStart` stays."""
        event = self.mailbox(mailbox).events[event_id]
        length = _moment(event["end"]) - _moment(event["start"])
        return self.update_event(
            mailbox,
            event_id,
            type="exception",
            start=graph_time(start),
            end=graph_time(start + length),
            **fields,
        )

    def update_event(self, mailbox: str, event_id: str, **fields: Any) -> dict[str, Any]:
        with self.lock:
            return self.put_event(mailbox, {**self.mailbox(mailbox).events[event_id], **fields})

    def delete_event(self, mailbox: str, event_id: str) -> None:
        with self.lock:
            box = self.mailbox(mailbox)
            del box.events[event_id]
            box.changed.pop(event_id, None)
            box.deleted[event_id] = next(self._seq)

    def expire_delta_tokens(self) -> None:
        with self.lock:
            self._expired |= set(self._rounds)

    def fail(
        self, status: int, times: int = 1, path: str = "/", retry_after: str | None = None, code: str = ""
    ) -> None:
        self.failures.append(Failure(status, times, path, retry_after, code or f"Error{status}"))

    def calls(self, part: str, method: str = "GET") -> list[Seen]:
        return [r for r in self.requests if part in r.path and r.method == method]

    def delta_calls(self) -> list[Seen]:
        return self.calls("/calendarView/delta")

    def sends(self) -> list[Seen]:
        return self.calls("/sendMail", "POST")

    def raw_sent(self) -> list[bytes]:
        return [base64.b64decode(s.body) for s in self.sends() if s.status == 202]

    def clear_log(self) -> None:
        self.requests.clear()

    # -- HTTP -----------------------------------------------------------------------------
    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        parts = urllib.parse.urlsplit(target)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        try:
            status, extra, answer = self._answer(method, parts.path, query, headers, body)
        except _Drop:
            with self.lock:
                self.requests.append(Seen(method, parts.path, query, headers, 0, body))
            raise
        with self.lock:
            self.requests.append(Seen(method, parts.path, query, headers, status, body))
        return status, extra, answer

    def _answer(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        if path == f"/{TENANT}/v2.0/.well-known/openid-configuration":
            return (
                200,
                {},
                {
                    "token_endpoint": f"{self.authority}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{self.authority}/oauth2/v2.0/authorize",
                    "issuer": f"{self.authority}/v2.0",
                },
            )
        if path == f"/{TENANT}/oauth2/v2.0/token" and method == "POST":
            return self._token({k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()})
        with self.lock:
            failure = next((f for f in self.failures if f.path in path and f.times > 0), None)
            if failure is not None:
                failure.times -= 1
                extra = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                return failure.status, extra, _error(failure.code, f"the fake answers {failure.status}")
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return 401, {}, _error("InvalidAuthenticationToken", "Access token is empty or invalid.")
        match = re.fullmatch(r"/v1\.0/users/([^/]+)/(.+)", path)
        if not match:
            return 404, {}, _error("ResourceNotFound", f"the fake does not serve {path}")
        user, rest = urllib.parse.unquote(match.group(1)).lower(), match.group(2)
        if self.scope is not None and user not in self.scope:
            return 403, {}, _error("ErrorAccessDenied", "Access to OData is disabled: RBAC scope.")
        if rest.startswith(("calendarView/", "events/")) and not self._granted(
            "Calendars.Read", "Calendars.ReadBasic", "Calendars.ReadWrite"
        ):
            return 403, {}, _denied()
        if rest == "calendarView/delta" and method == "GET":
            return self._delta(user, query, headers)
        if rest.startswith("events/") and method == "GET":
            return self._event(user, urllib.parse.unquote(rest.removeprefix("events/")))
        if rest == "sendMail" and method == "POST":
            return self._send(user, headers, body)
        if rest == "mailFolders/sentitems/messages" and method == "GET":
            return self._sent_items(user, query)
        return 404, {}, _error("ResourceNotFound", f"the fake does not serve {method} {path}")

    def _granted(self, *permissions: str) -> bool:
        """Whether the app holds one of `permissions`, by consent in Entra ID or by an RBAC role."""
        return bool((self.roles | self.rbac_roles) & set(permissions))

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        self.token_requests += 1
        if form.get("grant_type") != "client_credentials" or form.get("client_id") != CLIENT_ID:
            return 400, {}, {"error": "unauthorized_client", "error_description": "AADSTS700016: unknown app"}
        assertion = form.get("client_assertion")
        if assertion:
            refused = self._refuse_assertion(form, assertion)
            if refused:
                return 401, {}, {"error": "invalid_client", "error_description": refused}
        elif form.get("client_secret") != self.secret:
            return (
                401,
                {},
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )
        if not form.get("scope", "").endswith("/.default"):
            return 400, {}, {"error": "invalid_scope", "error_description": "AADSTS1002012: use /.default"}
        token = _jwt({"roles": sorted(self.roles), "appid": CLIENT_ID, "n": secrets.token_hex(4)})
        with self.lock:
            self.tokens.add(token)
        return 200, {}, {"token_type": "Bearer", "expires_in": 3599, "access_token": token}

    def _refuse_assertion(self, form: dict[str, str], assertion: str) -> str | None:
        """Why Entra ID would refuse this client assertion, or None when it is good."""
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return "AADSTS50027: client_assertion_type must be " + ASSERTION_TYPE
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            return f"AADSTS50027: JWT token is invalid or malformed ({exc})"
        by_sha1 = {_b64(c.fingerprint(hashes.SHA1())): c for c in self.certificates}
        by_sha256 = {_b64(c.fingerprint(hashes.SHA256())): c for c in self.certificates}
        # base64url; MSAL keeps the padding, which Entra ID accepts
        named = {k: str(header.get(k, "")).rstrip("=") for k in ("x5t", "x5t#S256")}
        cert = by_sha256.get(named["x5t#S256"]) or by_sha1.get(named["x5t"])
        if cert is None:
            return (
                "AADSTS700027: Client assertion failed signature validation. [Reason - The key was not "
                f"found., Thumbprint of key used by client: '{header.get('x5t') or header.get('x5t#S256')}']"
            )
        try:
            claims = jwt.decode(
                assertion,
                key=cert.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=f"{self.authority}/oauth2/v2.0/token",
                issuer=CLIENT_ID,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.InvalidSignatureError:
            return (
                "AADSTS700027: Client assertion failed signature validation. [Reason - The provided "
                "signature value did not match the expected signature value.]"
            )
        except jwt.ExpiredSignatureError:
            return "AADSTS700024: Client assertion is not within its valid time range."
        except jwt.PyJWTError as exc:
            return f"AADSTS700027: Client assertion is invalid ({type(exc).__name__}: {exc})"
        if claims["sub"] != CLIENT_ID:
            return "AADSTS700021: Client assertion application identifier doesn't match 'client_id'."
        with self.lock:
            self.assertions.append({"header": header, "claims": claims})
        return None

    def _delta(
        self, user: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self.lock:
            box = self.mailbox(user)
            if "$deltatoken" in query or "$skiptoken" in query:
                token = query.get("$deltatoken") or query["$skiptoken"]
                if token in self._expired or token not in self._rounds:
                    return 410, {}, _error("syncStateNotFound", "The sync state was not found.")
                owner, low, high, since, pending = self._rounds[token]
                if "$deltatoken" in query:  # a new round: what changed since that round ended
                    pending = self._changes(box, low, high, since)
            elif "startDateTime" in query and "endDateTime" in query:
                low = datetime.fromisoformat(query["startDateTime"].replace("Z", "+00:00")).timestamp()
                high = datetime.fromisoformat(query["endDateTime"].replace("Z", "+00:00")).timestamp()
                pending = [e for e in self._events_in(box, low, high)]
                pending.sort(key=lambda e: e["start"]["dateTime"])
                pending += [{} for _ in range(self.empty_pages)]  # marks for empty pages
                owner = user
            else:
                return 400, {}, _error("ErrorInvalidParameter", "startDateTime and endDateTime are required")
            size = self.max_page
            prefer = headers.get("Prefer", "")
            asked = re.search(r"odata\.maxpagesize=(\d+)", prefer)
            if asked:
                size = min(size, int(asked.group(1)))
            if pending and pending[0] == {}:
                page, rest = [], pending[1:]
            else:
                page = [e for e in pending[:size] if e]
                rest = pending[len(page) :]
            if self.duplicate_changes and "$deltatoken" in query:
                page = page + page
            answer: dict[str, Any] = {"value": page}
            seq = max([0, *box.changed.values(), *box.deleted.values()])
            token = secrets.token_urlsafe(12)
            base = f"{self.graph}/users/{urllib.parse.quote(owner)}/calendarView/delta"
            if rest:
                self._rounds[token] = (owner, low, high, seq, rest)
                answer["@odata.nextLink"] = f"{base}?$skiptoken={token}"
            else:
                self._rounds[token] = (owner, low, high, self._since(box), [])
                answer["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
            return 200, {}, answer

    def _event(self, user: str, event_id: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self.lock:
            event = self.mailbox(user).events.get(event_id)
        if event is None:
            return 404, {}, _error("ErrorItemNotFound", "The specified object was not found in the store.")
        return 200, {}, event

    @staticmethod
    def _since(box: Mailbox) -> int:
        return max([0, *box.changed.values(), *box.deleted.values()])

    @staticmethod
    def _in(event: dict[str, Any], low: float, high: float) -> bool:
        """In a calendar view: in the window, and not a series master (views list its instances)."""
        return (
            event.get("type") != "seriesMaster"
            and _moment(event["start"]).timestamp() < high
            and _moment(event["end"]).timestamp() > low
        )

    def _events_in(self, box: Mailbox, low: float, high: float) -> list[dict[str, Any]]:
        return [e for e in box.events.values() if self._in(e, low, high) and not e.get("isCancelled")]

    def _changes(self, box: Mailbox, low: float, high: float, since: int) -> list[dict[str, Any]]:
        changes: list[tuple[int, dict[str, Any]]] = []
        for gid, seq in box.changed.items():
            if seq <= since:
                continue
            event = box.events[gid]
            if event.get("type") == "seriesMaster":
                continue  # a view tracks the instances, which change with it
            if self._in(event, low, high) and not event.get("isCancelled"):
                changes.append((seq, event))
            else:  # moved out of the window, or cancelled: removed from the view
                changes.append((seq, {"id": gid, "@removed": {"reason": "deleted"}}))
        for gid, seq in box.deleted.items():
            if seq > since:
                changes.append((seq, {"id": gid, "@removed": {"reason": "deleted"}}))
        return [event for _, event in sorted(changes, key=lambda c: c[0])]

    def _send(
        self, user: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        if not self._granted("Mail.Send"):
            return 403, {}, _denied()
        if not headers.get("Content-Type", "").startswith("text/plain"):
            return 415, {}, _error("ErrorInvalidRequest", "MIME content must be sent as text/plain")
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError:
            return (
                400,
                {},
                _error("ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."),
            )
        with self.lock:
            scripted = self.answers.pop(0) if self.answers else (202, {})
        if scripted is None:
            self._store_sent(user, raw)
            raise _Drop()
        status, answer = scripted
        if status == 202:
            self._store_sent(user, raw)
            return 202, {}, None
        return status, {}, answer

    def _store_sent(self, user: str, raw: bytes) -> None:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.mailbox(user).sent.append(message)

    def _sent_items(self, user: str, query: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        if not self._granted("Mail.ReadBasic.All", "Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"):
            return 403, {}, _denied()
        wanted = re.fullmatch(r"internetMessageId eq '(.*)'", query.get("$filter", ""))
        with self.lock:
            sent = list(self.mailbox(user).sent)
        if wanted is None:
            found = sent[: int(query.get("$top", "10"))]
        else:
            message_id = wanted.group(1).replace("''", "'")
            found = [m for m in sent if str(m["Message-ID"]).strip() == message_id]
        return (
            200,
            {},
            {
                "value": [
                    {"id": f"sent-{i}", "internetMessageId": str(m["Message-ID"]).strip()}
                    for i, m in enumerate(found)
                ]
            },
        )


class _Drop(Exception):
    """Close the connection without answering: the request was taken, its answer lost."""


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _denied() -> dict[str, Any]:
    return _error("ErrorAccessDenied", "Access is denied. Check credentials and try again.")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # The headers and the body go out as two writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers, 40 ms a request on Linux loopback.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, extra, answer = self.server.fake.handle(
                self.command, self.path, dict(self.headers.items()), body
            )
        except _Drop:
            self.close_connection = True
            self.connection.close()
            return
        data = json.dumps(answer).encode() if answer is not None else b""
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGraph
