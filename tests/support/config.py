"""followthrough.toml as the tests write it: one template, the parts a test changes as arguments.

Every config names Acme Analytics (acme.example, Europe/Berlin) and calendars owned by Alice; the
transport, the store, the schedule and anything at the end are the test's choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from daemon.config import load
from daemon.errors import ConfigError

# Mail may go out at any hour on any day: tests place their events relative to the real clock.
ALL_HOURS = (
    'business_hours = "00:00-24:00"\nbusiness_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\n'
)
SQLITE = "sqlite:///followthrough.db"  # next to the config


def smtp_table(port: int, *, timeout: float = 10, starttls: bool | None = False, more: str = "") -> str:
    """The keys of [mail.smtp] for a server on 127.0.0.1; `starttls=None` leaves the default."""
    lines = ['host = "127.0.0.1"', f"port = {port}", f"timeout = {timeout}"]
    if starttls is not None:
        lines.append(f"starttls = {'true' if starttls else 'false'}")
    return "\n".join(lines) + "\n" + (more + "\n" if more else "")


def config_toml(
    *,
    calendars: Sequence[tuple[str, str]] = (("sales", "calendar.ics"),),
    owner: str = "alice@acme.example",
    transport: str = "smtp",
    mail: str = "",
    smtp: str | None = None,
    store: str | None = SQLITE,
    team: bool = True,
    schedule: str | None = ALL_HOURS,
    extra: str = "",
) -> str:
    """`calendars` are (name, path) ICS files; `mail` adds keys to [mail], `smtp` is the body of
    [mail.smtp]; `schedule` is the body of [schedule] and `extra` follows it (more keys for it, or
    new tables)."""
    parts = [
        '[company]\nname = "Acme Analytics"\ndomains = ["acme.example"]\ntimezone = "Europe/Berlin"\n',
        *(
            f'[[calendars]]\nname = "{name}"\nsource = "ics"\npath = "{path}"\nowner = "{owner}"\n'
            for name, path in calendars
        ),
        f'[mail]\ntransport = "{transport}"\nfrom = "Followthrough <ft@acme.example>"\n{mail}',
    ]
    if smtp is not None:
        parts.append(f"[mail.smtp]\n{smtp}")
    if store is not None:
        parts.append(f'[store]\nurl = "{store}"\n')
    if team:
        parts.append('[team]\nimplementation = ["Ivy Chen <ivy@acme.example>"]\n')
    if schedule is not None:
        parts.append(f"[schedule]\n{schedule}")
    text = "\n".join(part if part.endswith("\n") else part + "\n" for part in parts)
    return text + ("\n" + extra + "\n" if extra else "")


def write_config(directory: Path, **settings: Any) -> Path:
    """followthrough.toml in `directory` (see `config_toml`); its path."""
    path = directory / "followthrough.toml"
    path.write_text(config_toml(**settings), encoding="utf-8")
    return path


# The least a config may say: the company and the sender. Tests of one table add it after this.
MINIMAL = """
[company]
name = "Acme"
domains = ["acme.example"]

[mail]
from = "Followthrough <ft@acme.example>"
"""


def write_toml(directory: Path, text: str) -> Path:
    """followthrough.toml in `directory`, exactly `text`; its path."""
    path = directory / "followthrough.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    """The message of the ConfigError that loading `path` raises (the test fails if none is raised)."""
    with pytest.raises(ConfigError) as refused:
        load(path)
    return str(refused.value)
