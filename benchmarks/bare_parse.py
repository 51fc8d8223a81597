"""The baseline of the first-pass benchmark: a feed parsed by icalendar and expanded by
recurring-ical-events, as a program that did nothing else would, in a fresh interpreter.

`python -m benchmarks.bare_parse FEED START END` prints one result line; bench_first_pass runs it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import icalendar
import recurring_ical_events

from benchmarks.memory import peak_rss_mb, reset_peak_rss, status_mb

RESULT_PREFIX = "BARE-RESULT "


def parse(feed: Path, start: datetime, end: datetime) -> dict[str, float]:
    """Read, parse and expand the feed over the window; its wall and CPU time and peak memory."""
    rss_start = status_mb("VmRSS") or 0.0
    reset = reset_peak_rss()
    load_average = os.getloadavg()[0]
    started, cpu = time.perf_counter(), time.process_time()
    calendar = icalendar.Calendar.from_ical(feed.read_bytes())
    instances = len(recurring_ical_events.of(calendar).between(start, end))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_start_mb": rss_start,
        "rss_peak_mb": peak_rss_mb(reset),
        "load_average": load_average,
        "instances": instances,
    }


def main(argv: list[str]) -> int:
    feed, start, end = argv
    result = parse(Path(feed), datetime.fromisoformat(start), datetime.fromisoformat(end))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
