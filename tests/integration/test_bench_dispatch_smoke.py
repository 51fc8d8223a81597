"""The dispatch benchmark at 30 sends: its calendar plans what it says, and both contenders send it all.

The figures are not checked here (too small and too noisy); `python -m benchmarks.bench_dispatch` is.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from benchmarks.bench_dispatch import KINDS, STAGES, TARGET, calendar, run, table


def test_the_calendar_has_the_sends_asked_for_of_every_kind() -> None:
    text, due = calendar(30, datetime(2026, 11, 24, 12, tzinfo=UTC))
    assert due == 30
    for kind in KINDS:
        assert f"UID:{kind}-" in text


def test_a_round_sends_every_message_through_both_contenders() -> None:
    result = run(30, rounds=1, store=None, profile=None, keep=False)
    (baseline,), (ours,) = result.baseline, result.ours
    assert baseline.messages == ours.messages == 30  # and the server got each of them (checked by run)
    # The ledger's transactions are counted: about one commit a send, a read a batch of ten
    assert 30 <= ours.commits <= 30 + 2 * 3 + 3
    assert 1 <= ours.reads <= 3 + 4
    # A round of its own says where the CPU went: every stage was reached, and the parts fit the whole
    assert set(result.stages) == {*STAGES, "rest"}
    assert all(result.stages[stage] > 0 for stage in STAGES)
    assert result.stages["rest"] >= -1e-6  # the stages are timed apart, each within the pass's time
    # The budget: the cores' time for a message at the target's pace, less the server's lesser share
    server = min(baseline.per_send(baseline.server_cpu), ours.per_send(ours.server_cpu))
    assert math.isclose(result.budget(), 1000 * (result.cores / (TARGET * baseline.rate) - server))
    assert "CPU budget per send at the target, " in table(result)


def test_a_slower_server_without_pipelining_still_gets_every_message() -> None:
    result = run(10, rounds=1, store=None, profile=None, keep=False, latency_ms=2, pipelining=False)
    assert result.server.startswith("aiosmtpd without PIPELINING, 2 ms a round trip away (a NOOP")
    assert result.baseline[0].messages == result.ours[0].messages == 10
