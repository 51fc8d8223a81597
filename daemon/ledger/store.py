"""The ledger on SQLAlchemy Core, over SQLite (default) or PostgreSQL: the parts put together.

Calendar side in `events.py`, sends in `sends.py`, claims in `claims.py`, all over `base.py`.
"""

from __future__ import annotations

from datetime import timedelta

from daemon.ledger.abc import Ledger
from daemon.ledger.claims import ClaimStore
from daemon.ledger.events import EventStore
from daemon.ledger.sends import SendStore


class SQLAlchemyLedger(EventStore, SendStore, ClaimStore):
    """The ledger in one SQL database; each public method is one transaction."""


def open_ledger(url: str, busy_timeout: timedelta = timedelta(seconds=10)) -> Ledger:
    """Open (creating or upgrading it if need be) the ledger at a SQLAlchemy url."""
    return SQLAlchemyLedger(url, busy_timeout)
