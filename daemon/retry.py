"""When to try a failed send again: a pure function, so the policy is easy to test and to trust."""

from __future__ import annotations

from datetime import timedelta

BASE = timedelta(minutes=1)
CAP = timedelta(hours=6)


def compute_backoff(attempt: int, base: timedelta = BASE, cap: timedelta = CAP) -> timedelta:
    """The wait after the `attempt`-th failed try (1-based): 1, 2, 4, 8 … minutes, at most `cap`."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    return min(cap, base * 2 ** min(attempt - 1, 32))
