"""Benchmark: dispatching N due sends over SMTP, against raw smtplib sending the same messages.

Run `python -m benchmarks.bench_dispatch [--sends 1000]`; docs/benchmarks.md explains the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import multiprocessing
import os
import pstats
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import event

import daemon.dispatch
from daemon.config import load
from daemon.engine import Engine, PassReport
from daemon.ledger import Ledger
from daemon.mail import Transport
from daemon.model import Status

H = timedelta(hours=1)
D = timedelta(days=1)
TARGET = 0.9  # followthrough's throughput over raw smtplib's, at least
REP = ("alice@acme.example", "Alice Moreno")
REPS = (REP, ("bob@acme.example", "Bob Lindqvist"), ("carla@acme.example", "Carla Okafor"))
NOTES = (
    "Homework: send the DPA; confirm data residency in the EU\\n"
    "Promised: a sandbox with their last quarter's data\\n"
    "Decision expected by the end of the month; legal review takes two weeks on their side."
)


# -- the SMTP server, in a process of its own -------------------------------------------------------


class _Counting:
    """An aiosmtpd handler that takes every message and counts it, keeping nothing."""

    def __init__(self, count: Any, pipelining: bool) -> None:
        self.count = count
        self.pipelining = pipelining

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:  # as Postfix, Exchange and Gmail do; aiosmtpd reads such commands one by one
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.count.get_lock():
            self.count.value += 1
        return "250 OK"


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Bytes from `reader` to `writer`, each arriving `delay` seconds after it was sent, in order: one
    way of a network path."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def take() -> None:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
        queue.put_nowait((loop.time() + delay, b""))

    async def give() -> None:
        while True:
            due, data = await queue.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    await asyncio.gather(take(), give())


def _serve(port: Any, count: Any, ready: Any, latency: float, pipelining: bool) -> None:
    """aiosmtpd, reached through a path that takes `latency` seconds a round trip when there is one."""
    from aiosmtpd.smtp import SMTP

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = _Counting(count, pipelining)
        smtp = await loop.create_server(lambda: SMTP(handler, hostname="bench.example"), "127.0.0.1", 0)
        inner = smtp.sockets[0].getsockname()[1]

        async def far(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", inner)
            await asyncio.gather(
                _carry(reader, up_writer, latency / 2), _carry(up_reader, writer, latency / 2)
            )

        reached = await asyncio.start_server(far, "127.0.0.1", 0) if latency else smtp
        port.value = reached.sockets[0].getsockname()[1]
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


@dataclass
class Server:
    """The server both contenders send to: ours (its messages counted, its CPU read), or an outside one
    named by --smtp, such as a local Postfix, of which neither can be read."""

    process: Any
    port: int
    count: Any
    host: str = "127.0.0.1"

    @property
    def outside(self) -> bool:
        return self.process is None

    def received(self) -> int:
        return 0 if self.outside else int(self.count.value)

    def cpu(self) -> float:
        """The server process's CPU seconds so far (user + system); 0 for an outside server."""
        if self.outside:
            return 0.0
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def smtp_server(
    latency: float = 0.0, outside: str | None = None, pipelining: bool = True
) -> Iterator[Server]:
    """aiosmtpd on 127.0.0.1 in a spawned process: it never shares a GIL with the client measured; with
    `latency`, behind a path that takes that long a round trip. Or `outside`, "host:port" of a server
    already running."""
    if outside:
        host, _, port_text = outside.rpartition(":")
        yield Server(None, int(port_text), None, host or "127.0.0.1")
        return
    spawn = multiprocessing.get_context("spawn")
    port, count, ready = spawn.Value("i", 0), spawn.Value("l", 0), spawn.Event()
    process = spawn.Process(target=_serve, args=(port, count, ready, latency, pipelining), daemon=True)
    process.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the SMTP server did not start")
        yield Server(process, int(port.value), count)
    finally:
        process.terminate()
        process.join(10)


# -- the calendar and the ledger ------------------------------------------------------------------


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _vevent(
    uid: str, start: datetime, summary: str, rep: tuple[str, str], customers: int, domain: str
) -> str:
    people = [rep] + [
        (f"buyer{j}@{domain}", f"Buyer {j} {domain.split('.')[0].title()}") for j in range(customers)
    ]
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20260101T000000Z",
        f"DTSTART:{_stamp(start)}",
        f"DTEND:{_stamp(start + H)}",
        f"SUMMARY:{summary}",
        f"DESCRIPTION:{NOTES}",
        f"ORGANIZER;CN={rep[1]}:mailto:{rep[0]}",
        *(f"ATTENDEE;CN={name};PARTSTAT=ACCEPTED:mailto:{address}" for address, name in people),
        "END:VEVENT",
    ]
    return "\r\n".join(lines) + "\r\n"


# What one deal of each kind has due `now`, planned an hour earlier, by the default rules.
KINDS: dict[str, tuple[str, ...]] = {
    "soon": ("closing-prep", "closing-final"),  # a closing call in 30 minutes: both prompts to the rep
    "tomorrow": ("closing-prep",),  # a closing call in 20 hours: the prep prompt
    "ended": ("outcome-nudge",),  # a closing call that ended 3 hours ago, no outcome yet
    "won": ("implementation-intro", "handoff-brief"),  # won: the customer's intro, the team's brief
    "lost": ("lost-thank-you",),  # lost two days ago: the thank-you to the customer
    "kickoff": ("kickoff-prep",),  # a kickoff tomorrow: the prep to the rep and the team
}
MIX = ("soon", "tomorrow", "ended", "won", "lost", "kickoff", "won", "tomorrow")


def calendar(sends: int, now: datetime) -> tuple[str, int]:
    """An ICS calendar whose deals have `sends` sends due at `now`, planned at `now - 1h`."""
    events: list[str] = []
    due = 0
    i = 0
    while due < sends:
        kind = MIX[i % len(MIX)]
        if due + len(KINDS[kind]) > sends:
            kind = "lost"
        domain = f"deal{i}.example"
        rep = REPS[i % len(REPS)]
        customers = 1 + i % 3
        name = f"Deal {i}"
        start = {
            "soon": now + H / 2,
            "tomorrow": now + 20 * H,
            "ended": now - 4 * H,
            "won": now - 3 * H,
            "lost": now - 2 * D,
            "kickoff": now + 20 * H,
        }[kind]
        tag = {"won": "#closing #won", "lost": "#closing #lost", "kickoff": "#kickoff"}.get(kind, "#closing")
        events.append(_vevent(f"{kind}-{i}", start, f"{name} terms {tag}", rep, customers, domain))
        if kind in ("won", "lost", "ended"):  # the deal's kickoff, earlier: rendering reads the deal's events
            events.append(
                _vevent(f"kick-{i}", start - 20 * D, f"{name} kickoff #kickoff", rep, customers, domain)
            )
        due += len(KINDS[kind])
        i += 1
    text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//followthrough bench//EN\r\n" + "".join(events)
    return text + "END:VCALENDAR\r\n", due


CONFIG = """\
[company]
name = "Acme Analytics"
domains = ["acme.example"]
timezone = "Europe/Berlin"

[[calendars]]
name = "sales"
source = "ics"
path = "calendar.ics"
owner = "alice@acme.example"

[mail]
transport = "smtp"
from = "Followthrough <ft@acme.example>"

[mail.smtp]
host = "{host}"
port = {port}
starttls = false
timeout = 30

[store]
url = "{store}"

[team]
implementation = ["Ivy Chen <ivy@acme.example>", "Raj Patel <raj@acme.example>"]

[schedule]
business_hours = "00:00-24:00"
business_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
"""


@dataclass
class Workdir:
    path: Path
    now: datetime
    due: int
    sqlite: bool

    @property
    def config(self) -> Path:
        return self.path / "followthrough.toml"

    @property
    def ledger(self) -> Path:
        return self.path / "followthrough.db"

    @property
    def planned(self) -> Path:
        return self.path / "planned.db"


def prepare(path: Path, sends: int, port: int, store: str | None = None, host: str = "127.0.0.1") -> Workdir:
    """The config, calendar and a ledger with `sends` sends due now, planned as a sync would."""
    now = datetime.now(UTC).replace(microsecond=0)
    text, due = calendar(sends, now)
    (path / "calendar.ics").write_text(text, encoding="utf-8")
    (path / "followthrough.toml").write_text(
        CONFIG.format(host=host, port=port, store=store or "sqlite:///followthrough.db"), encoding="utf-8"
    )
    work = Workdir(path, now, due, store is None)
    plan(work)
    if work.sqlite:
        shutil.copyfile(work.ledger, work.planned)
    return work


def plan(work: Workdir) -> None:
    """Sync the calendar an hour before `now`: what the ledger holds when the sends fall due."""
    engine = Engine(load(work.config))
    try:
        if not work.sqlite:
            _empty(engine.ledger)
            engine.close()
            engine = Engine(load(work.config))
        for source in engine.sources:
            engine.sync(source, work.now - H, PassReport())
        due = [s for s in engine.ledger.sends([Status.PLANNED]) if s.due <= work.now]
        if len(due) != work.due:
            raise RuntimeError(f"planned {len(due)} due sends, expected {work.due}")
    finally:
        engine.close()


def _empty(ledger: Ledger) -> None:
    from daemon.ledger.schema import metadata

    engine = ledger.engine  # type: ignore[attr-defined]
    metadata.drop_all(engine)


def fresh_ledger(work: Workdir) -> None:
    """The planned ledger as it was before any dispatch."""
    if work.sqlite:
        for suffix in ("-wal", "-shm"):
            Path(f"{work.ledger}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(work.planned, work.ledger)
    else:
        plan(work)


# -- the two contenders ---------------------------------------------------------------------------


@dataclass
class Wire:
    """One message as smtplib puts it on the wire, with its envelope."""

    data: bytes
    sender: str
    recipients: tuple[str, ...]


class Capture(Transport):
    """Keeps each message's bytes and envelope, sending nothing: the baseline's input."""

    def __init__(self) -> None:
        self.wires: list[Wire] = []

    def deliver(self, message: EmailMessage, envelope_from: str, recipients: Sequence[str]) -> dict[str, str]:
        # As smtplib.send_message flattens it: the message's policy with CRLF line ends.
        data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        self.wires.append(Wire(data, envelope_from, tuple(recipients)))
        return {}


def messages(work: Workdir) -> list[Wire]:
    """The messages followthrough sends for the due sends, captured from a dispatch of a ledger copy."""
    fresh_ledger(work)
    capture = Capture()
    engine = Engine(load(work.config), transport=capture)
    try:
        report = engine.dispatcher.dispatch_due(work.now)
    finally:
        engine.close()
    if len(report.sent) != work.due:
        raise RuntimeError(f"captured {len(report.sent)} messages, expected {work.due}: {report}")
    return capture.wires


@dataclass
class Figures:
    name: str
    messages: int
    wall: float
    cpu: float
    server_cpu: float
    commits: int = 0
    reads: int = 0
    transactions: int = 0

    @property
    def rate(self) -> float:
        return self.messages / self.wall

    def per_send(self, value: float) -> float:
        return value / self.messages


def round_trip(server: Server) -> float:
    """The median time of a NOOP's answer on the server, in seconds: what one round trip really takes."""
    smtp = smtplib.SMTP(server.host, server.port, timeout=30)
    try:
        times = []
        for _ in range(21):
            started = time.perf_counter()
            smtp.noop()
            times.append(time.perf_counter() - started)
    finally:
        smtp.quit()
    return statistics.median(times)


def raw_smtplib(server: Server, wires: list[Wire]) -> Figures:
    """The baseline: the same bytes and envelopes through one smtplib connection, nothing else."""
    before, server_before = server.received(), server.cpu()
    wall, cpu = time.perf_counter(), time.process_time()
    smtp = smtplib.SMTP(server.host, server.port, timeout=30)
    try:
        for wire in wires:
            refused = smtp.sendmail(wire.sender, list(wire.recipients), wire.data)
            if refused:
                raise RuntimeError(f"the server refused {refused}")
    finally:
        smtp.quit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _arrived(server, before, len(wires))
    return Figures("raw smtplib", len(wires), wall, cpu, server.cpu() - server_before)


@dataclass
class Counts:
    commits: int = 0
    reads: int = 0
    transactions: int = 0


def count_transactions(ledger: Ledger) -> Counts:
    """Transactions the ledger's engine opens from now on: commits, and reads (rolled back)."""
    counts = Counts()
    engine = ledger.engine  # type: ignore[attr-defined]

    def begun(conn: Any) -> None:
        counts.transactions += 1
        if conn.info.get("reading"):
            counts.reads += 1

    def committed(conn: Any) -> None:
        counts.commits += 1

    event.listen(engine, "begin", begun)
    event.listen(engine, "commit", committed)
    return counts


def followthrough(
    server: Server, work: Workdir, profile: Path | None = None, watch: Stages | None = None
) -> Figures:
    """The dispatcher's pass over the due sends, through the SMTP transport's one connection; its stages
    timed into `watch`, if given."""
    fresh_ledger(work)
    engine = Engine(load(work.config))
    counts = count_transactions(engine.ledger)
    before, server_before = server.received(), server.cpu()
    profiler = cProfile.Profile() if profile else None
    try:
        with watch.watching(engine) if watch else nullcontext():
            wall, cpu = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            report = engine.dispatcher.dispatch_due(work.now)
            if profiler:
                profiler.disable()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        engine.close()
    if profiler and profile:
        profiler.dump_stats(profile)
    if len(report.sent) != work.due or report.trouble:
        raise RuntimeError(f"sent {len(report.sent)} of {work.due}: {report}")
    _arrived(server, before, work.due)
    return Figures(
        "followthrough",
        work.due,
        wall,
        cpu,
        server.cpu() - server_before,
        counts.commits,
        counts.reads,
        counts.transactions,
    )


def _cores() -> int:
    """The cores this process may run on (all of them where the system cannot say)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


# What a send's CPU goes to, in the order a send meets them; whatever no stage covers is "the rest".
STAGES = {
    "writing": "writing it (its context, Jinja, Markdown, the HTML layout, CSS inlining)",
    "building": "building and checking the MIME message (the email package)",
    "handing": "handing it over (connecting, serializing it, smtplib; CPU, not the wait for answers)",
    "ledger": "the ledger (claims, the batch's read, hand-overs with results)",
}


class Stages:
    """CPU time of each stage of a pass, each timed where the dispatcher calls it."""

    def __init__(self) -> None:
        self.cpu = dict.fromkeys(STAGES, 0.0)

    def timed(self, stage: str, work: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return work(*args, **kwargs)
            finally:
                self.cpu[stage] += time.process_time() - started

        return timed

    @contextmanager
    def watching(self, engine: Engine) -> Iterator[None]:
        dispatcher, ledger = engine.dispatcher, engine.ledger
        start = dispatcher.transport.start

        def starting(*args: Any, **kwargs: Any) -> Any:
            return self.timed("handing", self.timed("handing", start)(*args, **kwargs))  # its finish too

        writing = self.timed("writing", dispatcher.renderer.email)
        dispatcher.renderer = _Renderer(dispatcher.renderer, writing)  # type: ignore[assignment]
        dispatcher.transport.start = starting  # type: ignore[method-assign]
        for name in ("claim_due", "known", "record_and_hand"):
            setattr(ledger, name, self.timed("ledger", getattr(ledger, name)))
        # The rest are this engine's own objects, closed after the round; the module's function is not.
        build = daemon.dispatch.build_message
        daemon.dispatch.build_message = self.timed("building", build)
        try:
            yield
        finally:
            daemon.dispatch.build_message = build


class _Renderer:
    """The dispatcher's renderer (a frozen dataclass), its `email` timed."""

    def __init__(self, renderer: Any, email: Callable[..., Any]) -> None:
        self._renderer, self.email = renderer, email

    def __getattr__(self, name: str) -> Any:
        return getattr(self._renderer, name)


def stages(server: Server, work: Workdir) -> dict[str, float]:
    """A round of its own, not among the timed ones: the CPU of each stage, in ms a send."""
    watch = Stages()
    whole = followthrough(server, work, watch=watch)
    figures = {stage: 1000 * whole.per_send(spent) for stage, spent in watch.cpu.items()}
    figures["rest"] = 1000 * whole.per_send(whole.cpu) - sum(figures.values())
    return figures


def _arrived(server: Server, before: int, expected: int) -> None:
    if server.outside:  # its own log tells
        return
    deadline = time.monotonic() + 10
    while server.received() - before < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    if server.received() - before != expected:
        raise RuntimeError(f"the server got {server.received() - before} messages, expected {expected}")


# -- the run ----------------------------------------------------------------------------------------


@dataclass
class Result:
    sends: int
    rounds: int
    store: str
    server: str = "aiosmtpd"
    baseline: list[Figures] = field(default_factory=list)
    ours: list[Figures] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # CPU ms a send, from a round of its own
    cores: int = field(default_factory=_cores)

    def budget(self) -> float:
        """The most CPU, in ms, followthrough's client could spend on a send and still reach the target
        here: all the cores' time during one message at the target's pace, less the server's CPU a
        message (the lower of the two contenders' medians; read only for the benchmark's own server).
        An upper bound: it assumes perfect overlap, and nothing else on the machine using CPU."""
        wall = 1 / (TARGET * statistics.median(f.rate for f in self.baseline))
        server = min(
            statistics.median(f.per_send(f.server_cpu) for f in runs) for runs in (self.baseline, self.ours)
        )
        return 1000 * (self.cores * wall - server)

    def ratios(self) -> list[float]:
        return [o.rate / b.rate for b, o in zip(self.baseline, self.ours, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios())

    def summary(self) -> dict[str, Any]:
        def median(figures: list[Figures], value: Callable[[Figures], float]) -> float:
            return statistics.median(value(f) for f in figures)

        summary: dict[str, Any] = {
            "sends": self.sends,
            "rounds": self.rounds,
            "store": self.store,
            "server": self.server,
        }
        for name, figures in (("smtplib", self.baseline), ("followthrough", self.ours)):
            summary[name] = {
                "msg_per_s": median(figures, lambda f: f.rate),
                "cpu_ms_per_send": median(figures, lambda f: 1000 * f.per_send(f.cpu)),
                "server_cpu_ms_per_send": median(figures, lambda f: 1000 * f.per_send(f.server_cpu)),
                "commits_per_send": median(figures, lambda f: f.per_send(f.commits)),
                "reads_per_send": median(figures, lambda f: f.per_send(f.reads)),
            }
        summary["ratio"] = self.ratio
        summary["ratios"] = self.ratios()
        summary["target"] = TARGET
        summary["cores"] = self.cores
        summary["cpu_budget_ms_per_send"] = self.budget()
        summary["stages_cpu_ms_per_send"] = self.stages
        summary["runs"] = [asdict(f) for f in (*self.baseline, *self.ours)]
        return summary


def table(result: Result) -> str:
    s = result.summary()
    rows = [
        f"server: {result.server}; ledger: {result.store}",
        "",
        "| | raw smtplib | followthrough |",
        "| --- | ---: | ---: |",
        f"| messages per second (median of {result.rounds}) "
        f"| {s['smtplib']['msg_per_s']:.0f} | {s['followthrough']['msg_per_s']:.0f} |",
        f"| CPU per send, client | {s['smtplib']['cpu_ms_per_send']:.2f} ms "
        f"| {s['followthrough']['cpu_ms_per_send']:.2f} ms |",
        f"| CPU per send, SMTP server | {s['smtplib']['server_cpu_ms_per_send']:.2f} ms "
        f"| {s['followthrough']['server_cpu_ms_per_send']:.2f} ms |"
        if not result.server.startswith("outside")
        else "| CPU per send, SMTP server | (not read) | (not read) |",
        f"| commits per send | | {s['followthrough']['commits_per_send']:.2f} |",
        f"| read transactions per send | | {s['followthrough']['reads_per_send']:.2f} |",
    ]
    if result.stages:
        rows += ["", "| followthrough's CPU per send (a round of its own) | |", "| --- | ---: |"]
        rows += [f"| {what} | {result.stages[stage]:.2f} ms |" for stage, what in STAGES.items()]
        rest = "the rest (the dispatcher's own work, logging, the pass's first reads, QUIT)"
        rows.append(f"| {rest} | {result.stages['rest']:.2f} ms |")
    outside = result.server.startswith("outside")
    rows += [
        "",
        f"CPU budget per send at the target, {result.cores} cores: at most {result.budget():.2f} ms "
        f"(the cores' time for one message at {TARGET} of smtplib's pace"
        + (", the server's CPU not read)" if outside else ", less the server's CPU)"),
    ]
    ratios = ", ".join(f"{r:.2f}" for r in result.ratios())
    verdict = "PASS" if result.ratio >= TARGET else "MISS"
    rows.append("")
    rows.append(
        f"throughput ratio (followthrough / smtplib): {result.ratio:.2f} (rounds: {ratios}); "
        f"target >= {TARGET}: {verdict}"
    )
    return "\n".join(rows)


def run(
    sends: int,
    rounds: int,
    store: str | None,
    profile: Path | None,
    keep: bool,
    latency_ms: float = 0.0,
    outside: str | None = None,
    pipelining: bool = True,
) -> Result:
    path = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    try:
        with smtp_server(latency_ms / 1000, outside, pipelining) as server:
            work = prepare(path, sends, server.port, store, server.host)
            wires = messages(work)
            result = Result(work.due, rounds, "sqlite" if work.sqlite else "postgresql")
            if server.outside:
                result.server = f"outside, {server.host}:{server.port}"
            else:
                result.server = "aiosmtpd" + ("" if pipelining else " without PIPELINING")
                result.server += f", {latency_ms:g} ms a round trip away" if latency_ms else ""
            result.server += f" (a NOOP's answer: {1000 * round_trip(server):.2f} ms)"
            for n in range(rounds):
                result.baseline.append(raw_smtplib(server, wires))
                result.ours.append(followthrough(server, work, profile if n == rounds - 1 else None))
                print(
                    f"round {n + 1}: smtplib {result.baseline[-1].rate:.0f} msg/s, "
                    f"followthrough {result.ours[-1].rate:.0f} msg/s",
                    file=sys.stderr,
                    flush=True,
                )
            result.stages = stages(server, work)
            return result
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sends", type=int, default=1000, help="due sends to dispatch (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both contenders (default 3)")
    parser.add_argument("--store", help="a PostgreSQL url to use instead of SQLite (emptied first)")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="MS",
        help="the benchmark's server sits behind a path that takes this many ms a round trip (default 0)",
    )
    parser.add_argument(
        "--no-pipelining", action="store_true", help="the benchmark's server does not offer PIPELINING"
    )
    parser.add_argument(
        "--smtp", metavar="HOST:PORT", help="send to this server instead (a local Postfix, say): not counted"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--profile", type=Path, help="cProfile the last followthrough round into this file")
    parser.add_argument("--strict", action="store_true", help=f"exit 1 if the ratio is under {TARGET}")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (config, calendar, ledger)")
    args = parser.parse_args(argv)
    if args.smtp and (args.latency or args.no_pipelining):
        parser.error(
            "--latency and --no-pipelining shape the benchmark's own server, not one given by --smtp"
        )
    result = run(
        args.sends,
        args.rounds,
        args.store,
        args.profile,
        args.keep,
        args.latency,
        args.smtp,
        not args.no_pipelining,
    )
    print(table(result))
    print("BENCH-RESULT " + json.dumps(result.summary()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result.summary(), indent=2) + "\n", encoding="utf-8")
    if args.profile:
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(25)
    return 1 if args.strict and result.ratio < TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
