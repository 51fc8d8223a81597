"""`kill -9` while `followthrough run` sends: no mail goes out twice, and none is lost.

The daemon runs as a real process with a SQLite ledger and speaks SMTP to an aiosmtpd server in this
process. The server takes each message in, then waits a moment before its 250, so a kill often lands
between handing a message over and recording it. Such a send must end "unknown" (a person decides with
`followthrough resolve`), never be sent again blindly: `[mail] resend_unknown_prompts = false` makes
that strict for the reps' prompts too.

The waits between start and kill come from a seeded RNG; the seed is printed (set KILL9_SEED to reuse
it). The first kills are placed on purpose, while the server holds a message it has taken in and while
it holds one it has not, so both kinds of unknown outcome occur whatever the seed.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from daemon import planner
from tests.e2e.support import Deployment, write_config
from tests.support.cli import Daemon, wait_for
from tests.support.ics import H, meeting, now_utc
from tests.support.smtp import SlowHandler, SmtpServer

SCHEDULE = 'claim_lease = "2s"\npoll_interval = "5s"\n'
STRICT = "resend_unknown_prompts = false"
MAX_KILLS = 40
KILL_BUDGET = 45.0  # seconds of killing at most, so the whole test stays well under 90 s
PENDING = ("planned", "claimed")


def statuses(db: Path) -> dict[str, str]:
    """Each send's status, read straight from the ledger file ({} until the daemon has made it).

    An ordinary connection, not a read-only one: after a kill -9 the first reader may have to recover
    the write-ahead log, which a read-only connection cannot do.
    """
    if not db.exists():
        return {}
    try:
        connection = sqlite3.connect(db, timeout=10)
        try:
            return dict(connection.execute("SELECT key, status FROM sends").fetchall())
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the daemon is creating the ledger right now
            return {}
        raise


def arrivals(server: SmtpServer) -> Counter[str]:
    """How many times each send reached the mail server, by its X-Followthrough-Key."""
    counts: Counter[str] = server.handler.arrivals()
    return counts


def write_calls(deployment: Deployment, calls: int) -> set[str]:
    """`calls` closing calls 23 hours ahead and as many lost calls that ended 25 hours ago.

    Each has one send due now: the prep prompt to the rep, the thank-you to the customer. Every
    customer has a domain of their own, so no call counts as another's customer re-engaging.
    """
    now = now_utc()
    events, due = [], set()
    for i in range(calls):
        buyer = (f"buyer@deal{i}.example", f"Buyer {i}")
        events.append(
            meeting(f"deal-{i}", now + 23 * H, now + 24 * H, f"Deal {i} #closing", attendees=[buyer])
        )
        due.add(f"closing-prep:deal-{i}")
        lost = (f"buyer@lost{i}.example", f"Lost Buyer {i}")
        events.append(
            meeting(f"lost-{i}", now - 26 * H, now - 25 * H, f"Lost {i} #closing #lost", attendees=[lost])
        )
        due.add(f"lost-thank-you:lost-{i}")
    deployment.write_calendar(*events)
    return due


def deploy(tmp_path: Path, server: SmtpServer) -> Deployment:
    config = write_config(tmp_path, server.port, extra=SCHEDULE, mail=STRICT)
    return Deployment(tmp_path, server, config, tmp_path / "calendar.ics")


@pytest.mark.slow
def test_kill_9_at_random_moments_never_sends_a_mail_twice(tmp_path: Path, slow_smtp: SmtpServer) -> None:
    seed = int(os.environ.get("KILL9_SEED") or random.SystemRandom().randrange(2**31))
    rng = random.Random(seed)
    print(f"\nkill -9 test: seed {seed} (KILL9_SEED={seed} repeats these waits)")
    began = time.monotonic()
    handler = slow_smtp.handler
    assert isinstance(handler, SlowHandler)
    # Given 300 sends due now: 150 prompts to the rep, 150 thank-yous to lost customers
    ft = deploy(tmp_path, slow_smtp)
    due = write_calls(ft, 150)
    db = tmp_path / "followthrough.db"

    def pending() -> list[str]:
        known = statuses(db)
        return [key for key in due if known.get(key, "planned") in PENDING]

    # When the daemon is started and killed with -9 again and again: the first kills while the server
    # holds a message it has taken in (after DATA), or one it has not (at RCPT TO); then at random moments
    placed = ["DATA", "RCPT", "DATA"]
    daemons: list[Daemon] = []
    kills = 0
    try:
        while kills < MAX_KILLS and time.monotonic() - began < KILL_BUDGET:
            if kills < len(placed):
                handler.hold(placed[kills], 20.0)
            daemon = Daemon.start(ft.config, tmp_path / f"run-{len(daemons):02}.log")
            daemons.append(daemon)
            if kills < len(placed):
                holding = f"the server to hold a message at {placed[kills]}"
                wait_for(handler.holding.is_set, holding, seconds=30)
            else:
                time.sleep(rng.uniform(0.2, 1.5))
            daemon.kill()
            kills += 1
            handler.release()
            if not pending():
                break
        killing = time.monotonic() - began

        # And finally one daemon runs until nothing due is pending (orphaned claims expire after the
        # 2-second lease), then gets SIGTERM
        final = Daemon.start(ft.config, tmp_path / "run-final.log")
        daemons.append(final)
        wait_for(final.running, "the last daemon to start", seconds=30)
        wait_for(
            lambda: not pending(),
            "the last daemon to settle every send:",
            lambda: f"still {Counter(statuses(db).get(k) for k in pending())}\n{final.output()[-3000:]}",
            seconds=60,
        )
        code = final.stop()
    finally:
        for daemon in daemons:
            if daemon.process.poll() is None:
                daemon.kill()
    assert code == 0, final.output()[-3000:]
    for daemon in daemons:
        assert "Traceback" not in daemon.output(), daemon.output()[-3000:]

    # Then every due send is sent or unknown; none is pending; none reached the server twice
    plan = {s["key"]: s for s in ft.plan() if s["key"] in due}
    assert set(plan) == due, f"{len(due - set(plan))} due sends missing from the plan"
    got = arrivals(slow_smtp)
    status = {key: plan[key]["status"] for key in due}
    sent = sorted(k for k in due if status[k] == "sent")
    unknown = sorted(k for k in due if status[k] == "unknown")
    duplicates = sorted(k for k, n in got.items() if n > 1)
    print(
        f"kill -9 test: seed {seed}, {kills} kills in {killing:.1f} s, {len(daemons)} runs, "
        f"{len(due)} sends: {len(sent)} sent, {len(unknown)} unknown "
        f"({sum(k.startswith('lost-') for k in unknown)} of them to customers, "
        f"{sum(got[k] for k in unknown)} arrived), {sum(got.values())} arrivals, "
        f"{len(duplicates)} duplicates, {time.monotonic() - began:.1f} s in all"
    )
    assert duplicates == [], {k: got[k] for k in duplicates}
    assert set(got) <= due, sorted(set(got) - due)
    assert Counter(status.values()) == Counter(sent=len(sent), unknown=len(unknown)), Counter(status.values())
    assert [k for k in sent if got[k] != 1] == []
    assert [k for k in unknown if got[k] > 1] == []
    # And the placed kills left both kinds of unknown: one that did arrive, one that did not
    arrived = [k for k in unknown if got[k] == 1]
    missing = [k for k in unknown if got[k] == 0]
    assert arrived and missing, (arrived, missing)
    for key in unknown:
        assert f"followthrough resolve {key} sent" in plan[key]["reason"], plan[key]["reason"]

    # When a person checks the mailbox and settles both: the one that arrived as sent, the other to resend
    settled = ft.cli("resolve", arrived[0], "sent")
    assert settled.code == 0, settled.output
    again = ft.cli("resolve", missing[0], "resend")
    assert again.code == 0, again.output
    rerun = ft.tick()
    (tmp_path / "tick.log").write_text(rerun.output, encoding="utf-8")
    assert rerun.code == (1 if len(unknown) > 2 else 0), rerun.output  # 1: others still need a decision
    assert "Traceback" not in rerun.output, rerun.output

    # Then the first is recorded as sent without going out again; the second goes out, once
    plan = {s["key"]: s for s in ft.plan()}
    assert plan[arrived[0]]["status"] == "sent"
    assert plan[arrived[0]]["reason"] == "resolved by hand: it did arrive"
    assert plan[missing[0]]["status"] == "sent", (plan[missing[0]], rerun.output[-3000:])
    got = arrivals(slow_smtp)
    assert got[arrived[0]] == 1 and got[missing[0]] == 1
    assert [k for k, n in got.items() if n > 1] == []


@pytest.mark.slow
def test_kill_9_while_the_first_pass_plans_loses_no_send(tmp_path: Path, slow_smtp: SmtpServer) -> None:
    # Given a send due now for each of twice as many calls as a pass plans at once (planner.CHUNK):
    # prompts to the rep and thank-yous to lost customers
    ft = deploy(tmp_path, slow_smtp)
    due = write_calls(ft, planner.CHUNK)
    db = tmp_path / "followthrough.db"
    assert isinstance(slow_smtp.handler, SlowHandler)
    slow_smtp.handler.delay = 0.0

    # When the daemon is killed with -9 while its first pass is still planning the calls
    daemon = Daemon.start(ft.config, tmp_path / "run-00.log")
    try:
        wait_for(lambda: bool(statuses(db)), "the first sends to be planned", seconds=30)
    finally:
        daemon.kill()
    planned = {key.split(":", 1)[1] for key in statuses(db)}
    assert len(planned) < len(due), "the kill came after planning had finished: nothing was tested"
    print(f"\nkilled with {len(planned)} of {len(due)} calls planned")
    # And followthrough runs again
    rerun = ft.tick()
    assert rerun.code == 0 and "Traceback" not in rerun.output, rerun.output

    # Then every call's mail is planned, and has gone out exactly once
    plan = {s["key"]: s for s in ft.plan() if s["key"] in due}
    never = sorted(due - set(plan))
    assert never == [], f"{len(never)} of {len(due)} due sends were never planned, e.g. {never[:3]}"
    assert {k: s["status"] for k, s in plan.items() if s["status"] != "sent"} == {}
    assert arrivals(slow_smtp) == Counter(dict.fromkeys(due, 1))
