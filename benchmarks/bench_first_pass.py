"""Benchmark: followthrough's first pass over an ICS feed against the bare icalendar parse of the same
feed, measured side by side at several sizes, for a normal and a heavily tagged calendar.

Run `python -m benchmarks.bench_first_pass [--sizes 10000,30000,100000] [--tagging normal,heavy]`;
docs/benchmarks.md explains the figures and holds the last ones.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from benchmarks.bare_parse import RESULT_PREFIX as BARE_PREFIX
from benchmarks.bench_ics_feed import (
    NOW,
    ROOT,
    SEED,
    TAGGING,
    PhaseResult,
    Tagging,
    prepare,
    run_phase_in_child,
)

# The ICS source's default window: what the bare parse expands too.
WINDOW = (NOW - timedelta(days=30), NOW + timedelta(days=400))
TIME_TARGET = 0.5  # of the bare parse's wall time
MEMORY_TARGET = 0.5  # of the bare parse's peak RSS
GROWTH_TARGET = 1.1  # time per event at the largest size over time per event at the smallest
# This machine's pace drifts by a fifth from minute to minute: the first pass and the passes after it
# are measured this many rounds, each pass after the first as a share of its own round's first pass,
# and the medians reported.
ROUNDS = 3


@dataclass
class Bare:
    seconds: float
    cpu_seconds: float
    rss_start_mb: float
    rss_peak_mb: float
    load_average: float
    instances: int


@dataclass
class Size:
    """One feed size and tagging: the bare parse, followthrough's first pass, and (normal only) the
    steady-state passes that must stay cheap; each round's passes in the lists, round by round."""

    events: int
    tagging: Tagging
    megabytes: float
    bare: Bare
    first_runs: list[PhaseResult] = field(default_factory=list)
    unchanged_runs: list[PhaseResult] = field(default_factory=list)
    changed_runs: list[PhaseResult] = field(default_factory=list)

    @property
    def first(self) -> PhaseResult:
        """The first pass of median wall time (the lower middle one of an even count)."""
        return sorted(self.first_runs, key=lambda r: r.seconds)[(len(self.first_runs) - 1) // 2]

    def shares(self, runs: list[PhaseResult], again: bool = False) -> list[float]:
        """Each round's pass (or the pass after it, by the same process) over that round's first pass."""
        return [
            (run.again_seconds if again else run.seconds) / first.seconds
            for first, run in zip(self.first_runs, runs, strict=True)
            if not again or run.again_seconds is not None
        ]

    @property
    def time_ratio(self) -> float:
        return self.first.seconds / self.bare.seconds

    @property
    def cpu_ratio(self) -> float:
        return self.first.cpu_seconds / self.bare.cpu_seconds

    @property
    def memory_ratio(self) -> float:
        return self.first.rss_peak_mb / self.bare.rss_peak_mb


def run_bare(feed: Path) -> Bare:
    """The bare parse in a fresh interpreter that imports nothing of followthrough."""
    command = [sys.executable, "-m", "benchmarks.bare_parse", str(feed), *(w.isoformat() for w in WINDOW)]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
    for line in done.stdout.splitlines():
        if line.startswith(BARE_PREFIX):
            return Bare(**json.loads(line[len(BARE_PREFIX) :]))
    raise RuntimeError(f"the bare parse printed no result:\n{done.stdout}")


def measure(root: Path, events: int, tagging: Tagging, seed: int, rounds: int, steady: bool) -> Size:
    """The bare parse once; `rounds` rounds of the first pass on an empty ledger, each followed, with
    `steady`, by the unchanged and the 1% changed passes."""
    work = prepare(root / f"{tagging}-{events}", events, seed, tagging=tagging)
    try:
        feed = work.export("first")
        size = Size(events, tagging, feed.stat().st_size / 2**20, run_bare(feed))
        for _ in range(rounds):
            ledger = work.ledger("timed")
            for path in (ledger, *(Path(f"{ledger}{s}") for s in ("-wal", "-shm", "-journal"))):
                path.unlink(missing_ok=True)
            size.first_runs.append(run_phase_in_child(work, "first", "timed"))
            if steady:
                size.unchanged_runs.append(run_phase_in_child(work, "unchanged", "timed"))
                size.changed_runs.append(run_phase_in_child(work, "changed", "timed"))
        return size
    finally:
        shutil.rmtree(work.path, ignore_errors=True)


def _ok(value: float, target: float, tagging: Tagging = "normal") -> str:
    """The verdict on a target, which is set for the normal feed; the heavy one is reported only."""
    if tagging != "normal":
        return "(reported)"
    return "PASS" if value <= target else "FAIL"


def table(sizes: list[Size]) -> str:
    """One row per size: the two first passes, their ratios, and what the pass found."""
    head = (
        "| tagging | VEVENTs | MB | bare wall | bare CPU | bare peak | first wall | first CPU "
        f"| first peak | wall ratio (≤ {TIME_TARGET}) | CPU ratio | memory ratio (≤ {MEMORY_TARGET}) "
        "| load | events | re-planned |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in sizes:
        b, f = s.bare, s.first
        lines.append(
            f"| {s.tagging} | {s.events:,} | {s.megabytes:.1f} | {b.seconds:.1f} s "
            f"| {b.cpu_seconds:.1f} s | {b.rss_peak_mb:,.0f} MB | {f.seconds:.1f} s "
            f"| {f.cpu_seconds:.1f} s | {f.rss_peak_mb:,.0f} MB "
            f"| **{s.time_ratio:.2f}** {_ok(s.time_ratio, TIME_TARGET, s.tagging)} | {s.cpu_ratio:.2f} "
            f"| **{s.memory_ratio:.2f}** {_ok(s.memory_ratio, MEMORY_TARGET, s.tagging)} "
            f"| {max(b.load_average, f.load_average):.1f} | {f.new:,} | {f.replanned:,} |"
        )
    return "\n".join(lines)


def growth(sizes: list[Size]) -> str:
    """Time per event at the largest size over time per event at the smallest, for each tagging: a
    pass that grows faster than its feed shows it here."""
    lines = []
    for tagging in dict.fromkeys(s.tagging for s in sizes):
        mine = sorted((s for s in sizes if s.tagging == tagging), key=lambda s: s.events)
        if len(mine) < 2:
            continue
        small, large = mine[0], mine[-1]
        for what, ours, bare in (
            ("wall", lambda s: s.first.seconds, lambda s: s.bare.seconds),
            ("CPU", lambda s: s.first.cpu_seconds, lambda s: s.bare.cpu_seconds),
        ):
            figure = (ours(large) / large.events) / (ours(small) / small.events)
            reference = (bare(large) / large.events) / (bare(small) / small.events)
            lines.append(
                f"{tagging}: {what} per event at {large.events:,} over {small.events:,}: **{figure:.3f}** "
                f"(≤ {GROWTH_TARGET} {_ok(figure, GROWTH_TARGET)}); the bare parse's: {reference:.3f}"
            )
    return "\n".join(lines)


def steady(sizes: list[Size]) -> str:
    """The passes after the first: an unchanged feed and 1% changed, each in a fresh process; and 1%
    changed again by the same process, as a running daemon's next pass. Each as a share of its round's
    first pass: the median share in bold, the rounds' range after it."""
    lines = [
        "| VEVENTs | rounds | unchanged | of first (≤ 1%) | 1% changed | of first (≤ 5%) | changed peak "
        "| 1% changed again, same process | of first |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sizes:
        if not s.unchanged_runs or not s.changed_runs:
            continue
        agains = [r.again_seconds for r in s.changed_runs if r.again_seconds is not None]
        lines.append(
            f"| {s.events:,} | {len(s.changed_runs)} "
            f"| {_seconds([r.seconds for r in s.unchanged_runs])} | {_share(s.shares(s.unchanged_runs))} "
            f"| {_seconds([r.seconds for r in s.changed_runs])} | {_share(s.shares(s.changed_runs))} "
            f"| {max(r.rss_peak_mb for r in s.changed_runs):,.0f} MB "
            f"| {_seconds(agains)} | {_share(s.shares(s.changed_runs, again=True))} |"
        )
    return "\n".join(lines)


def _seconds(values: list[float]) -> str:
    return f"{statistics.median_low(values):.2f} s" if values else "-"


def _share(shares: list[float]) -> str:
    if not shares:
        return "-"
    spread = f" ({min(shares):.2%}–{max(shares):.2%})" if len(shares) > 1 else ""
    return f"**{statistics.median_low(shares):.2%}**{spread}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="VEVENTs per feed, comma-separated")
    parser.add_argument("--tagging", default="normal,heavy", help=f"of {', '.join(TAGGING)}, comma-separated")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-steady", action="store_true", help="skip the unchanged and changed passes")
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help=f"rounds of the first pass and the passes after it; medians reported (default {ROUNDS})",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    names = args.tagging.split(",")
    unknown = [n for n in names if n not in TAGGING]
    if unknown:
        parser.error(f"--tagging: {', '.join(unknown)} not one of {', '.join(TAGGING)}")
    taggings = [t for t in TAGGING if t in names]
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    root = Path(tempfile.mkdtemp(prefix="followthrough-first-pass-"))
    results: list[Size] = []
    try:
        for tagging in taggings:
            for events in sizes:
                started = time.perf_counter()
                later = tagging == "normal" and not args.no_steady
                size = measure(root, events, tagging, args.seed, args.rounds, later)
                results.append(size)
                print(
                    f"  {tagging} {events:,}: bare {size.bare.seconds:.1f} s "
                    f"/ {size.bare.rss_peak_mb:,.0f} MB, "
                    f"first pass {size.first.seconds:.1f} s / {size.first.rss_peak_mb:,.0f} MB "
                    f"(ratios {size.time_ratio:.2f} time, {size.memory_ratio:.2f} memory); "
                    f"{time.perf_counter() - started:.0f} s in all",
                    flush=True,
                )
                if args.json:  # after every size, so that an interrupted run keeps what it measured
                    args.json.write_text(json.dumps([asdict(r) for r in results], indent=2), encoding="utf-8")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    print(growth(results))
    print(steady(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
