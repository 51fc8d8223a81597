"""Every real-world calendar in the shared corpus: read without crashing, sane events, nothing silently lost.

The corpus (../shared/corpus/ics/, see its README) holds files from the test suites of icalendar,
recurring-ical-events and khal: Outlook, Google and Thunderbird exports, odd time zones, broken files.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from daemon.errors import SourceError
from daemon.sources import SyncBatch
from daemon.sources.ics import IcsSource
from tests.support.corpus import CORPUS, FILES

NOW = datetime(2026, 1, 1, tzinfo=UTC)
# Wide enough for every date in the corpus (1970s exports to 2030s series).
WINDOW_PAST = timedelta(days=365 * 60)
WINDOW_FUTURE = timedelta(days=365 * 20)
ACCOUNTED_FOR = 0.90  # share of files that must give events or say what is wrong with them

# icalendar warns when it guesses an IANA zone from a vendor TZID such as /mozilla.org/.../Europe/Berlin.
pytestmark = pytest.mark.filterwarnings("ignore:.*globally unique TZID")


@dataclass(frozen=True)
class Outcome:
    batch: SyncBatch | None
    error: SourceError | None


@functools.cache
def sync(name: str) -> Outcome:
    """One first sync of a corpus file; anything but SourceError escapes (and is not cached)."""
    source = IcsSource(
        name,
        path=CORPUS / name,
        default_zone="America/New_York",
        window_past=WINDOW_PAST,
        window_future=WINDOW_FUTURE,
    )
    try:
        return Outcome(source.sync(None, NOW), None)
    except SourceError as exc:
        return Outcome(None, exc)


def one_line(text: str) -> bool:
    return "\r" not in text and "\n" not in text


def says_what_is_wrong(problem: str) -> bool:
    """A problem reads "event UID: what is wrong" (or a whole-file remark): more than a bare name."""
    _, _, what = problem.rpartition(": ")
    return one_line(problem) and bool(what.strip())


def test_the_corpus_is_there() -> None:
    # Given the shared corpus next to the project, then it is found and not empty (else nothing is tested)
    assert CORPUS.is_dir(), f"ICS corpus not found at {CORPUS}: the corpus tests would test nothing"
    assert len(FILES) >= 100, f"only {len(FILES)} calendar files under {CORPUS}"


@pytest.mark.parametrize("name", FILES)
def test_given_a_real_world_calendar_when_first_synced_then_it_gives_sane_events_or_a_named_error(
    name: str,
) -> None:
    # When a corpus file is synced for the first time over a wide window
    outcome = sync(name)  # anything other than SourceError fails the test here

    # Then a calendar that cannot be read at all says which calendar it is
    if outcome.error is not None:
        assert name in str(outcome.error), str(outcome.error)
        assert one_line(str(outcome.error))
        return

    # And every event it gives has an id and aware UTC times in order, and one-line texts
    assert outcome.batch is not None
    for event in outcome.batch.upserted:
        assert event.id.strip(), f"event without id: {event}"
        for moment in (event.start, event.end):
            assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0), f"{event.id}: {moment!r}"
        assert event.start <= event.end, f"{event.id}: ends {event.end} before it starts {event.start}"
        names = [event.title]
        names += [event.organizer.name] if event.organizer else []
        names += [attendee.person.name for attendee in event.attendees]
        assert all(one_line(text) for text in names), f"{event.id}: multi-line text in {names!r}"
    # And every problem names what is wrong, and the state can be stored as the next sync's cursor
    assert all(says_what_is_wrong(p) for p in outcome.batch.problems), outcome.batch.problems
    json.dumps(outcome.batch.state)


def _has(pattern: str, name: str) -> bool:
    text = (CORPUS / name).read_bytes().decode("utf-8", "replace")
    return re.search(pattern, text, re.MULTILINE | re.IGNORECASE) is not None


# Bare VEVENTs whose last event is closed (no BEGIN:VEVENT after the last END:VEVENT).
BARE = [
    n
    for n in FILES
    if not _has(r"^BEGIN:VCALENDAR", n) and _has(r"^END:VEVENT[ \t\r]*$(?![\s\S]*^BEGIN:VEVENT)", n)
]
UNCLOSED = [n for n in FILES if _has(r"^BEGIN:VCALENDAR", n) and not _has(r"^END:VCALENDAR[ \t\r]*$", n)]


def test_the_corpus_has_both_kinds_of_files_without_end_vcalendar() -> None:
    # Given the corpus, then it holds bare-VEVENT exports and calendars never closed (else the two
    # tests below would test nothing)
    assert len(BARE) >= 10 and len(UNCLOSED) >= 3, (BARE, UNCLOSED)


@pytest.mark.parametrize("name", BARE)
def test_given_a_file_of_bare_closed_vevents_then_it_is_read_not_refused(name: str) -> None:
    # Given an export of bare VEVENTs (no VCALENDAR around them, as khal's), each closed with END:VEVENT
    # When synced, then it is read like a calendar, with a note, and not refused as incomplete
    outcome = sync(name)
    assert outcome.error is None, str(outcome.error)
    assert outcome.batch is not None
    assert any("BEGIN:VCALENDAR" in p for p in outcome.batch.problems), outcome.batch.problems


@pytest.mark.parametrize("name", UNCLOSED)
def test_given_a_calendar_never_closed_with_end_vcalendar_then_it_fails_naming_the_file(name: str) -> None:
    # Given a file that opens a VCALENDAR and never closes it: what a download cut short looks like
    # When synced, then it is not read in part (its missing events would read as deleted): it fails,
    # naming the file and saying why, on one line
    outcome = sync(name)
    assert outcome.error is not None, outcome.batch
    message = str(outcome.error)
    assert name in message and "END:VCALENDAR" in message and one_line(message), message


def test_given_the_whole_corpus_then_almost_every_file_gives_events_or_says_what_is_wrong() -> None:
    # Given every corpus file (some legitimately hold no events: to-dos, free/busy, bare time zones)
    assert FILES, f"ICS corpus not found at {CORPUS}"

    # When each is synced
    silent: list[str] = []
    for name in FILES:
        try:
            outcome = sync(name)
        except Exception as exc:  # the per-file test reports the crash itself; here it just does not count
            silent.append(f"{name} (crashed: {type(exc).__name__})")
            continue
        if outcome.error is not None and name in str(outcome.error):
            continue
        if outcome.batch is not None and (
            outcome.batch.upserted or any(says_what_is_wrong(p) for p in outcome.batch.problems)
        ):
            continue
        silent.append(name)

    # Then at least 90% either give events or name what is wrong: a reader that silently reads nothing fails
    share = 1 - len(silent) / len(FILES)
    assert share >= ACCOUNTED_FOR, (
        f"only {share:.0%} of {len(FILES)} corpus files gave events or a named problem; "
        f"silent: {', '.join(silent)}"
    )
