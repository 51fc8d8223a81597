"""The cyclic garbage collector, eased while a pass builds many short-lived objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def eased() -> Iterator[None]:
    """A sync builds a calendar's events (a few hundred thousand objects for a large feed), a dispatch
    pass the email package's header trees, none in cycles that outlive them: at the default threshold
    the cyclic collector walks them again and again as they pile up, 7–9% of a pass for nothing. It runs
    a hundred times less often meanwhile, not never: a long pass still has its stray cycles collected."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 70_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
