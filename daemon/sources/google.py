"""Google Calendar, read incrementally through the Calendar API v3.

The first sync lists the window (`timeMin`/`timeMax`), recurring events expanded into instances
(`singleEvents`), deleted ones included (`showDeleted`), every page; it keeps the `nextSyncToken`.
Later syncs send only that token and get only what changed: one request per poll when nothing did.
Google refuses a sync token together with `timeMin`/`timeMax`/`q`/`privateExtendedProperty`, so the
window is applied here. A token Google no longer honours (410 Gone) is dropped for a full sync, which
reports as removed the events we knew that the full list no longer has: nothing lost, nothing twice.

Events get the ICS source's ids (`iCalUID`, plus `/<original start in UTC>` for an instance), so the
same meeting read from an .ics feed and from Google is one event. Tags may also come from the event's
private extended properties (`followthrough.kind` = closing, `followthrough.outcome` = won, …), which
only the calendar's owner (or a CRM acting for them) can set; shared ones could come from a customer.

Requests retry with the library's exponential backoff (429, 5xx, rate-limit 403s); a 400 is never
retried; a revoked grant is one clear error naming the account, logged once until it works again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from daemon.errors import GrantError, SourceError
from daemon.google.access import CALENDAR_SCOPE, NUM_RETRIES, GoogleAccess, grant_problem
from daemon.model import CalendarEvent, EventStatus, clean_line
from daemon.sources import CalendarSource, SyncBatch, repeat_unusable
from daemon.sources.google_events import EventMapper
from daemon.sources.ics_events import short_error

if TYPE_CHECKING:
    from daemon.backends import Wiring
    from daemon.config.sections import GoogleCalendar

log = logging.getLogger(__name__)

PAGE_SIZE = 2500  # the most events.list gives per page
MAX_PAGES = 400  # a million events: a runaway paging loop stops here
TOP_UP_AFTER = timedelta(days=1)  # how far the window's far end may move before its new days are read


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Gone(Exception):
    """The sync token is no longer valid: a full sync is needed."""


class GoogleCalendarSource(CalendarSource):
    """One Google calendar of one account.

    State: `token` (the sync token), `key` (account/calendar it belongs to), `horizon` (the far end
    of the window read so far, a timestamp) and `known`: Google id -> [our id, end timestamp] of the
    events we reported, so a bare cancelled stub maps to the right event and a full resync can tell
    what disappeared.
    """

    def __init__(
        self,
        name: str,
        *,
        access: GoogleAccess,
        account: str,
        calendar_id: str = "primary",
        default_zone: str = "UTC",
        window_past: timedelta = timedelta(days=30),
        window_future: timedelta = timedelta(days=400),
        quota_user: bool = False,
    ) -> None:
        self.name = name
        self.access = access
        self.account = account
        self.calendar_id = calendar_id
        self.mapper = EventMapper(default_zone)
        self.window_past = window_past
        self.window_future = window_future
        self.quota_user = quota_user
        self._grant_reported = False  # a broken grant is logged once, not on every poll

    @classmethod
    def from_config(cls, calendar: GoogleCalendar, wiring: Wiring) -> list[CalendarSource]:
        """One source per account of the entry, all through the one Google access."""
        return [
            cls(
                calendar.label_for(account),
                access=wiring.google,
                account=account,
                calendar_id=calendar.calendar_id,
                default_zone=wiring.settings.company.timezone,
                window_past=timedelta(days=calendar.window_past_days),
                window_future=timedelta(days=calendar.window_future_days),
                # With delegation all reps share one service account: spread its quota.
                quota_user=wiring.google.delegated,
            )
            for account in calendar.owners
        ]

    @property
    def where(self) -> str:
        return f"calendar {self.name!r} ({self.calendar_id} of {self.account})"

    @property
    def _key(self) -> str:
        return f"{self.account}/{self.calendar_id}"

    # -- requests -------------------------------------------------------------------------
    def _pages(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        """Every item of an events.list, all pages followed, and the nextSyncToken."""
        from googleapiclient.errors import HttpError

        try:
            service = self.access.client("calendar", "v3", self.account, (CALENDAR_SCOPE,)).service
        except GrantError as exc:
            raise self._grant_error(str(exc)) from None
        base: dict[str, Any] = {
            "calendarId": self.calendar_id,
            "singleEvents": True,
            "showDeleted": True,
            "maxResults": PAGE_SIZE,
            **params,
        }
        if self.quota_user:
            base["quotaUser"] = self.account
        items: list[dict[str, Any]] = []
        page_token: str | None = None
        for _ in range(MAX_PAGES):
            request_params = {**base, "pageToken": page_token} if page_token else base
            try:
                response = service.events().list(**request_params).execute(num_retries=NUM_RETRIES)
            except HttpError as exc:
                raise self._http_error(exc, syncing="syncToken" in params) from None
            except Exception as exc:
                problem = grant_problem(exc)
                if problem is not None:
                    raise self._grant_error(problem) from None
                raise SourceError(
                    f"{self.where}: cannot reach Google Calendar: {type(exc).__name__}: {exc}"
                ) from None
            items += [i for i in response.get("items") or () if isinstance(i, dict)]
            page_token = response.get("nextPageToken")
            if not page_token:
                return items, response.get("nextSyncToken")
        raise SourceError(f"{self.where}: more than {MAX_PAGES} pages of events; stopped")

    def _http_error(self, exc: Any, *, syncing: bool) -> Exception:
        status = int(getattr(exc.resp, "status", 0) or 0)
        reason = clean_line(str(getattr(exc, "reason", "") or exc), 300)
        if status == 410 and syncing:
            return _Gone()
        if status == 401:
            return self._grant_error(f"Google refused its credentials (HTTP 401: {reason})")
        if status == 404:
            return SourceError(
                f"{self.where}: Google has no calendar {self.calendar_id!r} for {self.account}"
            )
        return SourceError(f"{self.where}: Google Calendar answered HTTP {status}: {reason}")

    def _grant_error(self, problem: str) -> SourceError:
        self.access.forget(self.account)  # the next try reads the credentials afresh
        fix = self.access.grant_fix(self.account, CALENDAR_SCOPE)
        message = f"{self.where}: account {self.account}: {problem.rstrip('.')}; {fix}"
        if not self._grant_reported:
            self._grant_reported = True
            log.error("%s", message)
        return SourceError(message)

    # -- syncing --------------------------------------------------------------------------
    def sync(self, state: dict[str, Any] | None, now: datetime) -> SyncBatch:
        state = state or {}
        same_calendar = state.get("key") == self._key
        # Kept when the account or calendar changed: the full sync removes what the new one lacks.
        known: dict[str, list[Any]] = dict(state.get("known") or {})
        # Events skipped as unusable (Google id -> [label, problem]): named at every pass until fixed.
        unusable: dict[str, list[str]] = dict(state.get("unusable") or {}) if same_calendar else {}
        low, high = now - self.window_past, now + self.window_future
        token = state.get("token") if same_calendar else None
        batch = SyncBatch()
        full = token is None
        horizon = float(state.get("horizon") or 0.0)
        if not full:
            try:
                items, next_token = self._pages({"syncToken": token})
            except _Gone:
                log.warning("%s: Google expired the sync token; reading the whole window again", self.where)
                full = True
        if full:
            items, next_token = self._full(low, high)
            horizon = high.timestamp()
        elif high.timestamp() > horizon + TOP_UP_AFTER.total_seconds():
            # Events far ahead that have not changed since the first sync never come with the token:
            # read the days the window has moved into.
            extra, _ = self._full(datetime.fromtimestamp(horizon, UTC), high, show_deleted=False)
            items += extra
            horizon = high.timestamp()
        self._grant_reported = False
        seen: set[str] = set()
        changed = bool(items) or full or horizon != state.get("horizon")
        upserted: dict[str, CalendarEvent] = {}
        for item in items:
            gid = str(item.get("id") or "")
            seen.add(gid)
            unusable.pop(gid, None)  # any new version of it replaces what was wrong with the old
            problem = self._apply(item, gid, known, upserted, batch, low, high)
            if problem is not None:
                unusable[gid] = [self._label(item, gid), problem]
        if full:
            # What we knew that the full list no longer has was deleted while we were not looking.
            for gid in [g for g in known if g not in seen]:
                event_id, end = known.pop(gid)
                if end >= low.timestamp():
                    batch.removed.append(event_id)
        # Events that slid out of the window's past are history, not deletions: forget them quietly.
        for gid in [g for g, (_, end) in known.items() if end < low.timestamp()]:
            del known[gid]
            changed = True
        batch.upserted = list(upserted.values())
        batch.removed = sorted(set(batch.removed) - set(upserted))
        batch.state = {
            "key": self._key,
            "token": next_token,
            "horizon": horizon,
            "known": known,
            "unusable": unusable,
        }
        repeat_unusable(batch, {g: entry for g, entry in unusable.items() if g not in seen})
        if not changed and same_calendar:
            # Nothing came: keep the old token (still valid) rather than store the state on every poll.
            # Should Google ever expire it, the 410 leads to a full resync, which loses nothing.
            batch.unchanged = True
            batch.state = state
        return batch

    def _full(
        self, low: datetime, high: datetime, *, show_deleted: bool = True
    ) -> tuple[list[dict[str, Any]], str | None]:
        return self._pages({"timeMin": _rfc3339(low), "timeMax": _rfc3339(high), "showDeleted": show_deleted})

    @staticmethod
    def _label(item: dict[str, Any], gid: str) -> str:
        return clean_line(str(item.get("iCalUID") or gid or "(no id)"), 200)

    def _apply(
        self,
        item: dict[str, Any],
        gid: str,
        known: dict[str, list[Any]],
        upserted: dict[str, CalendarEvent],
        batch: SyncBatch,
        low: datetime,
        high: datetime,
    ) -> str | None:
        """Fold one Google event into the batch and the known map; the problem if it is unusable."""
        label = self._label(item, gid)
        previous = known.get(gid)
        if item.get("status") == "cancelled" and not item.get("start"):
            # A bare stub: only our map knows which event it was.
            if previous is not None:
                del known[gid]
                upserted.pop(previous[0], None)
                if previous[1] >= low.timestamp():
                    batch.removed.append(previous[0])
            return None
        try:
            event = self.mapper.event(item)
        except Exception as exc:
            problem = f"event {label}: skipped: {short_error(exc)}"
            batch.problems.append(problem)
            batch.unusable.append(label)
            return problem
        if previous is not None and previous[0] != event.id:
            batch.removed.append(previous[0])
        if event.end < low:  # moved into the past, or an old event edited: history, not news
            known.pop(gid, None)
            return None
        if event.start > high:  # beyond the window: gone from it if we had it
            if previous is not None:
                del known[gid]
                batch.removed.append(previous[0])
            return None
        if event.status is EventStatus.CANCELLED and previous is None:
            return None  # deleted before we ever saw it
        known[gid] = [event.id, event.end.timestamp()]
        upserted[event.id] = event
        return None
