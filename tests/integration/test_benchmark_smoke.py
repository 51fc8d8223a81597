"""The ICS feed benchmark at 300 events, in-process: its feed parses, and its three passes do what they claim.

The figures are not checked here (too small and too noisy); `python -m benchmarks.bench_ics_feed` is.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_ics_feed import generate, prepare, run_phase


def test_generator_is_deterministic_and_edits_one_percent() -> None:
    one, two = generate(300), generate(300)
    assert one == two
    assert len(one.events) == 300
    assert one.edited == 3
    assert sum(a != b for a, b in zip(one.events, one.changed, strict=True)) == 3


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
