"""The ledger on SQLAlchemy Core, over SQLite (default) or PostgreSQL: the parts put together.

Calendar side in `events.py`, sends in `sends.py`, claims in `claims.py`, all over `base.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from daemon.ledger.abc import Ledger, PlansWritten
from daemon.ledger.claims import ClaimStore
from daemon.ledger.events import EventStore
from daemon.ledger.reconcile import EventPlan
from daemon.ledger.sends import SendStore
from daemon.model import Outcome


class SQLAlchemyLedger(EventStore, SendStore, ClaimStore):
    """The ledger in one SQL database; each public method is one transaction."""

    def write_plans(
        self, plans: Sequence[EventPlan], at: datetime, tagged: Mapping[str, Outcome | None] | None = None
    ) -> PlansWritten:
        with self._tx() as conn:
            outcomes = self._note_tags(conn, tagged or {}, at)
            return PlansWritten(self._reconcile(conn, plans, at), outcomes)


def open_ledger(url: str, busy_timeout: timedelta = timedelta(seconds=10)) -> Ledger:
    """Open (creating or upgrading it if need be) the ledger at a SQLAlchemy url."""
    return SQLAlchemyLedger(url, busy_timeout)
