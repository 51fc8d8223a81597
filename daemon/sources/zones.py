"""Time-zone names as calendars write them, turned into IANA names.

Outlook and Exchange write Windows names (`Eastern Standard Time`), libical and Lightning write
"globally unique" ids (`/freeassociation.sourceforge.net/Europe/Berlin`); icalendar keeps the
maintained Windows-to-IANA table, so no table of our own goes stale.
"""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo

from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON


@functools.lru_cache(maxsize=512)
def iana_zone(name: str | None) -> str | None:
    """The IANA name of a calendar's zone name, or None if it names no zone we know."""
    if not name:
        return None
    cleaned = name.strip().strip('"').strip()
    candidates = [cleaned.strip("/"), WINDOWS_TO_OLSON.get(cleaned, "")]
    if cleaned.startswith("/"):  # /vendor/Area/City: the longest IANA-looking tail
        parts = cleaned.strip("/").split("/")
        candidates += ["/".join(parts[i:]) for i in range(1, len(parts))]
    for candidate in candidates:
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate).key
        except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            continue
    return None
