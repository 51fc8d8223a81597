"""The backoff between retries: a pure function."""

from __future__ import annotations

from datetime import timedelta

import pytest

from daemon.retry import compute_backoff


def test_backoff_doubles_from_the_base() -> None:
    waits = [compute_backoff(n) for n in range(1, 6)]
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16)]


def test_backoff_is_capped_and_never_overflows() -> None:
    assert compute_backoff(20) == timedelta(hours=6)
    assert compute_backoff(10_000) == timedelta(hours=6)


def test_backoff_with_another_base() -> None:
    assert compute_backoff(3, base=timedelta(seconds=2)) == timedelta(seconds=8)


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        compute_backoff(0)
