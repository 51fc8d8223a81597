"""Benchmark: three sync passes of one large ICS feed (first, unchanged, 1% changed) through the Engine.

Run `python -m benchmarks.bench_ics_feed [--events N]`; docs/benchmarks.md explains the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from benchmarks.memory import maxrss_mb, peak_rss_mb, reset_peak_rss, status_mb
from daemon.config import load
from daemon.engine import Engine, PassReport

Phase = Literal["first", "unchanged", "changed"]
Run = Literal["timed", "traced"]  # traced: under tracemalloc, for memory only; each run has its own ledger
Zone = Literal["utc", "floating", "date", "Europe/Berlin", "America/New_York"]
Tagging = Literal["normal", "heavy"]

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
SEED = 20261124
PHASES: tuple[Phase, ...] = ("first", "unchanged", "changed")
RUNS: tuple[Run, ...] = ("timed", "traced")
TARGETS: dict[Phase, float] = {"unchanged": 0.01, "changed": 0.05}  # of the first pass's time
ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH-RESULT "
# Shares of #closing and #kickoff calls: a sales team's calendar, and one where half the events are
# closing calls (past ones mostly carrying #won or #lost), to see that heavy tagging has no cliff.
TAGGING: dict[Tagging, tuple[float, float]] = {"normal": (0.025, 0.025), "heavy": (0.5, 0.025)}


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "Ada Ben Carla Dev Elif Farid Greta Hugo Ines Jonas Kai Lena Mateo Nora Omar Priya Quinn Rosa "
    "Sven Tara Umar Vera Wei Xenia Yusuf Zoe Aiko Bruno Chloe Dario Emeka Fiona Gustav Hana Ivan"
)
LAST_NAMES = _words(
    "Alvarez Becker Chen Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Lindqvist Moreau "
    "Nakamura Okafor Petrov Quist Rossi Schmidt Tanaka Ulrich Varga Weber Xu Yilmaz Zimmermann"
)
PREFIXES = _words(
    "alpha blue bright cedar delta echo fair globe harbor iron jade kite lumen maple north ocean "
    "pine quartz river stone"
)
SUFFIXES = _words(
    "bank works labs logistics foods energy health media motors retail systems tech group partners "
    "capital studio"
)
TOPICS = (
    "Discovery call",
    "Product demo",
    "Pricing discussion",
    "Security review",
    "Technical deep dive",
    "Quarterly business review",
    "Contract review",
    "Procurement sync",
    "Pilot check-in",
    "Roadmap preview",
    "Onboarding workshop",
    "Renewal planning",
)
NOTES = (
    "Agenda: intros, goals for the quarter, open questions from the last call.",
    "They asked for SSO via SAML and SCIM provisioning; both are on the enterprise plan.",
    "Budget owner is the CFO; procurement needs the security questionnaire before signature.",
    "Promised: a sandbox with their last quarter's data, loaded before the next meeting.",
    "Risk: a competing offer from their incumbent vendor; price is not the main concern, support is.",
    "Homework: send the DPA; confirm data residency in the EU; share two reference customers",
    "Dial-in details are in the invite. Please join five minutes early so we can test screen sharing.",
    "Decision expected by the end of the month; legal review takes about two weeks on their side.",
)
ROOMS = ("Boardroom", "Harbor", "Summit", "Atrium")
ZONES: tuple[Zone, ...] = ("utc", "Europe/Berlin", "America/New_York", "floating", "date")
ZONE_WEIGHTS = (67, 20, 10, 2, 1)
STATUSES = ("CONFIRMED", "TENTATIVE", "CANCELLED")
STATUS_WEIGHTS = (93, 5, 2)

VTIMEZONES = {
    "Europe/Berlin": (
        "BEGIN:VTIMEZONE",
        "TZID:Europe/Berlin",
        "X-LIC-LOCATION:Europe/Berlin",
        "BEGIN:DAYLIGHT",
        "TZOFFSETFROM:+0100",
        "TZOFFSETTO:+0200",
        "TZNAME:CEST",
        "DTSTART:19700329T020000",
        "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
        "END:DAYLIGHT",
        "BEGIN:STANDARD",
        "TZOFFSETFROM:+0200",
        "TZOFFSETTO:+0100",
        "TZNAME:CET",
        "DTSTART:19701025T030000",
        "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
        "END:STANDARD",
        "END:VTIMEZONE",
    ),
    "America/New_York": (
        "BEGIN:VTIMEZONE",
        "TZID:America/New_York",
        "X-LIC-LOCATION:America/New_York",
        "BEGIN:DAYLIGHT",
        "TZOFFSETFROM:-0500",
        "TZOFFSETTO:-0400",
        "TZNAME:EDT",
        "DTSTART:19700308T020000",
        "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU",
        "END:DAYLIGHT",
        "BEGIN:STANDARD",
        "TZOFFSETFROM:-0400",
        "TZOFFSETTO:-0500",
        "TZNAME:EST",
        "DTSTART:19701101T020000",
        "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU",
        "END:STANDARD",
        "END:VTIMEZONE",
    ),
}


# -- the feed ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    name: str
    email: str


@dataclass(frozen=True)
class EventSpec:
    """One VEVENT before it is written out; `start` is wall time in `zone` (a date for all-day)."""

    uid: str
    start: datetime
    minutes: int
    zone: Zone
    summary: str
    description: str
    location: str
    organizer: Contact
    attendees: tuple[tuple[Contact, str, str], ...]  # contact, PARTSTAT, CUTYPE
    status: str
    recurring: bool
    created: datetime
    modified: datetime
    sequence: int = 0


@dataclass(frozen=True)
class Feed:
    """The exports of one calendar: as first seen, with 1% of its events edited, and with 1% others
    edited after that (the pass after, in the same process: what a running daemon pays)."""

    events: list[EventSpec]
    changed: list[EventSpec]
    edited: int  # events whose SUMMARY or DTSTART differ between the first two
    again: list[EventSpec]


def _people(rng: random.Random, domain: str, count: int) -> list[Contact]:
    people = []
    for _ in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        people.append(Contact(f"{first} {last}", f"{first}.{last}@{domain}".lower()))
    return people


def _company(domain: str) -> str:
    return domain.split(".")[0].replace("-", " ").title()


def generate(count: int, seed: int = SEED, now: datetime = NOW, tagging: Tagging = "normal") -> Feed:
    """`count` VEVENTs spread from 30 days before `now` to 300 days after; deterministic for a seed and
    tagging (see TAGGING: the share of closing and kickoff calls)."""
    closing, kickoff = TAGGING[tagging]
    rng = random.Random(seed)
    domains = [f"{p}-{s}.example" for p in PREFIXES for s in SUFFIXES]
    rng.shuffle(domains)
    domains = domains[:300]
    contacts = {d: _people(rng, d, 6) for d in domains}
    reps = _people(rng, "acme.example", 40)
    today = now.astimezone(UTC).replace(tzinfo=None)
    events = []
    for i in range(count):
        roll = rng.random()
        tag = "#closing" if roll < closing else "#kickoff" if roll < closing + kickoff else ""
        internal = rng.random() < (0.95 if tag else 0.6)
        customer = rng.choice(domains)
        guests = rng.sample(contacts[customer], rng.randint(1, 4))
        if rng.random() < 0.1:  # now and then a second customer joins
            guests.append(rng.choice(contacts[rng.choice(domains)]))
        rep = rng.choice(reps)
        organizer = rep if internal else guests[0]
        attendees = [(organizer, "ACCEPTED", "INDIVIDUAL")]
        if not internal:
            attendees.append((rep, rng.choice(("ACCEPTED", "TENTATIVE")), "INDIVIDUAL"))
            guests = guests[1:] or [rng.choice(contacts[customer])]
        if rng.random() < 0.3:
            attendees.append((rng.choice(reps), "NEEDS-ACTION", "INDIVIDUAL"))
        statuses = ("ACCEPTED", "ACCEPTED", "TENTATIVE", "NEEDS-ACTION", "DECLINED")
        attendees += [(g, rng.choice(statuses), "INDIVIDUAL") for g in guests]
        if rng.random() < 0.05:
            room = rng.choice(ROOMS)
            attendees.append((Contact(f"{room} room", f"{room.lower()}@acme.example"), "ACCEPTED", "ROOM"))
        day = today + timedelta(days=rng.uniform(-29.5, 300))
        zone: Zone = rng.choices(ZONES, ZONE_WEIGHTS)[0]
        if zone == "date" and tag:  # closing and kickoff calls have a time
            zone = "utc"
        start = datetime.combine(day.date(), datetime.min.time()) + timedelta(
            hours=rng.randint(7, 17), minutes=rng.choice((0, 15, 30, 45))
        )
        summary = f"{_company(customer)} – {rng.choice(TOPICS)}"
        if tag:
            summary += f" {tag}"
            if tag == "#closing" and start < today and rng.random() < 0.6:
                summary += rng.choice((" #won", " #won", " #lost"))
        lines = rng.sample(NOTES, rng.randint(1, 4))
        description = "\n".join([*lines, f"Account: {_company(customer)} ({customer}), owner {rep.name}."])
        location = (
            f"https://meet.acme.example/j/{rng.randrange(10**10):010d}?pwd={rng.getrandbits(96):024x}"
            if rng.random() < 0.7
            else f"{rng.choice(ROOMS)} room, Acme HQ, Friedrichstraße {rng.randint(1, 200)}, Berlin"
        )
        created = today - timedelta(days=rng.uniform(31, 200))
        events.append(
            EventSpec(
                uid=f"{i:07d}-{rng.getrandbits(64):016x}@{'acme.example' if internal else customer}",
                start=start,
                minutes=rng.choice((30, 30, 45, 60, 60, 90)),
                zone=zone,
                summary=summary,
                description=description,
                location=location,
                organizer=organizer,
                attendees=tuple(attendees),
                status=rng.choices(STATUSES, STATUS_WEIGHTS)[0],
                recurring=rng.random() < 0.03,
                created=created,
                modified=created + timedelta(days=rng.uniform(0, 30)),
            )
        )
    edited = rng.sample(range(count), max(1, count // 100)) if count else []
    changed = _edit(rng, events, edited, today - timedelta(hours=1))
    # Drawn after the first edits, so that the changed export stays what it was before this one existed.
    others = sorted(set(range(count)) - set(edited))
    again = _edit(rng, changed, rng.sample(others, min(len(others), len(edited))), today)
    return Feed(events, changed, len(edited), again)


def _edit(
    rng: random.Random, events: list[EventSpec], which: list[int], modified: datetime
) -> list[EventSpec]:
    """The events with those at `which` moved or renamed, as an organizer edits them."""
    edited = list(events)
    for i in which:
        ev = events[i]
        if rng.random() < 0.5:
            ev = replace(ev, summary=ev.summary.replace(" – ", " – (moved) ", 1))
        else:
            ev = replace(ev, start=ev.start + timedelta(days=rng.choice((1, 2, 7)), hours=rng.choice((0, 1))))
        edited[i] = replace(ev, sequence=ev.sequence + 1, modified=modified)
    return edited


def _text(value: str) -> str:
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    """RFC 5545 folding: content lines of at most 75 octets, continued by CRLF and one space."""
    if len(line.encode()) <= 75:
        return line
    parts: list[str] = []
    current: list[str] = []
    size, limit = 0, 75
    for char in line:
        width = len(char.encode())
        if size + width > limit:
            parts.append("".join(current))
            current, size, limit = [], 0, 74  # the leading space counts
        current.append(char)
        size += width
    parts.append("".join(current))
    return "\r\n ".join(parts)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _when(name: str, moment: datetime, zone: Zone) -> str:
    if zone == "date":
        return f"{name};VALUE=DATE:{moment:%Y%m%d}"
    if zone == "utc":
        return f"{name}:{moment:%Y%m%dT%H%M%S}Z"
    if zone == "floating":
        return f"{name}:{moment:%Y%m%dT%H%M%S}"
    return f"{name};TZID={zone}:{moment:%Y%m%dT%H%M%S}"


def _vevent(ev: EventSpec, dtstamp: str) -> list[str]:
    end = ev.start + (timedelta(days=1) if ev.zone == "date" else timedelta(minutes=ev.minutes))
    lines = [
        "BEGIN:VEVENT",
        f"DTSTAMP:{dtstamp}",
        f"UID:{ev.uid}",
        _when("DTSTART", ev.start, ev.zone),
        _when("DTEND", end, ev.zone),
    ]
    if ev.recurring:
        lines.append("RRULE:FREQ=WEEKLY;COUNT=10")
    lines += [
        f"CREATED:{_stamp(ev.created)}",
        f"LAST-MODIFIED:{_stamp(ev.modified)}",
        f"SEQUENCE:{ev.sequence}",
        f"STATUS:{ev.status}",
        f"SUMMARY:{_text(ev.summary)}",
        f"DESCRIPTION:{_text(ev.description)}",
        f"LOCATION:{_text(ev.location)}",
        f'ORGANIZER;CN="{ev.organizer.name}":mailto:{ev.organizer.email}',
    ]
    for contact, partstat, cutype in ev.attendees:
        role = "NON-PARTICIPANT" if cutype == "ROOM" else "REQ-PARTICIPANT"
        lines.append(
            f'ATTENDEE;CUTYPE={cutype};ROLE={role};PARTSTAT={partstat};CN="{contact.name}":'
            f"mailto:{contact.email}"
        )
    lines += ["TRANSP:OPAQUE", "END:VEVENT"]
    return [_fold(line) for line in lines]


def render(events: list[EventSpec], dtstamp: datetime) -> str:
    stamp = _stamp(dtstamp)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Acme Analytics//followthrough benchmark//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:Acme sales team",
        "X-WR-TIMEZONE:Europe/Berlin",
    ]
    for block in VTIMEZONES.values():
        lines += block
    for ev in events:
        lines += _vevent(ev, stamp)
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


# -- the work directory -----------------------------------------------------------------------

CONFIG = """\
[company]
name = "Acme Analytics"
domains = ["acme.example"]
timezone = "Europe/Berlin"

[[calendars]]
name = "sales-team"
source = "ics"
path = "feed.ics"
owner = "sales@acme.example"
max_bytes = 1_000_000_000  # 121 MB at 100,000 events: above the 50 MB default

[mail]
transport = "outbox"
from = "Followthrough at Acme <followthrough@acme.example>"
outbox_dir = "outbox-{run}"

[store]
url = "sqlite:///ledger-{run}.db"

[team]
implementation = ["Ivy Chen <ivy@acme.example>", "Raj Patel <raj@acme.example>"]
"""


@dataclass(frozen=True)
class Workdir:
    """A temp dir with both exports of the feed and one config (and ledger) per run of the phases."""

    path: Path
    events: int
    edited: int

    @property
    def feed(self) -> Path:
        return self.path / "feed.ics"

    def export(self, phase: Phase) -> Path:
        return self.path / ("export-changed.ics" if phase == "changed" else "export-first.ics")

    @property
    def export_again(self) -> Path:
        """The feed after the changed one: 1% other events edited."""
        return self.path / "export-again.ics"

    def config(self, run: Run) -> Path:
        return self.path / f"followthrough-{run}.toml"

    def ledger(self, run: Run) -> Path:
        return self.path / f"ledger-{run}.db"


def prepare(
    path: Path, events: int, seed: int = SEED, now: datetime = NOW, tagging: Tagging = "normal"
) -> Workdir:
    """Write both exports and the configs; the second export regenerates every DTSTAMP."""
    path.mkdir(parents=True, exist_ok=True)
    feed = generate(events, seed, now, tagging)
    work = Workdir(path, events, feed.edited)
    work.export("first").write_bytes(render(feed.events, now - timedelta(hours=1)).encode())
    work.export("changed").write_bytes(render(feed.changed, now).encode())
    work.export_again.write_bytes(render(feed.again, now + timedelta(minutes=10)).encode())
    for run in RUNS:
        work.config(run).write_text(CONFIG.format(run=run), encoding="utf-8")
    (path / "workdir.json").write_text(
        json.dumps({"events": events, "edited": feed.edited}), encoding="utf-8"
    )
    return work


def open_workdir(path: Path) -> Workdir:
    info = json.loads((path / "workdir.json").read_text(encoding="utf-8"))
    return Workdir(path, info["events"], info["edited"])


def install_feed(work: Workdir, phase: Phase) -> None:
    """Put the export a phase reads in place, atomically as a feed exporter would; none for `unchanged`."""
    if phase == "unchanged":
        return
    staging = work.feed.with_suffix(".tmp")
    shutil.copyfile(work.export(phase), staging)
    staging.replace(work.feed)


# -- one phase --------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    phase: Phase
    run: Run
    seconds: float  # wall time of the pass (perf_counter)
    cpu_seconds: float  # CPU time of this process during the pass (process_time)
    load_average: float  # the machine's 1-minute load as the pass started: other work skews wall time
    setup_seconds: float
    rss_start_mb: float  # resident memory as the pass starts: interpreter, imports, config, engine
    rss_peak_mb: float  # the highest resident memory during the pass (VmHWM, reset as it starts)
    maxrss_mb: float  # getrusage's ru_maxrss at the end: see memory.peak_rss_mb for why it can be higher
    traced_peak_mb: float | None  # tracemalloc's peak during the pass, when traced
    unchanged: bool
    new: int
    changed: int
    gone: int
    problems: int
    replanned: int
    # changed only: the next pass, 1% others edited, by the same Engine in the same process (a running
    # daemon's pass, which has paid what a process pays once: statements and templates compiled)
    again_seconds: float | None = None
    report: PassReport | None = field(default=None, repr=False)

    def to_json(self) -> str:
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self) if f.name != "report"})

    @classmethod
    def from_json(cls, text: str) -> PhaseResult:
        return cls(**json.loads(text))


def run_phase(work: Workdir, phase: Phase, *, run: Run = "timed", now: datetime = NOW) -> PhaseResult:
    """Install the phase's feed, then time one sync of its calendar by a fresh Engine (what a pass does
    for each calendar, without sending anything); trace memory if run="traced"."""
    if phase == "first" and work.ledger(run).exists():
        raise RuntimeError(f"{work.ledger(run)} exists: a first pass needs an empty ledger")
    install_feed(work, phase)
    setup = time.perf_counter()
    engine = Engine(load(work.config(run)))
    setup = time.perf_counter() - setup
    try:
        rss_start = status_mb("VmRSS") or maxrss_mb()
        reset = reset_peak_rss()
        if run == "traced":
            tracemalloc.start()
        load_average = os.getloadavg()[0]
        started, cpu = time.perf_counter(), time.process_time()
        report = PassReport()
        report.calendars = [engine.sync(source, now, report) for source in engine.sources]
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        traced = None
        if run == "traced":
            traced = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        rss_peak = peak_rss_mb(reset)
        again = again_pass(work, engine, now) if phase == "changed" and run == "timed" else None
    finally:
        engine.close()
    calendar = report.calendars[0]
    if calendar.error:
        raise RuntimeError(f"phase {phase}: {calendar.error}")
    return PhaseResult(
        phase=phase,
        run=run,
        seconds=seconds,
        cpu_seconds=cpu,
        load_average=load_average,
        setup_seconds=setup,
        rss_start_mb=rss_start,
        rss_peak_mb=rss_peak,
        maxrss_mb=maxrss_mb(),
        traced_peak_mb=traced,
        unchanged=calendar.unchanged,
        new=calendar.new,
        changed=calendar.changed,
        gone=calendar.gone,
        problems=len(calendar.problems),
        replanned=report.replanned,
        again_seconds=again,
        report=report,
    )


def again_pass(work: Workdir, engine: Engine, now: datetime) -> float | None:
    """The wall time of the pass after the changed one, by the same Engine; None without its export."""
    if not work.export_again.exists():  # a work dir from before
        return None
    staging = work.feed.with_suffix(".tmp")
    shutil.copyfile(work.export_again, staging)
    staging.replace(work.feed)
    started = time.perf_counter()
    report = PassReport()
    calendars = [engine.sync(source, now, report) for source in engine.sources]
    seconds = time.perf_counter() - started
    if calendars[0].error or calendars[0].unchanged:
        raise RuntimeError(f"the pass after the changed one: {calendars[0].error or 'nothing changed'}")
    return seconds


def run_phase_in_child(work: Workdir, phase: Phase, run: Run) -> PhaseResult:
    """The same phase in a fresh interpreter, so that its peak RSS is its own."""
    command = [sys.executable, "-m", "benchmarks.bench_ics_feed", "--workdir", str(work.path)]
    command += ["--phase", phase, "--run", run]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return PhaseResult.from_json(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"phase {phase}: the child printed no result:\n{done.stdout}")


# -- the report -------------------------------------------------------------------------------


def verdicts(timed: Mapping[Phase, PhaseResult]) -> dict[Phase, tuple[float, bool]]:
    """Each target's ratio to the first pass, and whether it is met."""
    first = timed["first"].seconds
    return {
        phase: (timed[phase].seconds / first, timed[phase].seconds <= limit * first)
        for phase, limit in TARGETS.items()
    }


def progress(r: PhaseResult) -> str:
    what = "unchanged" if r.unchanged else f"{r.new} new, {r.changed} changed, {r.gone} gone"
    return (
        f"{r.run:<6} {r.phase:<9} {r.seconds:9.3f} s wall, {r.cpu_seconds:9.3f} s CPU, "
        f"load {r.load_average:.1f}, peak RSS {r.rss_peak_mb:,.0f} MB; {what}"
    )


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MB"


def table(work: Workdir, timed: Mapping[Phase, PhaseResult], traced: Mapping[Phase, PhaseResult]) -> str:
    checks = verdicts(timed)
    columns = "pass|wall|vs first|target||CPU|vs first|load|RSS at start|peak RSS|ru_maxrss|traced peak"
    rows: list[tuple[str, ...]] = [tuple(columns.split("|"))]
    for phase in PHASES:
        r, t = timed[phase], traced.get(phase)
        ratio, ok = checks.get(phase, (1.0, True))
        rows.append(
            (
                phase,
                f"{r.seconds:.3f} s",
                f"{ratio:.2%}",
                f"≤ {TARGETS[phase]:.0%}" if phase in TARGETS else "",
                ("PASS" if ok else "FAIL") if phase in TARGETS else "",
                f"{r.cpu_seconds:.3f} s",
                f"{r.cpu_seconds / timed['first'].cpu_seconds:.2%}",
                f"{r.load_average:.1f}",
                _mb(r.rss_start_mb),
                _mb(r.rss_peak_mb),
                _mb(r.maxrss_mb),
                _mb(t.traced_peak_mb) if t else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    for phase in PHASES:
        r = timed[phase]
        what = "unchanged" if r.unchanged else f"{r.new} new, {r.changed} changed, {r.gone} gone"
        lines.append(
            f"{phase}: calendar {what}; {r.replanned} re-planned; {r.problems} problems; "
            f"setup {r.setup_seconds:.2f} s"
        )
    size = work.export("first").stat().st_size / 2**20
    title = (
        f"followthrough ICS feed benchmark: {work.events:,} VEVENTs ({size:.1f} MB), "
        f"{work.edited:,} edited for the third pass, now={NOW.isoformat()}"
    )
    return "\n".join([title, *lines])


def save(path: Path, work: Workdir, results: Mapping[Run, Mapping[Phase, PhaseResult]]) -> None:
    raw = {
        run: {phase: json.loads(r.to_json()) for phase, r in done.items()} for run, done in results.items()
    }
    path.write_text(
        json.dumps({"events": work.events, "edited": work.edited, **raw}, indent=2), encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="VEVENTs in the feed (default 100000)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--tagging", choices=tuple(TAGGING), default="normal", help="share of tagged calls")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also run the three phases again under tracemalloc, for Python heap peaks",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--json", type=Path, help="also write every phase's figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (feeds, configs, ledgers)")
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--run", choices=RUNS, default="timed", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:  # a child: one phase in a fresh interpreter
        result = run_phase(open_workdir(args.workdir), args.phase, run=args.run)
        print(RESULT_PREFIX + result.to_json(), flush=True)
        return 0

    path = Path(tempfile.mkdtemp(prefix="followthrough-bench-"))
    try:
        started = time.perf_counter()
        work = prepare(path, args.events, args.seed, tagging=args.tagging)
        print(
            f"generated {args.events:,} events in {time.perf_counter() - started:.1f} s under {path}",
            flush=True,
        )
        runs: tuple[Run, ...] = RUNS if args.tracemalloc else ("timed",)
        results: dict[Run, dict[Phase, PhaseResult]] = {run: {} for run in RUNS}
        for run in runs:
            for phase in PHASES:
                result = run_phase_in_child(work, phase, run)
                results[run][phase] = result
                print(f"  {progress(result)}", flush=True)
                if args.json:  # after every phase, so that an interrupted run keeps what it measured
                    save(args.json, work, results)
        print(table(work, results["timed"], results["traced"]))
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)
    missed = [phase for phase, (_, ok) in verdicts(results["timed"]).items() if not ok]
    if missed:
        print(f"targets missed: {', '.join(missed)}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
