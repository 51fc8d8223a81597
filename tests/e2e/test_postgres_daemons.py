"""Three `followthrough run` processes on one PostgreSQL ledger: every due mail goes out exactly once.

Nothing is mocked: three real daemon processes, a real PostgreSQL server (tests/conftest.py), a real SMTP
server (aiosmtpd) in this process, and a calendar of a few thousand closing calls 23 hours from now, so
that all their prep prompts are due at once. The figures (sends, time, who sent how many) are printed.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select

from daemon.ledger import SCHEMA_VERSION, Ledger, open_ledger
from daemon.ledger.schema import meta
from daemon.model import Status
from tests.support.cli import Daemon
from tests.support.config import smtp_table, write_config
from tests.support.ics import calendar, vevent
from tests.support.smtp import Received, RecordingHandler, serving

CALLS = 2500  # closing calls, so as many prep prompts due at once
REPS = 25
INSTANCES = 3
# The wait ends as soon as nothing is pending; the deadline only bounds a broken run. Generous, so the
# test holds on a loaded machine too: 47 s idle on 2 cores, 152 s with two busy loops beside it (before
# instances left each other's planning alone, 76–94 s and 225–231 s: a 240 s deadline was too tight).
DEADLINE = 900.0
PENDING = (Status.PLANNED, Status.CLAIMED)
SENT_LINE = re.compile(r"send (\S+) sent to ")
FAILED_JOB = re.compile(r"ERROR daemon\.scheduler: (?:sync pass|dispatch) failed")
REPLANNED = "an earlier pass left"  # an instance planning events another one was still planning

# Only the prep prompts: the calls' other prompts are due hours from now and would stay planned.
OFF = ("closing-final", "outcome-nudge")
RULES = "".join(f'[[rules]]\nname = "{rule}"\nenabled = false\n' for rule in OFF)


@dataclass
class Instance:
    """One `followthrough run` process, its output (stdout and stderr) in a file."""

    name: str
    daemon: Daemon

    @classmethod
    def start(cls, name: str, config: Path, folder: Path) -> Instance:
        return cls(name, Daemon.start(config, folder / f"{name}.log"))

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.daemon.process

    def output(self) -> str:
        return self.daemon.output()

    def sent_keys(self) -> list[str]:
        return SENT_LINE.findall(self.output())

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as systemd would; the exit status."""
        return self.daemon.stop(timeout)

    def kill(self) -> None:
        self.daemon.kill()


def write_calendar(path: Path, now: datetime, calls: int) -> set[str]:
    """Closing calls starting 23 h (and a few minutes) from now; the keys of their prep prompts."""
    events = []
    keys = set()
    for i in range(calls):
        rep = (f"rep{i % REPS:02}@acme.example", f"Rep {i % REPS:02}")
        start = now + timedelta(hours=23, minutes=i % 50)
        uid = f"call-{i:05}"
        events.append(
            vevent(
                uid,
                start,
                start + timedelta(hours=1),
                f"Customer {i} terms #closing",
                organizer=rep,
                attendees=[(f"buyer@customer{i:05}.example", f"Buyer {i}")],
            )
        )
        keys.add(f"closing-prep:{uid}")
    path.write_text(calendar(*events), encoding="utf-8", newline="")
    return keys


def schema_ready(url: str) -> bool:
    """The ledger's tables exist at this version's schema (read without creating anything)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("meta"):
                return False
            version = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
            return version == str(SCHEMA_VERSION)
    finally:
        engine.dispose()


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Run:
    """What three daemons did: the sends expected, what arrived, what the ledger says, how they ended."""

    expected: set[str]
    done: bool  # every send settled (none planned or claimed) before the deadline
    took: float
    exited_early: dict[str, int]  # instances that stopped before being told to, with their status
    codes: dict[str, int]  # exit status after SIGTERM (-1: had to be killed)
    outputs: dict[str, str]
    sent_by: dict[str, list[str]]  # the keys each instance logged as sent
    received: list[Received]
    statuses: Counter[Status]
    keys: set[str]
    stuck: dict[str, list[str]]  # sends still pending at the end: their life, move by move

    def report(self, name: str) -> str:
        return f"{name} (exit {self.codes[name]}):\n{tail(self.outputs[name])}"

    def pending(self) -> str:
        """Why not done: the statuses, and the life of a few sends still pending."""
        lives = "\n".join(f"{key}:\n  " + "\n  ".join(moves) for key, moves in list(self.stuck.items())[:5])
        return f"{dict(self.statuses)}\n{lives}"


def run_three_daemons(folder: Path, url: str, calls: int) -> Run:
    """Start three `followthrough run` at once on `url`, wait until nothing is pending, SIGTERM them."""
    handler = RecordingHandler()
    with serving(handler) as smtp:
        expected = write_calendar(folder / "calendar.ics", datetime.now(UTC), calls)
        config = write_config(
            folder,
            owner="rep00@acme.example",
            smtp=smtp_table(smtp.port),
            store=url,
            schedule='poll_interval = "5s"\nclaim_lease = "30s"\n',
            extra=RULES,
        )
        began = time.monotonic()
        instances = [Instance.start(f"instance-{n + 1}", config, folder) for n in range(INSTANCES)]
        ledger: Ledger | None = None
        done = False
        try:
            while time.monotonic() - began < DEADLINE:
                if any(i.process.poll() is not None for i in instances):
                    break
                if ledger is None and schema_ready(url):
                    ledger = open_ledger(url)  # the daemons may be creating it: read it once it is there
                sends = ledger.sends() if ledger else []
                if len(sends) == len(expected) and not any(s.status in PENDING for s in sends):
                    done = True
                    break
                time.sleep(1.0)
            took = time.monotonic() - began
            exited_early = {i.name: i.process.returncode for i in instances if i.process.poll() is not None}
        finally:
            codes = {}
            for instance in instances:
                try:
                    codes[instance.name] = instance.stop()
                except subprocess.TimeoutExpired:
                    instance.kill()
                    codes[instance.name] = -1
        if ledger is None and schema_ready(url):
            ledger = open_ledger(url)
        sends = ledger.sends() if ledger else []
        stuck = (
            {
                s.key: [
                    f"{t.at:%H:%M:%S} {t.from_status} -> {t.to_status}: {t.reason}"
                    for t in ledger.transitions(s.key)
                ]
                + [f"now held by {s.claimed_by} until {s.lease_until}, handed over at {s.handed_at}"]
                for s in sends
                if s.status in PENDING
            }
            if ledger is not None
            else {}
        )
        if ledger:
            ledger.close()
        return Run(
            expected=expected,
            done=done,
            took=took,
            exited_early=exited_early,
            codes=codes,
            outputs={i.name: i.output() for i in instances},
            sent_by={i.name: i.sent_keys() for i in instances},
            received=handler.messages(),
            statuses=Counter(s.status for s in sends),
            keys={s.key for s in sends},
            stuck=stuck,
        )


@pytest.mark.slow
def test_three_daemons_on_one_postgres_ledger_send_each_mail_exactly_once(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    # Given a PostgreSQL ledger (created before, as by the first deployment: a brand-new database
    # under three daemons at once is the next test), and thousands of closing calls 23 hours from
    # now, so that every one of their prep prompts is due
    open_ledger(fresh_postgres_url).close()

    # When three daemons start at once on it, with one mail server, and run until nothing is pending
    run = run_three_daemons(tmp_path, fresh_postgres_url, CALLS)
    arrivals = Counter(str(r.message["X-Followthrough-Key"]) for r in run.received)
    duplicates = {key: n for key, n in arrivals.items() if n > 1}
    missing = run.expected - set(arrivals)
    per_instance = {name: len(keys) for name, keys in run.sent_by.items()}
    failed_passes = {name: len(FAILED_JOB.findall(text)) for name, text in run.outputs.items()}
    print(
        f"\n{len(run.expected)} sends by {INSTANCES} daemons in {run.took:.1f}s; "
        f"per instance: {per_instance}; messages received: {len(run.received)}; "
        f"duplicates: {len(duplicates)}; missing: {len(missing)}; failed passes: {failed_passes}"
    )
    assert not run.exited_early, "\n".join(run.report(name) for name in run.exited_early)
    assert run.done, f"not done after {DEADLINE:.0f}s: {run.pending()}"

    # Then no daemon planned again the events the one syncing the calendar was planning
    for name, text in run.outputs.items():
        assert REPLANNED not in text, run.report(name)

    # And each daemon stops cleanly on SIGTERM
    for name, code in run.codes.items():
        assert code == 0, run.report(name)

    # And the mail server got exactly one message per send: none twice, none missing
    assert not duplicates, f"{len(duplicates)} sends arrived more than once, e.g. {sorted(duplicates)[:5]}"
    assert not missing, f"{len(missing)} sends never arrived, e.g. {sorted(missing)[:5]}"
    assert set(arrivals) == run.expected and len(run.received) == len(run.expected)

    # And the ledger records every one of them as sent
    assert run.keys == run.expected
    assert run.statuses == Counter({Status.SENT: len(run.expected)})

    # And the work was shared: more than one daemon sent mail, and each send is logged by one only
    logged = Counter(key for keys in run.sent_by.values() for key in keys)
    assert set(logged) == run.expected and max(logged.values()) == 1
    sharing = [name for name, count in per_instance.items() if count > 0]
    assert len(sharing) >= 2, f"only {sharing} sent anything: {per_instance}"


@pytest.mark.slow
def test_three_daemons_started_at_once_on_a_new_postgres_database_all_keep_running(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    # Given an empty PostgreSQL database and a few closing calls whose prep prompts are due
    # When three daemons are started on it at the same moment (a deployment of three replicas)
    run = run_three_daemons(tmp_path, fresh_postgres_url, 30)

    # Then none of them stops on its own: they set the ledger up between them, and keep running
    assert not run.exited_early, "\n".join(run.report(name) for name in run.exited_early)
    assert run.done, f"not done after {DEADLINE:.0f}s: {run.pending()}"
    # And every prompt went out once, and each daemon stops cleanly on SIGTERM
    arrivals = Counter(str(r.message["X-Followthrough-Key"]) for r in run.received)
    assert arrivals == Counter(dict.fromkeys(run.expected, 1))
    for name, code in run.codes.items():
        assert code == 0, run.report(name)
