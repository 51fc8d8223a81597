"""Outlook calendars through Microsoft Graph delta queries on a mailbox's calendar view.

The first sync asks `/users/{mailbox}/calendarView/delta` for the window (`startDateTime`,
`endDateTime`), follows every `@odata.nextLink` (a page may be empty) and keeps the `@odata.deltaLink`;
later syncs request only that link and get only what changed: one request per poll when nothing did.
`@removed` entries are deletions, or events that left the window. The same change may come twice or
out of order: a version older than the one we hold (`lastModifiedDateTime`) is ignored.

The window is fixed by the token, so when followthrough's window has moved a day beyond it, and when
Graph no longer knows the token (410 Gone, `syncStateNotFound`), the window is read whole again and
the events we knew that it no longer has are reported removed: nothing lost, nothing twice (sends
are keyed by event, and the ledger never re-sends what was sent).

Times are asked for in UTC (`Prefer: outlook.timezone="UTC"`); the event's own zone comes from
`originalStartTimeZone`. Ids are the ICS source's (see microsoft_events.py): an occurrence's UID is its
series master's `iCalUId`, read once per series (`GET /users/{mailbox}/events/{seriesMasterId}`) and
kept in the state, so a quiet poll still costs one request.
"""

from __future__ import annotations

import logging
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from daemon.errors import ConfigError, GrantError, SourceError
from daemon.microsoft.access import MicrosoftAccess, Throttled, error_of
from daemon.model import CalendarEvent, EventStatus, clean_id, clean_line
from daemon.sources import CalendarSource, SyncBatch, repeat_unusable
from daemon.sources.ics_events import short_error
from daemon.sources.microsoft_events import EventMapper

if TYPE_CHECKING:
    from daemon.backends import Wiring
    from daemon.config.sections import MicrosoftCalendar

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # odata.maxpagesize asked for; Graph may give fewer
MAX_PAGES = 5000  # a million events: a runaway paging loop stops here
TOP_UP_AFTER = timedelta(days=1)  # how far the window's far end may move before it is read again
PREFER = f'outlook.timezone="UTC", odata.maxpagesize={PAGE_SIZE}'
GONE_CODES = frozenset({"syncStateNotFound", "syncStateInvalid", "resyncRequired"})


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Gone(Exception):
    """The delta token is no longer valid: a full sync is needed."""


class MicrosoftCalendarSource(CalendarSource):
    """The default calendar of one mailbox.

    State: `key` (the mailbox), `delta` (the deltaLink), `low`/`high` (the window the token covers,
    timestamps) and `known`: Graph id -> [our id, end timestamp, lastModifiedDateTime] of the events
    we reported, so a bare `@removed` maps to the right event and a full resync can tell what went.
    """

    def __init__(
        self,
        name: str,
        *,
        access: MicrosoftAccess,
        mailbox: str,
        default_zone: str = "UTC",
        window_past: timedelta = timedelta(days=30),
        window_future: timedelta = timedelta(days=400),
    ) -> None:
        self.name = name
        self.access = access
        self.mailbox = mailbox
        self.mapper = EventMapper(default_zone)
        self.window_past = window_past
        self.window_future = window_future
        self._grant_reported = False

    @classmethod
    def from_config(cls, calendar: MicrosoftCalendar, wiring: Wiring) -> list[CalendarSource]:
        """One source per mailbox of the entry, all through the one Microsoft access."""
        return [
            cls(
                calendar.label_for(mailbox),
                access=wiring.microsoft,
                mailbox=mailbox,
                default_zone=wiring.settings.company.timezone,
                window_past=timedelta(days=calendar.window_past_days),
                window_future=timedelta(days=calendar.window_future_days),
            )
            for mailbox in calendar.owners
        ]

    @property
    def where(self) -> str:
        return f"calendar {self.name!r} (mailbox {self.mailbox})"

    # -- requests -------------------------------------------------------------------------
    def _get(self, url: str, params: dict[str, str] | None, prefer: str | None = None) -> httpx.Response:
        """One GET through the access; what keeps it from Graph as a SourceError naming the calendar."""
        try:
            return self.access.get(url, params=params, prefer=prefer)
        except (GrantError, ConfigError) as exc:  # ConfigError: the certificate file is unusable
            raise self._grant_error(str(exc)) from None
        except Throttled as exc:
            raise SourceError(
                f"{self.where}: Graph is throttling: {exc}; tried again at the next poll"
            ) from None
        except httpx.HTTPError as exc:
            raise SourceError(
                f"{self.where}: cannot reach Microsoft Graph: {type(exc).__name__}: {exc}"
            ) from None

    def _pages(self, first: str, params: dict[str, str] | None) -> tuple[list[dict[str, Any]], str]:
        """Every entry of a delta round, all pages followed, and its deltaLink."""
        items: list[dict[str, Any]] = []
        url, query = first, params
        for _ in range(MAX_PAGES):
            response = self._get(url, query, PREFER)
            if response.status_code != 200:
                raise self._http_error(response, syncing=query is None)
            try:
                page = response.json()
                values = page.get("value")
            except (ValueError, AttributeError):
                raise SourceError(
                    f"{self.where}: Graph answered something that is not a page of events"
                ) from None
            items += [v for v in values or () if isinstance(v, dict)]
            if page.get("@odata.nextLink"):
                url, query = str(page["@odata.nextLink"]), None
                continue
            if page.get("@odata.deltaLink"):
                return items, str(page["@odata.deltaLink"])
            raise SourceError(f"{self.where}: a page of events with neither nextLink nor deltaLink")
        raise SourceError(f"{self.where}: more than {MAX_PAGES} pages of events; stopped")

    def _http_error(self, response: httpx.Response, *, syncing: bool) -> Exception:
        status = response.status_code
        code, message = error_of(response)
        if syncing and (status == 410 or code in GONE_CODES):
            return _Gone()
        answer = clean_line(f"HTTP {status}{' ' + code if code else ''}: {message}", 400)
        if status == 401:
            return self._grant_error(f"Graph refused the app's token ({answer})")
        if status == 403:
            return self._grant_error(
                f"Graph refused to read this mailbox's calendar ({answer}): grant the app Calendars.Read "
                "(Entra ID), or the Exchange RBAC role Application Calendars.Read, with the mailbox in "
                "its scope"
            )
        if status == 404:
            return SourceError(f"{self.where}: Graph has no mailbox {self.mailbox} ({answer})")
        return SourceError(f"{self.where}: Microsoft Graph answered {answer}")

    def _grant_error(self, problem: str) -> SourceError:
        message = f"{self.where}: {problem.rstrip('.')}"
        if not self._grant_reported:
            self._grant_reported = True
            log.error("%s", message)
        return SourceError(message)

    def _read_masters(self, items: list[dict[str, Any]], series: dict[str, str]) -> None:
        """Adds to `series` (master id -> its iCalUId) the masters of the instances in `items` it lacks.

        A master Graph no longer has (404: the series went while we paged) is left out: its instances
        are reported unusable this poll, and their removal comes with the next round."""
        wanted = {
            str(item["seriesMasterId"])
            for item in items
            if "@removed" not in item
            and self.mapper.is_instance(item)
            and not self.mapper.series_uid(item)
            and item.get("seriesMasterId")
        }
        for master in sorted(wanted - set(series)):
            path = f"/users/{urllib.parse.quote(self.mailbox)}/events/{urllib.parse.quote(master, safe='')}"
            response = self._get(path, {"$select": "iCalUId,type"})
            if response.status_code == 404:
                continue
            if response.status_code != 200:
                raise self._http_error(response, syncing=False)
            try:
                uid = clean_id(str(response.json().get("iCalUId") or ""), 500)
            except (ValueError, AttributeError):
                uid = ""
            if uid:
                series[master] = uid

    def _initial(self, low: datetime, high: datetime) -> tuple[list[dict[str, Any]], str]:
        path = f"/users/{urllib.parse.quote(self.mailbox)}/calendarView/delta"
        return self._pages(path, {"startDateTime": _iso(low), "endDateTime": _iso(high)})

    # -- syncing --------------------------------------------------------------------------
    def sync(self, state: dict[str, Any] | None, now: datetime) -> SyncBatch:
        state = state or {}
        same = state.get("key") == self.mailbox
        known: dict[str, list[Any]] = dict(state.get("known") or {})
        unusable: dict[str, list[str]] = dict(state.get("unusable") or {}) if same else {}
        series: dict[str, str] = dict(state.get("series") or {}) if same else {}
        low, high = now - self.window_past, now + self.window_future
        delta = state.get("delta") if same else None
        token_low, token_high = float(state.get("low") or 0.0), float(state.get("high") or 0.0)
        # The token's window must still cover ours: re-read it whole a day before it would not.
        full = (
            delta is None
            or low.timestamp() < token_low
            or high.timestamp() > token_high + TOP_UP_AFTER.total_seconds()
        )
        items: list[dict[str, Any]] = []
        if not full:
            try:
                items, delta = self._pages(str(delta), None)
            except _Gone:
                log.warning(
                    "%s: Graph no longer knows the delta token; reading the whole window again", self.where
                )
                full = True
        if full:
            items, delta = self._initial(low, high)
            token_low, token_high = low.timestamp(), high.timestamp()
        self._read_masters(items, series)
        self._grant_reported = False
        batch = SyncBatch()
        seen: set[str] = set()
        upserted: dict[str, CalendarEvent] = {}
        for item in items:
            gid = str(item.get("id") or "")
            if not gid:
                continue
            seen.add(gid)
            if "@removed" in item:
                unusable.pop(gid, None)
                self._remove(gid, known, upserted, batch, low)
                continue
            previous = known.get(gid)
            modified = str(item.get("lastModifiedDateTime") or "")
            if previous is not None and modified and len(previous) > 2 and modified < str(previous[2] or ""):
                continue  # an older version, arriving late or twice: what we hold is newer
            unusable.pop(gid, None)
            master = series.get(str(item.get("seriesMasterId") or ""))
            problem = self._apply(item, gid, modified, master, known, upserted, batch, low, high)
            if problem is not None:
                unusable[gid] = [self._label(item, gid), problem]
        if full:
            for gid in [g for g in known if g not in seen]:
                event_id, end = known.pop(gid)[:2]
                if end >= low.timestamp():
                    batch.removed.append(event_id)
        for gid in [g for g, entry in known.items() if entry[1] < low.timestamp()]:
            del known[gid]  # slid into the past: history, not a deletion
        uids = {entry[0].rpartition("/")[0] for entry in known.values()}
        series = {master: uid for master, uid in series.items() if uid in uids}  # series still in view
        batch.upserted = list(upserted.values())
        batch.removed = sorted(set(batch.removed) - set(upserted))
        batch.state = {
            "key": self.mailbox,
            "delta": delta,
            "low": token_low,
            "high": token_high,
            "known": known,
            "unusable": unusable,
            "series": series,
        }
        repeat_unusable(batch, {g: entry for g, entry in unusable.items() if g not in seen})
        if not items and not full and same and known == dict(state.get("known") or {}):
            # Nothing came: keep the old deltaLink (Graph still answers it with what changed since)
            # rather than store the state on every poll; if it expires, the resync loses nothing.
            batch.unchanged = True
            batch.state = state
        return batch

    @staticmethod
    def _label(item: dict[str, Any], gid: str) -> str:
        return clean_line(str(item.get("iCalUId") or gid or "(no id)"), 200)

    def _remove(
        self,
        gid: str,
        known: dict[str, list[Any]],
        upserted: dict[str, CalendarEvent],
        batch: SyncBatch,
        low: datetime,
    ) -> None:
        previous = known.pop(gid, None)
        if previous is None:
            return  # never reported, or already gone: a removal seen twice is one removal
        upserted.pop(previous[0], None)
        if previous[1] >= low.timestamp():
            batch.removed.append(previous[0])

    def _apply(
        self,
        item: dict[str, Any],
        gid: str,
        modified: str,
        master: str | None,
        known: dict[str, list[Any]],
        upserted: dict[str, CalendarEvent],
        batch: SyncBatch,
        low: datetime,
        high: datetime,
    ) -> str | None:
        """Fold one Graph event into the batch and the known map; the problem if it is unusable.
        `master`: the iCalUId of its series master, for an instance."""
        label = self._label(item, gid)
        previous = known.get(gid)
        try:
            event = self.mapper.event(item, master)
        except Exception as exc:
            problem = f"event {label}: skipped: {short_error(exc)}"
            batch.problems.append(problem)
            batch.unusable.append(label)
            return problem
        if previous is not None and previous[0] != event.id:
            batch.removed.append(previous[0])
        if event.end < low:
            known.pop(gid, None)
            return None
        if event.start > high:
            if previous is not None:
                del known[gid]
                batch.removed.append(previous[0])
            return None
        if event.status is EventStatus.CANCELLED and previous is None:
            return None  # cancelled before we ever saw it
        known[gid] = [event.id, event.end.timestamp(), modified]
        upserted[event.id] = event
        return None
