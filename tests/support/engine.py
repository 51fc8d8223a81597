"""An Engine in this process against a real SMTP server: calls due at a moment T0, and the config.

Time is moved by hand (`tick(T0)`, then `dispatch_due(T0 + ...)`): see tests/integration/test_smtp_faults.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from daemon.config import load
from daemon.engine import Engine
from tests.support.config import ALL_HOURS, smtp_table, write_config
from tests.support.ics import calendar, vevent

H = timedelta(hours=1)


@dataclass
class Calls:
    """Calls in the calendar whose first mail is due at T0; `keys` are those sends."""

    events: list[str] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)

    def closing(self, uid: str, t0: datetime, customers: list[tuple[str, str]]) -> str:
        """A closing call 23 hours ahead: the prep prompt to the rep is due now."""
        self.events.append(
            vevent(uid, t0 + 23 * H, t0 + 24 * H, f"{uid} terms #closing", attendees=tuple(customers))
        )
        self.keys.add(f"closing-prep:{uid}")
        return f"closing-prep:{uid}"

    def lost(self, uid: str, t0: datetime, customers: list[tuple[str, str]]) -> str:
        """A closing call tagged #lost that ended 25 hours ago: the thank-you to the customers is due."""
        self.events.append(
            vevent(
                uid, t0 - 26 * H, t0 - 25 * H, f"{uid} decision #closing #lost", attendees=tuple(customers)
            )
        )
        self.keys.add(f"lost-thank-you:{uid}")
        return f"lost-thank-you:{uid}"

    def many(self, t0: datetime, closing: int, lost: int) -> None:
        for i in range(closing):
            self.closing(f"deal-{i}", t0, [(f"buyer@deal{i}.example", f"Buyer {i}")])
        for i in range(lost):
            self.lost(f"lost-{i}", t0, [(f"buyer@lost{i}.example", f"Lost Buyer {i}")])


def start_engine(
    directory: Path,
    port: int,
    calls: Calls,
    *,
    engines: list[Engine] | None = None,
    retry_base: str = "1m",
    timeout: float = 5,
    starttls: bool | None = False,
    smtp: str = "",
    mail: str = "",
    extra: str = "",
) -> Engine:
    """A followthrough process sending through 127.0.0.1:`port`; starting it again in the same folder
    is a restart. `smtp` and `mail` add keys to those tables, `extra` tables at the end; the engine
    is added to `engines` (closed at the test's end)."""
    write_config(
        directory,
        mail=mail,
        smtp=smtp_table(port, timeout=timeout, starttls=starttls, more=smtp),
        team=False,
        schedule=ALL_HOURS + f'retry_base = "{retry_base}"\n',
        extra=extra,
    )
    (directory / "calendar.ics").write_text(calendar(*calls.events), encoding="utf-8")
    engine = Engine(load(directory / "followthrough.toml"))
    if engines is not None:
        engines.append(engine)
    return engine
