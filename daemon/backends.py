"""Backends chosen in one place: calendar sources and mail transports by their name in the config.

A new backend is a new module whose class has `from_config`, plus one line in an index below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from daemon.config import Settings
from daemon.errors import ConfigError

if TYPE_CHECKING:
    from daemon.google.access import GoogleAccess
    from daemon.ledger import Ledger
    from daemon.mail import Transport
    from daemon.microsoft.access import MicrosoftAccess
    from daemon.sources import CalendarSource

# name in the config -> "module:class"; imported only when a config names it.
SOURCES = {
    "ics": "daemon.sources.ics:IcsSource",
    "google": "daemon.sources.google:GoogleCalendarSource",
    "microsoft": "daemon.sources.microsoft:MicrosoftCalendarSource",
}
TRANSPORTS = {
    "outbox": "daemon.mail.outbox:OutboxTransport",
    "smtp": "daemon.mail.smtp:SmtpTransport",
    "gmail": "daemon.mail.gmail:GmailTransport",
    "microsoft": "daemon.mail.graph:GraphTransport",
}


class SourceBackend(Protocol):
    def from_config(self, calendar: Any, wiring: Wiring) -> list[CalendarSource]:
        """The sources one `[[calendars]]` entry describes: one per account it lists."""


class TransportBackend(Protocol):
    def from_config(self, wiring: Wiring) -> Transport:
        """The transport `[mail]` describes."""


@dataclass
class Wiring:
    """What backends are built from: the settings, and what several of them share."""

    settings: Settings
    ledger: Ledger | None = None
    _google: GoogleAccess | None = field(default=None, init=False, repr=False)
    _microsoft: MicrosoftAccess | None = field(default=None, init=False, repr=False)

    @property
    def google(self) -> GoogleAccess:
        """One access for every Google backend, so that they share its per-thread clients."""
        if self._google is None:
            from daemon.google.access import GoogleAccess

            google = self.settings.google_files()
            assert google is not None  # the config asks for [google] when a backend uses Google
            self._google = GoogleAccess(google)
        return self._google

    @property
    def microsoft(self) -> MicrosoftAccess:
        """One access for every Microsoft backend: one MSAL client, one token cache, one connection pool."""
        if self._microsoft is None:
            from daemon.microsoft.access import MicrosoftAccess

            microsoft = self.settings.microsoft_files()
            assert microsoft is not None  # the config asks for [microsoft] when a backend uses it
            self._microsoft = MicrosoftAccess(microsoft)
        return self._microsoft

    @property
    def sent_count(self) -> Callable[[str, datetime], int] | None:
        """How many messages the ledger recorded as sent by a sender since a moment, if there is one."""
        ledger, service = self.ledger, self.settings.sender.email
        if ledger is None:
            return None
        return lambda sender, since: ledger.sent_count(sender, since, service)


def _load(index: dict[str, str], name: str, key: str) -> Any:
    if name not in index:
        raise ConfigError(f"{key}: unknown backend {name!r} (known: {', '.join(sorted(index))})")
    module, attribute = index[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def make_sources(wiring: Wiring) -> list[CalendarSource]:
    sources: list[CalendarSource] = []
    for i, calendar in enumerate(wiring.settings.calendars):
        backend = cast(SourceBackend, _load(SOURCES, calendar.source, f"calendars.{i}.source"))
        sources += backend.from_config(calendar, wiring)
    return sources


def make_transport(wiring: Wiring) -> Transport:
    name = wiring.settings.mail.transport
    return cast(TransportBackend, _load(TRANSPORTS, name, "mail.transport")).from_config(wiring)
