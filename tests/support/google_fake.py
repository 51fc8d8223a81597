"""A local fake of the Google APIs followthrough uses, served over real HTTP on 127.0.0.1.

The real google-api-python-client and google-auth talk to it through `api_endpoint` and a `token_uri`
pointing here, so requests, retries, token refreshes and errors go through the library's own code.

- `/token`: OAuth token endpoint. Trades a registered refresh token (`authorized_user`) or a JWT-bearer
  assertion from a service account (signature not verified; `sub` is the account) for an access token.
- Calendar API v3 `events.list` (`[/calendar/v3]/calendars/{calendarId}/events`), with `singleEvents`
  instances stored as such, `showDeleted`, `timeMin`/`timeMax`, paging, and sync tokens that return
  only what changed (and refuse to be combined with the filters Google refuses).
- Every API call needs `Authorization: Bearer <token issued here>`: 401 otherwise.

Knobs: `expire_sync_tokens` (410 Gone), `fail` (any status N times, e.g. 429, 503, 400, a rate-limit
403), `revoke` (the token endpoint answers 400 invalid_grant), `deny_delegation` (401
unauthorized_client), `expire_access_tokens`. Every request is logged in `requests`.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    410: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_DEFAULT_REASONS = {
    400: "invalid",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    410: "fullSyncRequired",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}
# Parameters Google answers 400 to when they come with a syncToken.
_NOT_WITH_SYNC_TOKEN = (
    "timeMin",
    "timeMax",
    "q",
    "privateExtendedProperty",
    "sharedExtendedProperty",
    "iCalUID",
    "orderBy",
    "updatedMin",
)


@dataclass(frozen=True)
class SeenRequest:
    """One request the fake received, and the status it answered with."""

    method: str
    path: str  # without the query
    query: dict[str, str]  # the last value of each parameter
    headers: dict[str, str]
    status: int
    body: bytes = b""

    @property
    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in urllib.parse.parse_qs(self.body.decode("utf-8", "replace")).items()}


@dataclass
class Failure:
    """Answer `status` to the next `times` requests whose path contains `path`."""

    status: int
    times: int
    path: str
    reason: str
    message: str
    body: dict[str, Any] | None = None


@dataclass
class FakeCalendar:
    """One calendar of one account: events by Google id, and when each last changed."""

    time_zone: str = "UTC"
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)  # google id -> change number
    seq: int = 0


def when(value: datetime | date, zone: str | None = None) -> dict[str, str]:
    """A Google `start`/`end`/`originalStartTime`: `dateTime` with offset (in `zone` if given), or `date`."""
    if isinstance(value, datetime):
        moment = value
        if zone is not None:
            from zoneinfo import ZoneInfo

            moment = value.astimezone(ZoneInfo(zone))
        out = {"dateTime": moment.isoformat()}
        if zone is not None:
            out["timeZone"] = zone
        return out
    return {"date": value.isoformat()}


def instance_suffix(value: datetime | date) -> str:
    """How Google names an instance of a series: `<series id>_20260302T090000Z` or `_20260302`."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return value.strftime("%Y%m%d")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_time(value: dict[str, str], default: datetime) -> datetime:
    if "dateTime" in value:
        moment = datetime.fromisoformat(value["dateTime"])
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if "date" in value:
        return datetime.combine(date.fromisoformat(value["date"]), datetime.min.time(), tzinfo=UTC)
    return default


class FakeGoogle:
    """The fake's state and knobs; the HTTP server runs in a background thread until `close()`."""

    def __init__(self, *, max_page: int | None = None) -> None:
        self.max_page = max_page  # caps maxResults, to force paging with few events
        self.requests: list[SeenRequest] = []
        self.calendars: dict[tuple[str, str], FakeCalendar] = {}
        self._lock = threading.RLock()
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> account
        self._access_tokens: dict[str, str] = {}  # access token -> account
        self._revoked: set[str] = set()  # accounts a service account may no longer act as
        self._revoked_refresh: set[str] = set()
        self._denied: set[str] = set()
        self._sync_tokens: dict[str, tuple[tuple[str, str], int]] = {}  # token -> calendar, change number
        self._gone_tokens: set[str] = set()
        self._pages: dict[str, tuple[list[dict[str, Any]], str | None]] = {}
        self._failures: list[Failure] = []
        self._ids = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.token_uri = self.url + "token"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-google", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeGoogle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- identities -----------------------------------------------------------------------
    def authorized_user(self, account: str) -> dict[str, str]:
        """google-auth's authorized-user token file for `account`, its refresh token known here."""
        refresh_token = f"refresh-{secrets.token_hex(6)}"
        with self._lock:
            self._refresh_tokens[refresh_token] = account
        return {
            "type": "authorized_user",
            "client_id": "client-id.apps.googleusercontent.com",
            "client_secret": "client-secret",
            "refresh_token": refresh_token,
            "token_uri": self.token_uri,
        }

    def service_account_key(
        self, client_email: str = "followthrough@acme-project.iam.gserviceaccount.com"
    ) -> dict[str, str]:
        """A service-account JSON key with a fresh RSA key, its token_uri pointing here."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": "acme-project",
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": client_email,
            "client_id": "1234567890",
            "token_uri": self.token_uri,
        }

    def revoke(self, account: str) -> None:
        """The account's grant is gone: its access tokens stop working, and refreshing (its refresh
        tokens issued so far, or a service account acting as it) answers 400 invalid_grant.
        A later `authorized_user(account)` is a new grant that works."""
        with self._lock:
            self._revoked.add(account)
            self._revoked_refresh.update(t for t, a in self._refresh_tokens.items() if a == account)
            self._access_tokens = {t: a for t, a in self._access_tokens.items() if a != account}

    def deny_delegation(self, account: str) -> None:
        """The service account may not act as `account` (delegation not set up for the scopes)."""
        with self._lock:
            self._denied.add(account)

    def expire_access_tokens(self) -> None:
        """Every access token expires: the next API call answers 401 and the client must refresh."""
        with self._lock:
            self._access_tokens.clear()

    # -- calendars ------------------------------------------------------------------------
    def calendar(self, account: str, calendar_id: str = "primary") -> FakeCalendar:
        with self._lock:
            return self.calendars.setdefault((account, calendar_id), FakeCalendar())

    def put_event(
        self, account: str, resource: dict[str, Any], calendar_id: str = "primary"
    ) -> dict[str, Any]:
        """Create or replace an event (the resource as events.list returns it); returns it as stored."""
        with self._lock:
            cal = self.calendar(account, calendar_id)
            event = dict(resource)
            event.setdefault("id", f"ev{next(self._ids):05d}{secrets.token_hex(3)}")
            event.setdefault("iCalUID", f"{event['id']}@google.com")
            event.setdefault("status", "confirmed")
            event.setdefault("kind", "calendar#event")
            event.setdefault("organizer", {"email": account, "self": True})
            self._store(cal, event)
            return dict(event)

    def put_series(
        self,
        account: str,
        resource: dict[str, Any],
        starts: list[datetime] | list[date],
        duration: timedelta,
        *,
        zone: str | None = None,
        calendar_id: str = "primary",
    ) -> list[dict[str, Any]]:
        """The instances of a recurring event, as `singleEvents=true` lists them."""
        series_id = resource.get("id") or f"series{next(self._ids):05d}{secrets.token_hex(3)}"
        uid = resource.get("iCalUID") or f"{series_id}@google.com"
        made = []
        for start in starts:
            made.append(
                self.put_event(
                    account,
                    {
                        **resource,
                        "id": f"{series_id}_{instance_suffix(start)}",
                        "iCalUID": uid,
                        "recurringEventId": series_id,
                        "originalStartTime": when(start, zone),
                        "start": when(start, zone),
                        "end": when(start + duration, zone),
                    },
                    calendar_id,
                )
            )
        return made

    def update_event(
        self, account: str, event_id: str, calendar_id: str = "primary", **changes: Any
    ) -> dict[str, Any]:
        with self._lock:
            cal = self.calendar(account, calendar_id)
            event = {**cal.events[event_id], **changes}
            self._store(cal, event)
            return dict(event)

    def cancel_event(
        self, account: str, event_id: str, calendar_id: str = "primary", *, stub: bool = True
    ) -> None:
        """Delete an event as Google does: it stays listed (with showDeleted or a sync token) as
        `status: cancelled`, either a bare stub (id and status, plus the instance's series fields)
        or the whole event."""
        with self._lock:
            cal = self.calendar(account, calendar_id)
            old = cal.events[event_id]
            if stub:
                keep = ("kind", "id", "recurringEventId", "originalStartTime")
                event = {k: old[k] for k in keep if k in old}
            else:
                event = dict(old)
            event["status"] = "cancelled"
            self._store(cal, event)

    def purge_event(self, account: str, event_id: str, calendar_id: str = "primary") -> None:
        """An event gone without a trace: not listed even with showDeleted."""
        with self._lock:
            cal = self.calendar(account, calendar_id)
            cal.events.pop(event_id, None)
            cal.changed.pop(event_id, None)
            cal.seq += 1

    def _store(self, cal: FakeCalendar, event: dict[str, Any]) -> None:
        cal.seq += 1
        event["etag"] = f'"{cal.seq:016d}"'
        event["updated"] = _rfc3339(datetime.now(UTC))
        cal.events[event["id"]] = event
        cal.changed[event["id"]] = cal.seq

    # -- failures -------------------------------------------------------------------------
    def expire_sync_tokens(self) -> None:
        """Every sync token issued so far answers 410 Gone from now on."""
        with self._lock:
            self._gone_tokens.update(self._sync_tokens)

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        path: str = "/events",
        reason: str | None = None,
        message: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer `status` to the next `times` requests whose path contains `path` (`/token` for the
        token endpoint). `reason` is the error reason, e.g. `userRateLimitExceeded` for a 403."""
        with self._lock:
            self._failures.append(
                Failure(
                    status,
                    times,
                    path,
                    reason or _DEFAULT_REASONS.get(status, "error"),
                    message or f"injected HTTP {status}",
                    body,
                )
            )

    # -- the log --------------------------------------------------------------------------
    def calls(self, path_part: str = "/events", method: str | None = None) -> list[SeenRequest]:
        with self._lock:
            return [
                r for r in self.requests if path_part in r.path and (method is None or r.method == method)
            ]

    def event_lists(self) -> list[SeenRequest]:
        """The events.list requests received, failed ones included."""
        return self.calls("/events", "GET")

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- answering ------------------------------------------------------------------------
    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        parts = urllib.parse.urlsplit(raw_path)
        path = parts.path
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
        with self._lock:
            status, answer = self._answer(method, path, query, headers, body)
            self.requests.append(SeenRequest(method, path, query, headers, status, body))
            return status, answer

    def _take_failure(self, path: str) -> Failure | None:
        for failure in self._failures:
            if failure.times > 0 and failure.path in path:
                failure.times -= 1
                return failure
        return None

    def _answer(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        if path == "/token":
            failure = self._take_failure(path)
            if failure is not None:
                return failure.status, failure.body or {
                    "error": failure.reason,
                    "error_description": failure.message,
                }
            if method != "POST":
                return 405, {"error": "invalid_request", "error_description": "POST only"}
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()}
            return self._token(form)
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        account = (
            self._access_tokens.get(auth.removeprefix("Bearer ").strip())
            if auth.startswith("Bearer ")
            else None
        )
        if account is None:
            return _error(401, "authError", "Request had invalid authentication credentials.")
        failure = self._take_failure(path)
        if failure is not None:
            return failure.status, failure.body or _error(failure.status, failure.reason, failure.message)[1]
        calendar_path = path.removeprefix("/calendar/v3")
        segments = [urllib.parse.unquote(s) for s in calendar_path.strip("/").split("/")]
        if method == "GET" and len(segments) == 3 and segments[0] == "calendars" and segments[2] == "events":
            return self._list_events(account, segments[1], query)
        return _error(404, "notFound", f"the fake does not serve {method} {path}")

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type")
        if grant == "refresh_token":
            refresh_token = form.get("refresh_token", "")
            account = self._refresh_tokens.get(refresh_token)
            if account is None or refresh_token in self._revoked_refresh:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
        elif grant == JWT_BEARER:
            try:
                payload_part = form["assertion"].split(".")[1]
                payload = json.loads(base64.urlsafe_b64decode(payload_part + "=" * (-len(payload_part) % 4)))
            except (KeyError, IndexError, ValueError):
                return 400, {"error": "invalid_grant", "error_description": "Invalid JWT."}
            account = payload.get("sub") or payload.get("iss")
            if account in self._denied:
                return 401, {
                    "error": "unauthorized_client",
                    "error_description": "Client is unauthorized to retrieve access tokens using this "
                    "method, or client not authorized for any of the scopes requested.",
                }
            if account in self._revoked:
                return 400, {"error": "invalid_grant", "error_description": "Invalid email or User ID"}
        else:
            return 400, {"error": "unsupported_grant_type", "error_description": f"grant_type={grant}"}
        token = f"ya29.fake-{secrets.token_hex(8)}"
        self._access_tokens[token] = account
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _list_events(
        self, account: str, calendar_id: str, query: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        key = (account, calendar_id)
        if key not in self.calendars:
            return _error(404, "notFound", "Not Found")
        cal = self.calendars[key]
        if query.get("singleEvents") != "true":
            return _error(400, "invalid", "the fake serves only singleEvents=true")
        page_token = query.get("pageToken")
        if page_token:
            if page_token not in self._pages:
                return _error(400, "invalid", "Invalid page token value.")
            items, sync_token = self._pages.pop(page_token)
        else:
            sync = query.get("syncToken")
            if sync:
                mixed = [p for p in _NOT_WITH_SYNC_TOKEN if p in query]
                if mixed:
                    return _error(400, "invalid", f"Sync token cannot be used with {', '.join(mixed)}.")
                if sync in self._gone_tokens:
                    return _error(
                        410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."
                    )
                if sync not in self._sync_tokens or self._sync_tokens[sync][0] != key:
                    return _error(400, "invalid", "Invalid sync token value.")
                since = self._sync_tokens[sync][1]
                items = [dict(e) for i, e in cal.events.items() if cal.changed[i] > since]
            else:
                items = self._window(cal, query)
            items.sort(key=_order)
            sync_token = self._sync_token(key, cal.seq)
        size = min(int(query.get("maxResults") or 250), 2500, self.max_page or 2500)
        page, rest = items[:size], items[size:]
        answer: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"{cal.seq:016d}"',
            "summary": account if calendar_id == "primary" else calendar_id,
            "timeZone": cal.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
            "items": page,
        }
        if rest:
            token = f"page-{secrets.token_hex(8)}"
            self._pages[token] = (rest, sync_token)
            answer["nextPageToken"] = token
        else:
            answer["nextSyncToken"] = sync_token
        return 200, answer

    def _window(self, cal: FakeCalendar, query: dict[str, str]) -> list[dict[str, Any]]:
        low = datetime.fromisoformat(query["timeMin"]) if "timeMin" in query else None
        high = datetime.fromisoformat(query["timeMax"]) if "timeMax" in query else None
        show_deleted = query.get("showDeleted") == "true"
        found = []
        for event in cal.events.values():
            if event.get("status") == "cancelled" and not show_deleted:
                continue
            if "start" in event:  # a bare cancelled stub has no times: shown with showDeleted
                start = _parse_time(event["start"], datetime.min.replace(tzinfo=UTC))
                end = _parse_time(event.get("end", event["start"]), start)
                if (low is not None and end <= low) or (high is not None and start >= high):
                    continue
            found.append(dict(event))
        return found

    def _sync_token(self, key: tuple[str, str], seq: int) -> str:
        for token, (k, s) in self._sync_tokens.items():
            if k == key and s == seq and token not in self._gone_tokens:
                return token
        token = f"sync-{secrets.token_hex(6)}-{seq}"
        self._sync_tokens[token] = (key, seq)
        return token


def _order(event: dict[str, Any]) -> tuple[datetime, str]:
    """events.list without orderBy is in no promised order: by start, then id, is as good as any."""
    return _parse_time(event.get("start") or {}, datetime.min.replace(tzinfo=UTC)), str(event["id"])


def _error(status: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
        }
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, answer = self.server.fake.handle(self.command, self.path, dict(self.headers.items()), body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGoogle
