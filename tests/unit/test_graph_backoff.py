"""The pure wait before retrying a throttled Graph request, and the tags Outlook categories stand for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.microsoft.access import parse_retry_after, retry_delay
from daemon.model import CalendarEvent
from daemon.playbook import Tags, event_kind

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_retry_after_in_seconds_or_as_a_date_is_what_we_wait() -> None:
    assert retry_delay(1, "7", NOW) == timedelta(seconds=7)
    assert retry_delay(3, "Tue, 01 Dec 2026 12:00:30 GMT", NOW) == timedelta(seconds=30)
    assert parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", NOW) == timedelta(0)  # already past


def test_without_a_usable_retry_after_the_wait_doubles_up_to_its_cap() -> None:
    assert [retry_delay(n, None, NOW).total_seconds() for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert retry_delay(30, "soon", NOW) == timedelta(seconds=60)


def test_a_category_named_like_a_tag_marks_the_event_with_or_without_its_hash() -> None:
    event = CalendarEvent(uid="u", start=NOW, end=NOW, title="Globex", categories=("Kickoff",))
    assert event_kind(event, Tags()) == "kickoff"
    assert (
        event_kind(CalendarEvent(uid="u", start=NOW, end=NOW, categories=("#closing",)), Tags()) == "closing"
    )
    assert event_kind(CalendarEvent(uid="u", start=NOW, end=NOW, categories=("Red",)), Tags()) is None
    # And it survives the round trip through the ledger's stored form
    assert CalendarEvent.from_dict(event.to_dict()).categories == ("Kickoff",)
