"""The ICS feed benchmarks at 300 events, in-process: the feed parses, the passes and the baseline do what
they claim.

The figures are not checked here (too small and too noisy); `python -m benchmarks.bench_ics_feed` is. The
first-pass benchmark runs whole once, at 200 events, its passes in child processes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_first_pass
from benchmarks.bare_parse import parse
from benchmarks.bench_first_pass import WINDOW
from benchmarks.bench_ics_feed import Tagging, generate, prepare, run_phase


def test_generator_is_deterministic_and_edits_one_percent() -> None:
    one, two = generate(300), generate(300)
    assert one == two
    assert len(one.events) == 300
    assert one.edited == 3
    assert sum(a != b for a, b in zip(one.events, one.changed, strict=True)) == 3
    # And the export after that edits 1% others
    again = [i for i, (a, b) in enumerate(zip(one.changed, one.again, strict=True)) if a != b]
    assert len(again) == 3
    assert all(one.events[i] == one.changed[i] for i in again)


def test_three_passes(tmp_path: Path) -> None:
    work = prepare(tmp_path, 300)

    first = run_phase(work, "first")
    assert first.report is not None
    calendar = first.report.calendars[0]
    assert calendar.error is None
    assert calendar.problems == []
    assert not calendar.unchanged
    assert calendar.new > 300  # weekly series add their instances
    assert (calendar.changed, calendar.gone) == (0, 0)

    unchanged = run_phase(work, "unchanged")
    assert unchanged.report is not None
    assert unchanged.report.calendars[0].unchanged
    assert unchanged.report.replanned == 0

    changed = run_phase(work, "changed")  # 1% of events edited, every DTSTAMP rewritten
    assert changed.report is not None
    calendar = changed.report.calendars[0]
    assert calendar.problems == []
    assert not calendar.unchanged
    touched = calendar.new + calendar.changed + calendar.gone
    # Each edit touches one event, or a weekly series of ten moved: ten gone and ten new.
    assert 0 < touched <= 20 * work.edited
    assert changed.report.replanned == touched
    # And the same process read the export after that: a pass that changed something
    assert changed.again_seconds is not None and changed.again_seconds > 0


def test_tagging_mixes() -> None:
    # Given the normal and the heavy mix, When generated, Then about 2.5% and half are closing calls.
    mixes: tuple[tuple[Tagging, float, float], ...] = (("normal", 0.01, 0.05), ("heavy", 0.45, 0.55))
    for tagging, low, high in mixes:
        feed = generate(2000, tagging=tagging)
        share = sum("#closing" in e.summary for e in feed.events) / len(feed.events)
        assert low < share < high, (tagging, share)


def test_bare_parse_reads_the_events_followthrough_reads(tmp_path: Path) -> None:
    # The baseline must do the same reading: as many instances in the window as the first pass stores.
    work = prepare(tmp_path, 300)
    bare = parse(work.export("first"), *WINDOW)
    first = run_phase(work, "first")
    assert bare["instances"] == first.new > 300
    assert bare["rss_peak_mb"] > 0


def test_first_pass_benchmark_runs_in_rounds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a tiny normal feed, when the first-pass benchmark runs it in two rounds
    figures = tmp_path / "figures.json"
    assert (
        bench_first_pass.main(
            ["--sizes", "200", "--tagging", "normal", "--rounds", "2", "--json", str(figures)]
        )
        == 0
    )

    # Then each round ran the first pass and the two after it, and the table says how many rounds
    (size,) = json.loads(figures.read_text(encoding="utf-8"))
    assert [len(size[runs]) for runs in ("first_runs", "unchanged_runs", "changed_runs")] == [2, 2, 2]
    assert all(run["changed"] > 0 for run in size["changed_runs"])
    assert "| 200 | 2 |" in capsys.readouterr().out
