"""Time-zone names as calendars write them, turned into IANA names.

Outlook and Exchange write Windows names (`Eastern Standard Time`), libical and Lightning write
"globally unique" ids (`/freeassociation.sourceforge.net/Europe/Berlin`); icalendar keeps the
maintained Windows-to-IANA table, so no table of our own goes stale.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from icalendar.cal import Timezone
from icalendar.timezone import tzp
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON
from icalendar.timezone.zoneinfo import ZONEINFO


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


_MADE_AT_MOST = 256  # zones of calendars' own making, kept
_made: OrderedDict[bytes, tzinfo] = OrderedDict()  # by their VTIMEZONE's text, the latest used last


class _Zones(ZONEINFO):
    """icalendar's zoneinfo provider, with two changes.

    It tells whether a VTIMEZONE's TZID is a zone it has without listing every zone on disk first:
    `zoneinfo.available_timezones` opens each of the 600 files to read its first bytes, 10-25 ms that
    every process paid at the first VTIMEZONE it read. And it makes one zone of one definition: a
    calendar's VTIMEZONE read again (at every sync, see `own_zones`) is the same object, which
    `zone_like`'s cache knows.
    """

    def knows_timezone_id(self, tzid: str) -> bool:
        # The same answer as `tzid in zoneinfo.available_timezones()` (tests/integration/test_zones.py
        # compares them over every path under the zone directory), which leaves these out.
        if tzid == "posixrules" or tzid.startswith(("right/", "posix/")):
            return False
        try:
            ZoneInfo(tzid)
        except (ValueError, OSError, KeyError):  # not a key, a directory, not a zone file, no such zone
            return False
        return True

    def create_timezone(self, tz: Timezone) -> tzinfo:  # type: ignore[override]  # as ZONEINFO has it
        definition = tz.to_ical()
        made = _made.get(definition)
        if made is None:
            made = _made[definition] = super().create_timezone(tz)
            if len(_made) > _MADE_AT_MOST:
                _made.popitem(last=False)
        else:
            _made.move_to_end(definition)
        return made


_reading = threading.Lock()
KNOWN = _Zones()


@contextmanager
def own_zones() -> Iterator[None]:
    """While a calendar is read: icalendar knows its VTIMEZONEs, and no other calendar's.

    icalendar keeps one table of zones for the whole process, and in it the first VTIMEZONE it read
    under each TZID: Exchange names every zone of its own making "Customized Time Zone", so a second
    calendar's events were read in the first one's zone, hours off. A fresh provider starts an empty
    table; one calendar is read at a time, and none is left in the table after it.
    """
    with _reading:
        tzp.use(_Zones())
        try:
            yield
        finally:
            tzp.use(_Zones())


# One IANA zone for each Windows zone: a short list that covers the world's distinct rule sets.
_CANDIDATES = tuple(dict.fromkeys(WINDOWS_TO_OLSON.values()))


def _offsets(zone: tzinfo, year: int) -> tuple[timedelta | None, ...]:
    """The zone's UTC offset at noon UTC of every day of the year before, of, and after `year`."""
    return tuple(moment.astimezone(zone).utcoffset() for moment in _days(year))


def _days(year: int) -> list[datetime]:
    start = datetime(year - 1, 1, 1, 12, tzinfo=UTC)
    return [start + timedelta(days=day) for day in range(3 * 365)]


@functools.lru_cache(maxsize=1024)
def _candidate_offsets(key: str, year: int) -> tuple[timedelta | None, ...]:
    return _offsets(ZoneInfo(key), year)


def _same_hours(zone: tzinfo, other: tzinfo, year: int, offsets: tuple[timedelta | None, ...]) -> bool:
    """Whether two zones that agree day by day also change their clocks in the same hour."""
    days = _days(year)
    for i in range(1, len(offsets)):
        if offsets[i] != offsets[i - 1]:
            hours = [days[i] - timedelta(hours=h) for h in range(24)]
            if any(m.astimezone(zone).utcoffset() != m.astimezone(other).utcoffset() for m in hours):
                return False
    return True


@functools.lru_cache(maxsize=256)
def zone_like(zone: tzinfo, year: int) -> str | None:
    """The IANA zone that keeps the same time as `zone` around `year`, clock changes included: for a
    VTIMEZONE named freely ("(UTC-05:00) Eastern Time (US & Canada)", "Customized Time Zone") by
    Exchange. Of zones that keep the same time, the first in the Windows table."""
    try:
        wanted = _offsets(zone, year)
        return next(
            (
                key
                for key in _CANDIDATES
                if _candidate_offsets(key, year) == wanted and _same_hours(zone, ZoneInfo(key), year, wanted)
            ),
            None,
        )
    except (ValueError, OverflowError, TypeError):  # a VTIMEZONE whose rules cannot be computed
        return None
