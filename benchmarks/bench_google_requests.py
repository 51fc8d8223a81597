"""Benchmark: Google Calendar API requests of incremental sync (sync tokens) against a full re-list.

N reps' calendars (one account each, ~50 events in the window, some of them instances of weekly series)
are polled P times, 5 minutes apart, by `GoogleCalendarSource.sync(state, now)` against one local
FakeGoogle (tests/support/google_fake.py: the real google-api-python-client and google-auth over real HTTP).
Before every poll but the first, a few random calendars get one event edited, added or cancelled.
Requests are counted from the fake's log; the naive alternative (re-list every calendar's window every
poll) is measured by listing each calendar's window once through the same clients, times P.

Run from the repository root: `python -m benchmarks.bench_google_requests [--calendars 200] [--polls 100]`.
`--calendars 10 --polls 5` is a smoke run of a few seconds. docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import googleapiclient.http

from daemon.config.sections import GoogleConfig
from daemon.google.access import CALENDAR_SCOPE, GoogleAccess
from daemon.sources import SyncBatch
from daemon.sources.google import PAGE_SIZE, GoogleCalendarSource
from tests.support.google_fake import FakeGoogle, when

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SEED = 20260302
POLL_INTERVAL = timedelta(minutes=5)
WINDOW_PAST, WINDOW_FUTURE = timedelta(days=30), timedelta(days=400)  # the source's defaults
ZONES = ("Europe/Berlin", "America/New_York", "Europe/London", None)
TOPICS = (
    "Discovery call",
    "Product demo",
    "Pricing discussion",
    "Security review",
    "Contract review",
    "Pilot check-in",
    "Renewal planning",
    "Procurement sync",
)
Change = Literal["edit", "add", "cancel"]
CHANGES: tuple[Change, ...] = ("edit", "add", "cancel")


class CountingFake(FakeGoogle):
    """FakeGoogle that also records, for each request in its log, the items and bytes it answered."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[tuple[int, int]] = []  # (items, response bytes), aligned with `requests`

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:  # re-entrant: the log and `answers` stay aligned
            status, answer = super().handle(method, raw_path, headers, body)
            self.answers.append((len(answer.get("items") or ()), len(json.dumps(answer).encode())))
            return status, answer


@dataclass
class Tally:
    """Requests between two marks of the fake's log."""

    lists: int = 0
    refreshes: int = 0
    other: int = 0
    failed: int = 0  # answered with a status other than 200
    items: int = 0
    bytes: int = 0
    sync_token_lists: int = 0  # events.list sent with a syncToken (and no window)

    @property
    def total(self) -> int:
        return self.lists + self.refreshes + self.other


def tally(fake: CountingFake, start: int, stop: int) -> Tally:
    out = Tally()
    with fake._lock:
        seen = list(zip(fake.requests[start:stop], fake.answers[start:stop], strict=True))
    for request, (items, size) in seen:
        if request.path == "/token":
            out.refreshes += 1
        elif request.method == "GET" and request.path.endswith("/events"):
            out.lists += 1
            if "syncToken" in request.query and "timeMin" not in request.query:
                out.sync_token_lists += 1
        else:
            out.other += 1
        out.failed += request.status != 200
        out.items += items
        out.bytes += size
    return out


def mark(fake: CountingFake) -> int:
    with fake._lock:
        return len(fake.requests)


# -- the calendars ----------------------------------------------------------------------------------
@dataclass
class Rep:
    account: str
    source: GoogleCalendarSource
    live: list[str] = field(default_factory=list)  # Google ids of events that are not cancelled
    state: dict[str, Any] | None = None


def _meeting(rng: random.Random, account: str, start: datetime, topic: str | None = None) -> dict[str, Any]:
    zone = rng.choice(ZONES)
    customer = f"{rng.choice(('dana', 'lee', 'sam', 'kim', 'ravi'))}@customer{rng.randrange(500)}.example"
    return {
        "summary": topic or rng.choice(TOPICS),
        "description": "Agenda: goals for the quarter, open questions from the last call.",
        "start": when(start, zone),
        "end": when(start + timedelta(minutes=rng.choice((30, 45, 60))), zone),
        "organizer": {"email": account, "self": True},
        "attendees": [
            {"email": account, "responseStatus": "accepted", "organizer": True},
            {"email": customer, "responseStatus": rng.choice(("needsAction", "accepted", "tentative"))},
        ],
    }


def _slot(rng: random.Random, low: datetime, days: int) -> datetime:
    day = low + timedelta(days=rng.randrange(days))
    return day.replace(hour=rng.randrange(8, 18), minute=rng.choice((0, 15, 30, 45)))


def populate(fake: FakeGoogle, rng: random.Random, account: str, events: int) -> list[str]:
    """About `events` events in the window: two weekly series (8 instances each, one of them with an
    all-day weekly instance instead), the rest one-off meetings from 30 days back to 90 ahead; plus a
    few outside the window. Returns the Google ids of those in the window."""
    ids: list[str] = []
    series = min(2, events // 16)
    for n in range(series):
        first = NOW.replace(hour=10 + n) + timedelta(days=rng.randrange(-21, 7))
        if n == 1:
            starts: list[datetime] | list[date] = [first.date() + timedelta(weeks=w) for w in range(8)]
            length = timedelta(days=1)
        else:
            starts = [first + timedelta(weeks=w) for w in range(8)]
            length = timedelta(minutes=30)
        resource = {"summary": "Pipeline review" if n == 0 else "Focus day", "description": "Weekly."}
        made = fake.put_series(account, resource, starts, length, zone="Europe/Berlin" if n == 0 else None)
        ids += [e["id"] for e in made]
    for _ in range(events - len(ids)):
        ids.append(
            fake.put_event(
                account, _meeting(rng, account, _slot(rng, NOW - WINDOW_PAST + timedelta(days=1), 119))
            )["id"]
        )
    for offset in (-90, -60, 500):  # outside the window: never listed
        fake.put_event(account, _meeting(rng, account, _slot(rng, NOW + timedelta(days=offset), 5)))
    return ids


def change(fake: FakeGoogle, rng: random.Random, rep: Rep, kind: Change, now: datetime) -> None:
    if kind == "add" or not rep.live:
        event = fake.put_event(rep.account, _meeting(rng, rep.account, _slot(rng, now, 60), "Follow-up call"))
        rep.live.append(event["id"])
    elif kind == "edit":
        fake.update_event(rep.account, rng.choice(rep.live), summary=f"{rng.choice(TOPICS)} (moved)")
    else:
        victim = rep.live.pop(rng.randrange(len(rep.live)))
        fake.cancel_event(rep.account, victim)


def expect(condition: bool, message: str, problems: list[str]) -> None:
    if not condition and len(problems) < 20:
        problems.append(message)


# -- the run ------------------------------------------------------------------------------------------
@dataclass
class Checks:
    """Per-calendar costs of the polls after the first."""

    unchanged: int = 0  # calendar-polls with no change in the calendar
    unchanged_one_list: int = 0  # of those, exactly one request: an events.list with the sync token, empty
    changed: int = 0
    changed_one_list: int = 0
    most_requests: int = 0


@dataclass
class Poll:
    number: int
    tally: Tally
    seconds: float
    changed: int  # calendars changed before this poll


def run(
    calendars: int, polls: int, events: int, changes: int, seed: int, out: Callable[[str], None]
) -> dict[str, Any]:
    rng = random.Random(seed)
    slept: list[float] = []
    googleapiclient.http.time.sleep = slept.append  # the library's backoff: recorded, never waited
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-google-") as tmp, CountingFake() as fake:
        token_dir = Path(tmp) / "tokens"
        token_dir.mkdir()
        started = time.perf_counter()
        access = GoogleAccess(GoogleConfig(token_dir=token_dir, api_endpoint=fake.url))
        reps: list[Rep] = []
        for n in range(calendars):
            account = f"rep{n:04d}@acme.example"
            (token_dir / f"{account}.json").write_text(json.dumps(fake.authorized_user(account)))
            source = GoogleCalendarSource(f"google:{account}", access=access, account=account)
            reps.append(Rep(account, source, populate(fake, rng, account, events)))
        out(f"set up {calendars} calendars in {time.perf_counter() - started:.1f} s")
        fake.clear_log()
        fake.answers.clear()

        results: list[Poll] = []
        checks = Checks()
        for number in range(1, polls + 1):
            now = NOW + (number - 1) * POLL_INTERVAL
            touched: dict[int, Change] = {}
            if number > 1:
                for index in rng.sample(range(calendars), min(changes, calendars)):
                    touched[index] = rng.choice(CHANGES)
                    change(fake, rng, reps[index], touched[index], now)
            begin = mark(fake)
            clock = time.perf_counter()
            for index, rep in enumerate(reps):
                before = mark(fake)
                batch: SyncBatch = rep.source.sync(rep.state, now)
                rep.state = batch.state
                cost = tally(fake, before, mark(fake))
                expect(not batch.problems, f"poll {number}, {rep.account}: {batch.problems}", problems)
                if number == 1:
                    expect(len(batch.upserted) == len(rep.live), f"{rep.account}: first sync", problems)
                    continue
                expect(
                    cost.lists == 1 and cost.total - cost.refreshes == 1, f"{rep.account}: {cost}", problems
                )
                checks.most_requests = max(checks.most_requests, cost.total)
                kind = touched.get(index)
                if kind is None:
                    checks.unchanged += 1
                    checks.unchanged_one_list += (
                        cost.total == 1 and cost.sync_token_lists == 1 and cost.items == 0 and batch.unchanged
                    )
                    continue
                checks.changed += 1
                checks.changed_one_list += cost.lists == 1 and cost.sync_token_lists == 1
                if kind == "cancel":
                    expect(
                        len(batch.removed) == 1, f"poll {number}, {rep.account}: cancel not seen", problems
                    )
                else:
                    expect(
                        len(batch.upserted) == 1, f"poll {number}, {rep.account}: {kind} not seen", problems
                    )
            results.append(
                Poll(number, tally(fake, begin, mark(fake)), time.perf_counter() - clock, len(touched))
            )
            if number == 1 or number % 10 == 0 or number == polls:
                last = results[-1]
                out(
                    f"poll {number:4d}: {last.tally.lists} lists, {last.tally.refreshes} refreshes, "
                    f"{last.tally.items} items, {last.seconds:.2f} s"
                )
        total_seconds = time.perf_counter() - started

        # The naive way: every calendar's whole window, every poll. Measured once, through the same clients.
        final_now = NOW + (polls - 1) * POLL_INTERVAL
        low, high = final_now - WINDOW_PAST, final_now + WINDOW_FUTURE
        begin, clock = mark(fake), time.perf_counter()
        pages_per_calendar: list[int] = []
        for rep in reps:
            service = access.client("calendar", "v3", rep.account, (CALENDAR_SCOPE,)).service
            before, page_token = mark(fake), None
            while True:
                params: dict[str, Any] = {
                    "calendarId": "primary",
                    "singleEvents": True,
                    "maxResults": PAGE_SIZE,
                    "timeMin": low.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "timeMax": high.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                if page_token:
                    params["pageToken"] = page_token
                page_token = service.events().list(**params).execute(num_retries=5).get("nextPageToken")
                if not page_token:
                    break
            pages_per_calendar.append(tally(fake, before, mark(fake)).lists)
        naive_seconds = time.perf_counter() - clock
        naive = tally(fake, begin, mark(fake))

    return report(
        results,
        checks,
        naive,
        pages_per_calendar,
        naive_seconds,
        total_seconds,
        slept,
        problems,
        calendars=calendars,
        polls=polls,
        events=events,
        changes=changes,
        seed=seed,
    )


def report(
    results: list[Poll],
    checks: Checks,
    naive: Tally,
    pages_per_calendar: list[int],
    naive_seconds: float,
    total_seconds: float,
    slept: list[float],
    problems: list[str],
    **params: int,
) -> dict[str, Any]:
    first, rest = results[0], results[1:]
    per_poll = [p.tally.total for p in results]
    later = [p.tally.total for p in rest] or [0]
    naive_per_poll = sum(pages_per_calendar)
    polls = len(results)
    total = sum(per_poll)
    return {
        "params": params,
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        },
        "incremental": {
            "requests": total,
            "events_list": sum(p.tally.lists for p in results),
            "token_refreshes": sum(p.tally.refreshes for p in results),
            "other_requests": sum(p.tally.other for p in results),
            "failed_requests": sum(p.tally.failed for p in results),
            "backoff_sleeps": len(slept),
            "items": sum(p.tally.items for p in results),
            "bytes": sum(p.tally.bytes for p in results),
            "per_poll_mean": round(statistics.fmean(per_poll), 2),
            "per_poll_max": max(per_poll),
            "first_poll": {
                "events_list": first.tally.lists,
                "token_refreshes": first.tally.refreshes,
                "items": first.tally.items,
                "bytes": first.tally.bytes,
                "seconds": round(first.seconds, 2),
            },
            "later_polls": {
                "per_poll_mean": round(statistics.fmean(later), 2),
                "per_poll_min": min(later),
                "per_poll_max": max(later),
                "token_refreshes": sum(p.tally.refreshes for p in rest),
                "items_per_poll_mean": round(statistics.fmean([p.tally.items for p in rest] or [0]), 2),
                "bytes_per_poll_mean": round(statistics.fmean([p.tally.bytes for p in rest] or [0])),
                "seconds_per_poll_mean": round(statistics.fmean([p.seconds for p in rest] or [0.0]), 2),
                "seconds_per_poll_max": round(max([p.seconds for p in rest] or [0.0]), 2),
            },
            "steady_state": {
                "unchanged_calendar_polls": checks.unchanged,
                "of_which_exactly_one_sync_token_list": checks.unchanged_one_list,
                "changed_calendar_polls": checks.changed,
                "of_which_one_sync_token_list": checks.changed_one_list,
                "most_requests_for_one_calendar_in_a_later_poll": checks.most_requests,
            },
            "seconds_total": round(total_seconds, 1),
        },
        "naive": {
            "pages_per_calendar": {
                "min": min(pages_per_calendar),
                "max": max(pages_per_calendar),
                "mean": round(statistics.fmean(pages_per_calendar), 2),
            },
            "requests_per_poll": naive_per_poll,
            "events_list": naive_per_poll * polls,
            "token_refreshes": first.tally.refreshes,  # the same clients need the same first refreshes
            "requests": naive_per_poll * polls + first.tally.refreshes,
            "items_per_poll": naive.items,
            "bytes_per_poll": naive.bytes,
            "seconds_per_poll": round(naive_seconds, 2),
        },
        "ratio": {
            "requests_naive_over_incremental": round(
                (naive_per_poll * polls + first.tally.refreshes) / total, 3
            )
            if total
            else None,
            "requests_per_later_poll": round(naive_per_poll / statistics.fmean(later), 3) if rest else None,
            "bytes_per_later_poll": round(naive.bytes / statistics.fmean([p.tally.bytes for p in rest]), 1)
            if rest
            else None,
        },
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calendars", type=int, default=200)
    parser.add_argument("--polls", type=int, default=100)
    parser.add_argument("--events", type=int, default=50, help="events in each calendar's window")
    parser.add_argument("--changes", type=int, default=3, help="calendars changed before each later poll")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.calendars < 1 or args.polls < 1 or args.events < 1:
        parser.error("--calendars, --polls and --events must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    figures = run(args.calendars, args.polls, args.events, args.changes, args.seed, print)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    steady = figures["incremental"]["steady_state"]
    ok = (
        not figures["problems"]
        and steady["unchanged_calendar_polls"] == steady["of_which_exactly_one_sync_token_list"]
        and steady["changed_calendar_polls"] == steady["of_which_one_sync_token_list"]
    )
    if not ok:
        print("FAILED: see problems / steady_state above", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
