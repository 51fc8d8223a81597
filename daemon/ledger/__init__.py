"""The ledger: the one durable record of events, outcomes and every send's life.

Callers use the interface (`Ledger`, in `abc.py`) and open one with `open_ledger`; the rest is the store's.
"""

from __future__ import annotations

from daemon.ledger import moves
from daemon.ledger.abc import (
    CalendarChanges,
    ClaimTerms,
    Filing,
    Handing,
    Known,
    Ledger,
    OutcomeEntry,
    Record,
    StoredEvent,
    Transition,
)
from daemon.ledger.moves import gave_up, put_off
from daemon.ledger.reconcile import EventPlan
from daemon.ledger.schema import SCHEMA_VERSION
from daemon.ledger.store import open_ledger
from daemon.model import SendRecord

__all__ = [
    "SCHEMA_VERSION",
    "CalendarChanges",
    "ClaimTerms",
    "EventPlan",
    "Filing",
    "Handing",
    "Known",
    "Ledger",
    "OutcomeEntry",
    "Record",
    "SendRecord",
    "StoredEvent",
    "Transition",
    "gave_up",
    "moves",
    "open_ledger",
    "put_off",
]
