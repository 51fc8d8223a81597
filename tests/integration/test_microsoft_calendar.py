"""Outlook calendars through Graph delta queries, over real HTTPS against the local fake: paging and
empty pages, `@removed`, changes twice or late, 410 resync, the window re-initialised, throttling,
categories as tags, zones, and MSAL's two requests to the authority and none elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.errors import SourceError
from daemon.model import Outcome
from daemon.playbook import Policy, Tags, classify, tagged_outcome
from daemon.sources.microsoft import MicrosoftCalendarSource
from daemon.sources.microsoft_events import EventMapper
from tests.support.graph_fake import FakeGraph, graph_time
from tests.support.microsoft import access_for

REP = "alice@acme.example"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.usefixtures("microsoft_secret")


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[FakeGraph]:
    with FakeGraph(directory=tmp_path / "ca", max_page=2) as fake:
        yield fake


def meeting(ical_uid: str, start: datetime, subject: str = "Globex", **more: Any) -> dict[str, Any]:
    return {
        "iCalUId": ical_uid,
        "subject": subject,
        "start": graph_time(start),
        "end": graph_time(start + timedelta(hours=1)),
        "organizer": {"emailAddress": {"address": REP, "name": "Alice"}},
        "attendees": [{"type": "required", "emailAddress": {"address": "dana@globex.com", "name": "Dana"}}],
        **more,
    }


def source(graph: FakeGraph, slept: list[float] | None = None) -> MicrosoftCalendarSource:
    return MicrosoftCalendarSource(
        "outlook", access=access_for(graph, slept), mailbox=REP, window_future=timedelta(days=60)
    )


def test_every_page_is_followed_empty_ones_too_and_a_quiet_poll_costs_one_request(graph: FakeGraph) -> None:
    # Given five meetings, two per page, and an empty page in the round
    for i in range(5):
        graph.put_event(REP, meeting(f"m{i}", NOW + timedelta(days=i + 1)))
    graph.empty_pages = 1
    cal = source(graph)
    # When first synced, then every meeting is listed once
    first = cal.sync(None, NOW)
    assert sorted(e.id for e in first.upserted) == [f"m{i}" for i in range(5)]
    assert len(graph.delta_calls()) == 4  # three pages of events and the empty one
    # When nothing changed, then one request, nothing reported, nothing to store
    graph.clear_log()
    quiet = cal.sync(first.state, NOW + timedelta(minutes=5))
    assert (quiet.upserted, quiet.removed, quiet.unchanged) == ([], [], True)
    assert len(graph.delta_calls()) == 1 and graph.token_requests == 1


def test_removed_entries_changes_twice_and_moves_out_of_the_window(graph: FakeGraph) -> None:
    a = graph.put_event(REP, meeting("a", NOW + timedelta(days=1)))
    b = graph.put_event(REP, meeting("b", NOW + timedelta(days=2)))
    c = graph.put_event(REP, meeting("c", NOW + timedelta(days=3)))
    cal = source(graph)
    first = cal.sync(None, NOW)
    # When one is deleted, one moves beyond the window, one moves within it, each change sent twice
    graph.duplicate_changes = True
    graph.delete_event(REP, a["id"])
    graph.update_event(
        REP,
        b["id"],
        start=graph_time(NOW + timedelta(days=90)),
        end=graph_time(NOW + timedelta(days=90, hours=1)),
    )
    graph.update_event(
        REP,
        c["id"],
        start=graph_time(NOW + timedelta(days=4)),
        end=graph_time(NOW + timedelta(days=4, hours=1)),
    )
    changes = cal.sync(first.state, NOW + timedelta(minutes=5))
    # Then the deleted and the departed are removed, the moved one upserted, each once
    assert changes.removed == ["a", "b"]
    assert [(e.id, e.start) for e in changes.upserted] == [("c", NOW + timedelta(days=4))]


def test_an_older_version_arriving_late_is_ignored(graph: FakeGraph) -> None:
    old = graph.put_event(REP, meeting("a", NOW + timedelta(days=1)))
    cal = source(graph)
    first = cal.sync(None, NOW)
    newer = graph.update_event(REP, old["id"], subject="Globex moved")
    second = cal.sync(first.state, NOW + timedelta(minutes=1))
    assert [e.title for e in second.upserted] == ["Globex moved"]
    # When the older version comes again (out of order), then it changes nothing
    graph.put_event(REP, {**old, "lastModifiedDateTime": "ignored"})
    graph.mailbox(REP).events[old["id"]]["lastModifiedDateTime"] = old["lastModifiedDateTime"]
    assert newer["lastModifiedDateTime"] > old["lastModifiedDateTime"]
    third = cal.sync(second.state, NOW + timedelta(minutes=2))
    assert third.upserted == [] and third.removed == []


def test_a_forgotten_delta_token_resyncs_without_losing_or_repeating(graph: FakeGraph) -> None:
    a = graph.put_event(REP, meeting("a", NOW + timedelta(days=1)))
    graph.put_event(REP, meeting("b", NOW + timedelta(days=2)))
    cal = source(graph)
    first = cal.sync(None, NOW)
    # Given Graph forgets the token, and meanwhile one meeting was deleted and one added
    graph.expire_delta_tokens()
    graph.delete_event(REP, a["id"])
    graph.put_event(REP, meeting("c", NOW + timedelta(days=3)))
    again = cal.sync(first.state, NOW + timedelta(minutes=5))
    # Then the whole window is read again: the deleted one removed, the others (re)stated
    assert again.removed == ["a"]
    assert sorted(e.id for e in again.upserted) == ["b", "c"]
    assert 410 in [c.status for c in graph.delta_calls()]
    # And the next poll is incremental again
    graph.clear_log()
    assert cal.sync(again.state, NOW + timedelta(minutes=10)).unchanged
    assert len(graph.delta_calls()) == 1


def test_the_window_is_read_again_when_it_has_moved_a_day_past_the_token(graph: FakeGraph) -> None:
    cal = source(graph)
    first = cal.sync(None, NOW)
    # Given a meeting beyond the first window, which no delta of that token will ever bring
    graph.put_event(REP, meeting("far", NOW + timedelta(days=61, hours=12)))
    assert cal.sync(first.state, NOW + timedelta(hours=1)).upserted == []
    # When the window has moved two days, then the token is re-initialised and the meeting found
    later = cal.sync(first.state, NOW + timedelta(days=2))
    assert [e.id for e in later.upserted] == ["far"]
    assert "startDateTime" in graph.delta_calls()[-1].query


def test_throttling_honours_retry_after_and_then_backs_off(graph: FakeGraph) -> None:
    graph.put_event(REP, meeting("a", NOW + timedelta(days=1)))
    graph.fail(429, times=1, path="/calendarView/delta", retry_after="7")
    graph.fail(503, times=1, path="/calendarView/delta")
    slept: list[float] = []
    batch = source(graph, slept).sync(None, NOW)
    assert [e.id for e in batch.upserted] == ["a"]
    assert slept == [7.0, 2.0]  # Retry-After, then the second attempt's backoff


def test_a_long_retry_after_fails_the_pass_and_keeps_the_state(graph: FakeGraph) -> None:
    graph.fail(429, times=1, path="/calendarView/delta", retry_after="3600")
    with pytest.raises(SourceError, match="throttling"):
        source(graph).sync(None, NOW)


def test_a_mailbox_outside_the_rbac_scope_fails_naming_the_fix(graph: FakeGraph) -> None:
    graph.scope = set()
    with pytest.raises(SourceError, match="RBAC"):
        source(graph).sync(None, NOW)


def test_categories_count_as_tags_and_the_events_zone_is_kept(graph: FakeGraph) -> None:
    graph.put_event(
        REP,
        meeting(
            "a",
            NOW + timedelta(days=1),
            subject="Globex: final terms",
            categories=["Closing", "Won", "Blue category"],
            originalStartTimeZone="Eastern Standard Time",
            body={
                "contentType": "html",
                "content": "<html><body><p>Agenda<br>#deal:globex</p></body></html>",
            },
        ),
    )
    [event] = source(graph).sync(None, NOW).upserted
    assert event.timezone == "America/New_York"
    assert event.description == "Agenda\n#deal:globex"
    found = classify(event, Policy(company_domains=frozenset({"acme.example"})))
    assert found is not None
    assert (found.kind, found.deal.name) == ("closing", "globex")
    assert tagged_outcome(event, Tags()) is Outcome.WON


def test_an_instance_carrying_betas_series_uid_gets_the_ics_id_without_reading_its_master(
    graph: FakeGraph,
) -> None:
    # Given an occurrence as Graph's beta endpoint gives it: with `uid`, the series' own
    start = NOW + timedelta(days=1)
    graph.put_event(
        REP,
        meeting(
            "040000008200E001",
            start,
            type="occurrence",
            uid="series-uid@acme.example",
            seriesMasterId="AAMk-master",
            originalStart=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ),
    )
    # Then its id is that UID and its original start, and no master is asked for
    [event] = source(graph).sync(None, NOW).upserted
    assert event.id == f"series-uid@acme.example/{start:%Y%m%dT%H%M%SZ}"
    assert graph.calls("/events/") == []


def test_an_instance_whose_master_is_gone_is_named_unusable(graph: FakeGraph) -> None:
    # Given an occurrence whose series master Graph no longer has
    start = NOW + timedelta(days=1)
    graph.put_event(
        REP,
        meeting(
            "040000008200E001",
            start,
            type="occurrence",
            seriesMasterId="AAMk-gone",
            originalStart=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ),
    )
    # Then it is reported unusable, saying why, and nothing is upserted under a wrong id
    batch = source(graph).sync(None, NOW)
    assert batch.upserted == [] and batch.unusable == ["040000008200E001"]
    assert "master's iCalUId is unknown" in batch.problems[0]


def test_an_all_day_occurrence_gets_the_date_outlook_shows() -> None:
    # Given all-day occurrences whose originalStart is local midnight in UTC, east and west of Greenwich,
    # or a bare UTC midnight
    mapper = EventMapper("Europe/Berlin")

    def rid(original: str, zone: str) -> str | None:
        item = {
            "type": "occurrence",
            "isAllDay": True,
            "originalStart": original,
            "originalStartTimeZone": zone,
        }
        return mapper.recurrence_id(item)

    # Then each is the ICS source's date id of 3 December
    assert rid("2026-12-02T23:00:00Z", "W. Europe Standard Time") == "20261203"
    assert rid("2026-12-03T05:00:00Z", "Eastern Standard Time") == "20261203"
    assert rid("2026-12-03T00:00:00Z", "Eastern Standard Time") == "20261203"


def test_msal_asks_only_the_authority_twice_even_with_requests_ca_bundle_set(
    graph: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    cal = source(graph)
    cal.sync(None, NOW)
    cal.sync(None, NOW)  # the token is cached: no new sign-in
    authority = [r.path for r in graph.requests if not r.path.startswith("/v1.0/")]
    assert authority == [
        "/contoso-tenant/v2.0/.well-known/openid-configuration",
        "/contoso-tenant/oauth2/v2.0/token",
    ]
