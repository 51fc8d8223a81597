"""Benchmark: Microsoft Graph requests of delta sync against re-reading every calendar view.

N reps' mailboxes (50 events each in the window: two weekly series of 8 occurrences, 34 one-off
meetings) are polled P times, 5 minutes apart, by `MicrosoftCalendarSource.sync(state, now)` against
one local FakeGraph (tests/support/graph_fake.py: MSAL and httpx over real HTTPS). Before every poll
but the first, a few random mailboxes get one event edited, added or deleted. Requests are counted
from the fake's log: delta rounds, and the series masters read for their iCalUId (once per series);
the naive alternative (reading every window whole every poll) is one full delta round per mailbox,
times P.

Run from the repository root:
`python -m benchmarks.bench_graph_requests [--calendars 200] [--polls 100] [--seed N]`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.sources.microsoft import MicrosoftCalendarSource
from tests.support.graph_fake import CLIENT_SECRET, FakeGraph, graph_time
from tests.support.microsoft import access_for

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SEED = 20260302
POLL = timedelta(minutes=5)
SERIES = ("Europe/Berlin", "America/New_York")  # two weekly series a mailbox, 8 occurrences each


def meeting(rng: random.Random, rep: str, n: int) -> dict[str, object]:
    start = NOW + timedelta(days=rng.randint(-29, 399), hours=rng.randint(8, 17))
    return {
        "iCalUId": f"{rep}-{n}@bench",
        "subject": f"Call {n}",
        "start": graph_time(start),
        "end": graph_time(start + timedelta(hours=1)),
        "organizer": {"emailAddress": {"address": rep}},
        "attendees": [{"type": "required", "emailAddress": {"address": f"c{n}@customer.example"}}],
    }


def graph_calls(graph: FakeGraph) -> list[str]:
    """The Graph requests in the fake's log (token requests left out)."""
    return [r.path for r in graph.requests if r.path.startswith("/v1.0/")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calendars", type=int, default=200)
    parser.add_argument("--polls", type=int, default=100)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    os.environ["FOLLOWTHROUGH_MICROSOFT_CLIENT_SECRET"] = CLIENT_SECRET
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp, FakeGraph(directory=Path(tmp) / "ca", max_page=200) as graph:
        reps = [f"rep{i}@acme.example" for i in range(args.calendars)]
        series = SERIES if args.events >= 2 * 8 else ()
        for rep in reps:
            for k, zone in enumerate(series):
                first = NOW + timedelta(days=rng.randint(-20, 30), hours=rng.randint(8, 17))
                graph.put_series(
                    rep,
                    f"{rep}-series-{k}@bench",
                    first,
                    8,
                    zone=zone,
                    subject=f"Weekly {k}",
                    organizer={"emailAddress": {"address": rep}},
                )
            for n in range(args.events - 8 * len(series)):
                graph.put_event(rep, meeting(rng, rep, n))
        access = access_for(graph)
        sources = [MicrosoftCalendarSource(rep, access=access, mailbox=rep) for rep in reps]
        states: list[dict[str, object] | None] = [None] * len(reps)
        per_poll: list[int] = []
        masters = 0  # series masters read for their iCalUId
        items = 0  # events and removals the polls carried
        started, cpu = time.perf_counter(), time.process_time()
        for poll in range(args.polls):
            if poll:
                for i in rng.sample(range(len(reps)), min(args.changes, len(reps))):
                    box = graph.mailbox(reps[i])
                    change = rng.choice(("edit", "add", "delete"))
                    if change == "add" or not box.events:
                        graph.put_event(reps[i], meeting(rng, reps[i], 1000 + poll))
                    elif change == "edit":
                        graph.update_event(reps[i], rng.choice(sorted(box.events)), subject=f"Edited {poll}")
                    else:
                        graph.delete_event(reps[i], rng.choice(sorted(box.events)))
            graph.clear_log()
            now = NOW + poll * POLL
            for i, source in enumerate(sources):
                batch = source.sync(states[i], now)
                states[i] = batch.state
                items += len(batch.upserted) + len(batch.removed)
            calls = graph_calls(graph)
            per_poll.append(len(calls))
            masters += sum("/events/" in path for path in calls)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        graph.clear_log()
        for source in sources:
            source.sync(None, NOW)
        full_round = len(graph.delta_calls())
        full_items = sum(len(source.sync(None, NOW).upserted) for source in sources)
    first, steady = per_poll[0], per_poll[1:]
    naive = full_round * args.polls
    total = sum(per_poll)
    print(
        f"{args.calendars} mailboxes x {args.polls} polls, {args.events} events each, "
        f"{args.changes} changes/poll"
    )
    print(
        f"first poll: {first} requests; steady polls: "
        f"min {min(steady, default=0)}, max {max(steady, default=0)}"
    )
    print(
        f"delta sync total: {total} Graph requests ({masters} series masters read, "
        f"{graph.token_requests} token requests), {elapsed:.1f}s wall, {cpu:.1f}s CPU"
    )
    print(f"naive (whole window every poll): {naive} requests ({full_round} per poll)")
    print(f"events carried: delta {items}, naive {full_items * args.polls}")
    ok = all(n == args.calendars for n in steady)
    print("check: one request per mailbox per steady poll:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
