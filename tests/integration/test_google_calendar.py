"""GoogleCalendarSource against FakeGoogle: the real google-api-python-client and google-auth, over real
HTTP on 127.0.0.1, with OAuth tokens and a service account refreshed at the fake's token endpoint.

Only the library's backoff sleep is patched (recorded instead of waited); every answer is the fake's.
Every sync gets an explicit `now`; nothing reads the clock.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import google.oauth2.credentials
import googleapiclient.http
import pytest

from daemon.config.sections import GoogleConfig
from daemon.errors import SourceError
from daemon.google.access import GoogleAccess
from daemon.model import EventStatus, Kind, Outcome
from daemon.playbook import Tags, event_kind, tagged_outcome
from daemon.sources import SyncBatch
from daemon.sources.google import GoogleCalendarSource
from daemon.sources.ics import IcsSource
from tests.support.google_fake import FakeGoogle, when

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, four weeks before the EU goes to summer time
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
BERLIN = ZoneInfo("Europe/Berlin")
ALICE = "alice@acme.example"
BOB = "bob@acme.example"
DANA = "dana@globex.com"


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    with FakeGoogle() as server:
        # google-auth ignores the token_uri stored in an authorized-user file and always refreshes at
        # Google's endpoint (a service-account key's token_uri is still honoured): point it here.
        monkeypatch.setattr(google.oauth2.credentials, "_GOOGLE_OAUTH2_TOKEN_ENDPOINT", server.token_uri)
        yield server


@pytest.fixture(autouse=True)
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The library's backoff waits, recorded instead of slept: the retries themselves are real."""
    slept: list[float] = []
    monkeypatch.setattr(googleapiclient.http.time, "sleep", slept.append)
    return slept


def oauth_access(tmp_path: Path, fake: FakeGoogle, *accounts: str) -> GoogleAccess:
    token_dir = tmp_path / "tokens"
    token_dir.mkdir(exist_ok=True)
    for account in accounts or (ALICE,):
        (token_dir / f"{account}.json").write_text(json.dumps(fake.authorized_user(account)))
    return GoogleAccess(GoogleConfig(token_dir=token_dir, api_endpoint=fake.url))


def source(access: GoogleAccess, account: str = ALICE, **options: Any) -> GoogleCalendarSource:
    return GoogleCalendarSource(f"google:{account}", access=access, account=account, **options)


def meeting(
    summary: str,
    start: datetime,
    length: timedelta = HOUR,
    *,
    zone: str | None = "Europe/Berlin",
    **fields: Any,
) -> dict[str, Any]:
    return {
        "summary": summary,
        "start": when(start, zone),
        "end": when(start + length, zone),
        "organizer": {"email": ALICE, "displayName": "Alice Moreno", "self": True},
        "attendees": [
            {"email": ALICE, "displayName": "Alice Moreno", "responseStatus": "accepted", "organizer": True},
            {"email": DANA, "displayName": "Dana Fox", "responseStatus": "needsAction"},
        ],
        **fields,
    }


def ids(batch: SyncBatch) -> list[str]:
    return sorted(e.id for e in batch.upserted)


# -- full and incremental sync --------------------------------------------------------------------
def test_first_sync_reads_the_whole_window_page_by_page(tmp_path: Path, fake: FakeGoogle) -> None:
    # Given five meetings in the window, one long past and one beyond it, and pages of two events
    fake.max_page = 2
    inside = [fake.put_event(ALICE, meeting(f"Call {n}", NOW + n * DAY)) for n in range(5)]
    fake.put_event(ALICE, meeting("Old call", NOW - 60 * DAY))
    fake.put_event(ALICE, meeting("Far call", NOW + 500 * DAY))
    calendar = source(oauth_access(tmp_path, fake))

    # When it syncs for the first time
    batch = calendar.sync(None, NOW)

    # Then every page was read, and only the window's events came back
    assert ids(batch) == sorted(e["iCalUID"] for e in inside)
    assert batch.removed == [] and batch.problems == [] and not batch.unchanged
    lists = fake.event_lists()
    assert len(lists) == 3
    first = lists[0].query
    assert first["timeMin"] == "2026-01-31T12:00:00Z" and first["timeMax"] == "2027-04-06T12:00:00Z"
    assert (
        first["singleEvents"] == "true" and first["showDeleted"] == "true" and first["maxResults"] == "2500"
    )
    assert "pageToken" not in first and all("pageToken" in r.query for r in lists[1:])
    assert batch.state["token"]


def test_an_event_becomes_a_calendar_event_like_the_ics_source_makes(
    tmp_path: Path, fake: FakeGoogle
) -> None:
    # Given a meeting with a room, an optional guest and a messy title
    start = datetime(2026, 3, 4, 15, 0, tzinfo=BERLIN)
    item = meeting(
        "Globex\nterms  #closing",
        start,
        description="x" * 30_000,
        iCalUID="globex-terms@acme.example",
        attendees=[
            {"email": ALICE, "displayName": "Alice Moreno", "responseStatus": "accepted"},
            {"email": "Dana@Globex.com", "displayName": "Dana Fox", "responseStatus": "tentative"},
            {"email": "lee@globex.com", "responseStatus": "declined", "optional": True},
            {"email": "room-4@resource.calendar.google.com", "displayName": "Room 4", "resource": True},
            {"displayName": "No address"},
        ],
    )
    fake.put_event(ALICE, item)

    # When it is read
    (event,) = source(oauth_access(tmp_path, fake)).sync(None, NOW).upserted

    # Then it has the ICS source's shape: UTC times, IANA zone, clean title, capped description
    assert event.id == "globex-terms@acme.example" and event.recurrence_id is None
    assert event.start == datetime(2026, 3, 4, 14, 0, tzinfo=UTC) and event.end == event.start + HOUR
    assert event.timezone == "Europe/Berlin" and not event.all_day
    assert event.title == "Globex terms #closing"
    assert len(event.description) == 20_000
    assert event.organizer is not None
    assert (event.organizer.email, event.organizer.name) == (ALICE, "Alice Moreno")
    people = [(a.person.email, a.status, a.role, a.kind) for a in event.attendees]
    assert people == [
        (ALICE, "ACCEPTED", "REQ-PARTICIPANT", "INDIVIDUAL"),
        (DANA, "TENTATIVE", "REQ-PARTICIPANT", "INDIVIDUAL"),
        ("lee@globex.com", "DECLINED", "OPT-PARTICIPANT", "INDIVIDUAL"),
        ("room-4@resource.calendar.google.com", "NEEDS-ACTION", "REQ-PARTICIPANT", "RESOURCE"),
    ]
    assert [a.person.email for a in event.attendees if a.is_person] == [ALICE, DANA, "lee@globex.com"]
    assert event.status is EventStatus.CONFIRMED


def test_an_incremental_sync_brings_only_what_changed(tmp_path: Path, fake: FakeGoogle) -> None:
    # Given a synced calendar of three meetings
    kept = fake.put_event(ALICE, meeting("Kept", NOW + DAY))
    moved = fake.put_event(ALICE, meeting("Moved", NOW + 2 * DAY))
    dropped = fake.put_event(ALICE, meeting("Dropped", NOW + 3 * DAY))
    calendar = source(oauth_access(tmp_path, fake))
    state = calendar.sync(None, NOW).state
    fake.clear_log()

    # When one moves, one is added and one is deleted (Google then lists a bare cancelled stub)
    fake.update_event(ALICE, moved["id"], start=when(NOW + 4 * DAY), end=when(NOW + 4 * DAY + HOUR))
    added = fake.put_event(ALICE, meeting("Added", NOW + 5 * DAY))
    fake.cancel_event(ALICE, dropped["id"], stub=True)
    batch = calendar.sync(state, NOW)

    # Then one request with the sync token and no filters brought just those changes
    (request,) = fake.event_lists()
    assert request.query["syncToken"] == state["token"]
    assert not {"timeMin", "timeMax", "q", "privateExtendedProperty"} & request.query.keys()
    assert ids(batch) == sorted([moved["iCalUID"], added["iCalUID"]])
    assert batch.removed == [dropped["iCalUID"]]
    assert kept["iCalUID"] not in ids(batch)
    (moved_event,) = [e for e in batch.upserted if e.id == moved["iCalUID"]]
    assert moved_event.start == NOW + 4 * DAY


def test_a_calendar_that_did_not_change_costs_one_request_per_sync(tmp_path: Path, fake: FakeGoogle) -> None:
    # Given a synced calendar
    fake.max_page = 2
    for n in range(5):
        fake.put_event(ALICE, meeting(f"Call {n}", NOW + n * DAY))
    calendar = source(oauth_access(tmp_path, fake))
    state = calendar.sync(None, NOW).state

    for poll in range(3):
        fake.clear_log()
        # When it is polled again with nothing changed
        batch = calendar.sync(state, NOW + poll * timedelta(minutes=5))
        # Then exactly one list request was made, and the batch says nothing changed
        assert len(fake.event_lists()) == 1
        assert batch.unchanged and batch.upserted == [] and batch.removed == []
        state = batch.state


def test_changes_outside_the_window_are_filtered_here(tmp_path: Path, fake: FakeGoogle) -> None:
    # Given a synced calendar with a meeting in the window
    leaving = fake.put_event(ALICE, meeting("Leaving", NOW + DAY))
    calendar = source(oauth_access(tmp_path, fake))
    state = calendar.sync(None, NOW).state

    # When an old event is edited, a far one is added, and the known one moves beyond the window
    fake.put_event(ALICE, meeting("Old", NOW - 90 * DAY))
    fake.put_event(ALICE, meeting("Far", NOW + 600 * DAY))
    far = NOW + 450 * DAY
    fake.update_event(ALICE, leaving["id"], start=when(far), end=when(far + HOUR))
    batch = calendar.sync(state, NOW)

    # Then none is upserted, and the one that left the window is removed
    assert batch.upserted == []
    assert batch.removed == [leaving["iCalUID"]]


# -- 410 Gone -------------------------------------------------------------------------------------
def test_an_expired_sync_token_means_a_full_resync_that_loses_and_repeats_nothing(
    tmp_path: Path, fake: FakeGoogle
) -> None:
    # Given a synced calendar of four meetings
    same = fake.put_event(ALICE, meeting("Same", NOW + DAY))
    changed = fake.put_event(ALICE, meeting("Changed", NOW + 2 * DAY))
    purged = fake.put_event(ALICE, meeting("Purged", NOW + 3 * DAY))
    cancelled = fake.put_event(ALICE, meeting("Cancelled", NOW + 4 * DAY))
    calendar = source(oauth_access(tmp_path, fake))
    state = calendar.sync(None, NOW).state

    # When Google expires the token while events change, vanish, get cancelled and are added
    fake.expire_sync_tokens()
    fake.update_event(ALICE, changed["id"], summary="Changed #closing")
    fake.purge_event(ALICE, purged["id"])
    fake.cancel_event(ALICE, cancelled["id"], stub=True)
    added = fake.put_event(ALICE, meeting("Added", NOW + 5 * DAY))
    fake.clear_log()
    batch = calendar.sync(state, NOW)

    # Then the token was tried once (410) and the window read again in full
    statuses = [(r.status, "syncToken" in r.query, "timeMin" in r.query) for r in fake.event_lists()]
    assert statuses == [(410, True, False), (200, False, True)]
    # and every live event came once, the gone ones are removed, nothing is both
    assert ids(batch) == sorted(e["iCalUID"] for e in (same, changed, added))
    assert len(batch.upserted) == len({e.id for e in batch.upserted})
    assert batch.removed == sorted([purged["iCalUID"], cancelled["iCalUID"]])
    assert {e.title for e in batch.upserted if e.id == changed["iCalUID"]} == {"Changed #closing"}
    assert batch.state["token"] != state["token"]

    # And the new token is the steady state again: one request, nothing changed
    fake.clear_log()
    assert calendar.sync(batch.state, NOW).unchanged
    assert len(fake.event_lists()) == 1


# -- errors and retries ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (429, "rateLimitExceeded"),
        (503, "backendError"),
        (500, "backendError"),
        (403, "userRateLimitExceeded"),
    ],
)
def test_throttling_and_server_errors_are_retried_with_backoff(
    tmp_path: Path, fake: FakeGoogle, backoff: list[float], status: int, reason: str
) -> None:
    # Given a calendar whose next two list requests fail
    fake.put_event(ALICE, meeting("Call", NOW + DAY))
    fake.fail(status, times=2, reason=reason)

    # When it syncs
    batch = source(oauth_access(tmp_path, fake)).sync(None, NOW)

    # Then the library retried after backing off, and the third try got the event
    assert len(batch.upserted) == 1
    assert [r.status for r in fake.event_lists()] == [status, status, 200]
    assert len(backoff) == 2 and backoff[1] > 0


def test_a_bad_request_is_not_retried(tmp_path: Path, fake: FakeGoogle, backoff: list[float]) -> None:
    # Given a calendar that answers 400
    fake.put_event(ALICE, meeting("Call", NOW + DAY))
    fake.fail(400, reason="invalid", message="Invalid value for: timeMin")

    # When it syncs, Then it fails at once, naming the calendar and the account
    with pytest.raises(SourceError) as caught:
        source(oauth_access(tmp_path, fake)).sync(None, NOW)
    assert ALICE in str(caught.value) and "primary" in str(caught.value) and "400" in str(caught.value)
    assert len(fake.event_lists()) == 1 and backoff == []


def test_a_forbidden_calendar_is_not_retried(tmp_path: Path, fake: FakeGoogle, backoff: list[float]) -> None:
    fake.put_event(ALICE, meeting("Call", NOW + DAY))
    fake.fail(403, reason="forbidden", message="Forbidden")
    with pytest.raises(SourceError, match="403"):
        source(oauth_access(tmp_path, fake)).sync(None, NOW)
    assert len(fake.event_lists()) == 1 and backoff == []


def test_an_unknown_calendar_is_named(tmp_path: Path, fake: FakeGoogle) -> None:
    fake.put_event(ALICE, meeting("Call", NOW + DAY))
    with pytest.raises(
        SourceError, match=re.escape("no calendar 'team@group.calendar.google.com' for alice")
    ):
        source(oauth_access(tmp_path, fake), calendar_id="team@group.calendar.google.com").sync(None, NOW)


def test_an_expired_access_token_is_refreshed_without_fuss(tmp_path: Path, fake: FakeGoogle) -> None:
    # Given a synced calendar whose access token then expires
    fake.put_event(ALICE, meeting("Call", NOW + DAY))
    calendar = source(oauth_access(tmp_path, fake))
    state = calendar.sync(None, NOW).state
    fake.expire_access_tokens()
    fake.clear_log()

    # When it syncs again, Then the client refreshed and repeated the request
    assert calendar.sync(state, NOW).unchanged
    assert [r.status for r in fake.event_lists()] == [401, 200]
    assert [r.form["grant_type"] for r in fake.calls("/token")] == ["refresh_token"]


def test_a_revoked_grant_is_one_clear_error_and_the_other_calendars_go_on(
    tmp_path: Path, fake: FakeGoogle, caplog: pytest.LogCaptureFixture
) -> None:
    # Given two reps' calendars, synced
    fake.put_event(ALICE, meeting("Alice's call", NOW + DAY))
    fake.put_event(BOB, meeting("Bob's call", NOW + DAY))
    access = oauth_access(tmp_path, fake, ALICE, BOB)
    alice, bob = source(access, ALICE), source(access, BOB)
    alice_state, bob_state = alice.sync(None, NOW).state, bob.sync(None, NOW).state

    # When Alice revokes the grant (her access token dies, refreshing answers invalid_grant)
    fake.revoke(ALICE)
    fake.put_event(BOB, meeting("Bob's next call", NOW + 2 * DAY))
    caplog.set_level(logging.ERROR, logger="daemon.sources.google")
    errors = []
    for _ in range(3):
        with pytest.raises(SourceError) as caught:
            alice.sync(alice_state, NOW)
        errors.append(str(caught.value))

    # Then every try fails with an error naming her account and the fix, logged only once
    assert all(ALICE in e and f"followthrough auth google --account {ALICE}" in e for e in errors)
    assert "revoked" in errors[0]
    assert len([r for r in caplog.records if ALICE in r.getMessage()]) == 1
    # and Bob's calendar goes on
    assert [e.title for e in bob.sync(bob_state, NOW).upserted] == ["Bob's next call"]

    # And once she authorizes again, her calendar works again
    (tmp_path / "tokens" / f"{ALICE}.json").write_text(json.dumps(fake.authorized_user(ALICE)))
    assert alice.sync(alice_state, NOW).unchanged


def test_a_grant_revoked_before_the_first_sync_is_named(tmp_path: Path, fake: FakeGoogle) -> None:
    fake.put_event(ALICE, meeting("Call", NOW + DAY))
    access = oauth_access(tmp_path, fake)
    fake.revoke(ALICE)
    with pytest.raises(SourceError, match=rf"account {ALICE}: the grant was revoked or has expired"):
        source(access).sync(None, NOW)
    assert [r.status for r in fake.calls("/token")] == [400]
    assert fake.event_lists() == []


def test_a_missing_token_file_says_how_to_authorize(tmp_path: Path, fake: FakeGoogle) -> None:
    access = GoogleAccess(GoogleConfig(token_dir=tmp_path, api_endpoint=fake.url))
    with pytest.raises(SourceError, match=rf"followthrough auth google --account {ALICE}"):
        source(access).sync(None, NOW)


# -- delegation -----------------------------------------------------------------------------------
def test_a_service_account_reads_each_reps_calendar_with_its_own_quota_user(
    tmp_path: Path, fake: FakeGoogle
) -> None:
    # Given a service account with domain-wide delegation, and two reps' calendars
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(fake.service_account_key()))
    access = GoogleAccess(GoogleConfig(service_account_file=key_file, api_endpoint=fake.url))
    fake.put_event(ALICE, meeting("Alice's call", NOW + DAY))
    fake.put_event(BOB, meeting("Bob's call", NOW + DAY))
    carol = "carol@acme.example"
    fake.put_event(carol, meeting("Carol's call", NOW + DAY))
    fake.deny_delegation(carol)

    # When each rep's calendar syncs, on threads of their own
    reps = [source(access, rep, quota_user=True) for rep in (ALICE, BOB)]
    with ThreadPoolExecutor(2) as pool:
        batches = list(pool.map(lambda s: s.sync(None, NOW), reps))

    # Then each got its own events, asking as the rep, its requests counted against the rep
    assert [[e.title for e in b.upserted] for b in batches] == [["Alice's call"], ["Bob's call"]]
    assert sorted(r.query["quotaUser"] for r in fake.event_lists()) == [ALICE, BOB]
    subjects = sorted(_jwt_subject(r.form["assertion"]) for r in fake.calls("/token"))
    assert subjects == [ALICE, BOB]
    # and a rep the delegation does not cover is named, with what to check
    with pytest.raises(SourceError, match=rf"account {carol}: .*domain-wide delegation"):
        source(access, carol, quota_user=True).sync(None, NOW)


def _jwt_subject(assertion: str) -> str:
    import base64

    payload = assertion.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


def test_without_delegation_no_quota_user_is_sent(tmp_path: Path, fake: FakeGoogle) -> None:
    fake.put_event(ALICE, meeting("Call", NOW + DAY))
    source(oauth_access(tmp_path, fake)).sync(None, NOW)
    assert all("quotaUser" not in r.query for r in fake.event_lists())


# -- tags, series, all-day, bad events ------------------------------------------------------------
def test_private_extended_properties_tag_an_event_without_touching_its_title(
    tmp_path: Path, fake: FakeGoogle
) -> None:
    # Given a meeting a CRM tagged in its private properties; an invitee's shared ones say otherwise
    fake.put_event(
        ALICE,
        meeting(
            "Globex terms",
            NOW + DAY,
            extendedProperties={
                "private": {"followthrough.kind": "closing", "followthrough.outcome": "won", "crm.id": "42"},
                "shared": {"followthrough.kind": "kickoff", "followthrough.outcome": "lost"},
            },
        ),
    )

    # When it is read
    (event,) = source(oauth_access(tmp_path, fake)).sync(None, NOW).upserted

    # Then only our private tags are kept, and the playbook sees a won closing call
    assert event.properties == {"followthrough.kind": "closing", "followthrough.outcome": "won"}
    assert event.title == "Globex terms"
    assert event_kind(event, Tags()) is Kind.CLOSING
    assert tagged_outcome(event, Tags()) is Outcome.WON


ICS_SERIES = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//followthrough tests//EN\r
BEGIN:VEVENT\r
UID:weekly-globex@acme.example\r
DTSTAMP:20260101T000000Z\r
DTSTART;TZID=Europe/Berlin:20260316T100000\r
DTEND;TZID=Europe/Berlin:20260316T110000\r
RRULE:FREQ=WEEKLY;COUNT=3\r
SUMMARY:Weekly Globex\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_instances_of_a_series_get_the_ids_the_ics_source_gives_them(
    tmp_path: Path, fake: FakeGoogle
) -> None:
    # Given a weekly series across the change to summer time, in Google and as an .ics file
    starts = [datetime(2026, 3, d, 10, 0, tzinfo=BERLIN) for d in (16, 23, 30)]
    instances = fake.put_series(
        ALICE,
        {"iCalUID": "weekly-globex@acme.example", "summary": "Weekly Globex"},
        starts,
        HOUR,
        zone="Europe/Berlin",
    )
    # one instance moved to the afternoon: it keeps its original start
    moved = datetime(2026, 3, 23, 15, 0, tzinfo=BERLIN)
    fake.update_event(ALICE, instances[1]["id"], start=when(moved, "Europe/Berlin"), end=when(moved + HOUR))
    ics = tmp_path / "series.ics"
    ics.write_text(ICS_SERIES, newline="")
    calendar = source(oauth_access(tmp_path, fake))

    # When both are read
    batch = calendar.sync(None, NOW)
    from_ics = IcsSource("ics", path=ics).sync(None, NOW)

    # Then the ids are the same: the UID and the original start in UTC
    expected = [
        "weekly-globex@acme.example/20260316T090000Z",
        "weekly-globex@acme.example/20260323T090000Z",
        "weekly-globex@acme.example/20260330T080000Z",
    ]
    assert ids(batch) == expected == ids(from_ics)
    by_id = {e.id: e for e in batch.upserted}
    assert by_id[expected[1]].start == moved.astimezone(UTC)
    assert by_id[expected[2]].timezone == "Europe/Berlin"

    # And a cancelled instance, listed as a bare stub, removes just that instance
    fake.cancel_event(ALICE, instances[2]["id"], stub=True)
    later = calendar.sync(batch.state, NOW)
    assert later.upserted == [] and later.removed == [expected[2]]


def test_all_day_events_start_at_midnight_where_the_calendar_is(tmp_path: Path, fake: FakeGoogle) -> None:
    # Given an all-day event and an all-day weekly series, read with a New York default zone
    single = fake.put_event(
        ALICE, {"summary": "Offsite", "start": {"date": "2026-03-05"}, "end": {"date": "2026-03-07"}}
    )
    fake.put_series(
        ALICE,
        {"iCalUID": "standup-day@acme.example", "summary": "Planning day"},
        [date(2026, 3, 9), date(2026, 3, 16)],
        DAY,
    )

    # When it is read
    batch = source(oauth_access(tmp_path, fake), default_zone="America/New_York").sync(None, NOW)

    # Then the times are midnights in that zone, and instance ids carry the date
    by_id = {e.id: e for e in batch.upserted}
    offsite = by_id[single["iCalUID"]]
    assert offsite.all_day and offsite.timezone is None
    assert offsite.start == datetime(2026, 3, 5, 5, 0, tzinfo=UTC)
    assert offsite.end == datetime(2026, 3, 7, 5, 0, tzinfo=UTC)
    assert sorted(i for i in by_id if i.startswith("standup-day")) == [
        "standup-day@acme.example/20260309",
        "standup-day@acme.example/20260316",
    ]


def test_an_event_imported_from_outlook_with_a_windows_zone_name_gets_its_iana_zone(
    tmp_path: Path, fake: FakeGoogle
) -> None:
    # Given an event whose zone Google passes on as Outlook named it
    start = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    item = meeting("Initech terms", start, zone=None)
    item["start"]["timeZone"] = item["end"]["timeZone"] = "Tokyo Standard Time"
    fake.put_event(ALICE, item)

    # When it is read
    (event,) = source(oauth_access(tmp_path, fake)).sync(None, NOW).upserted

    # Then it lives in Asia/Tokyo, so customer mail keeps Tokyo's working hours
    assert event.timezone == "Asia/Tokyo"
    assert event.start == start


def test_one_bad_event_is_skipped_and_named(tmp_path: Path, fake: FakeGoogle) -> None:
    # Given a good meeting, one that ends before it starts, and one without an iCalUID
    good = fake.put_event(ALICE, meeting("Good", NOW + DAY))
    fake.put_event(
        ALICE,
        meeting("Backwards", NOW + 2 * DAY, iCalUID="backwards@acme.example")
        | {"end": when(NOW + DAY, "Europe/Berlin")},
    )
    fake.put_event(ALICE, meeting("No UID", NOW + 3 * DAY, iCalUID=""))

    # When it is read
    batch = source(oauth_access(tmp_path, fake)).sync(None, NOW)

    # Then the good one counts and each bad one is a problem naming it
    assert ids(batch) == [good["iCalUID"]]
    assert len(batch.problems) == 2
    assert batch.problems[0].startswith("event backwards@acme.example: skipped: ")
    assert "before" in batch.problems[0]
    assert "no iCalUID" in batch.problems[1]


def test_a_cancelled_event_with_its_details_is_reported_cancelled(tmp_path: Path, fake: FakeGoogle) -> None:
    # Given a synced meeting, then cancelled by its organizer (listed whole, status cancelled)
    item = fake.put_event(ALICE, meeting("Globex terms #closing", NOW + DAY))
    calendar = source(oauth_access(tmp_path, fake))
    state = calendar.sync(None, NOW).state
    fake.cancel_event(ALICE, item["id"], stub=False)

    # When it syncs, Then the event comes back cancelled under the same id
    (event,) = calendar.sync(state, NOW).upserted
    assert event.id == item["iCalUID"] and event.status is EventStatus.CANCELLED


def test_the_window_moving_forward_reads_the_days_it_moves_into(tmp_path: Path, fake: FakeGoogle) -> None:
    # Given a meeting just beyond the window at the first sync, never changed since
    far = fake.put_event(ALICE, meeting("Far", NOW + 402 * DAY))
    calendar = source(oauth_access(tmp_path, fake))
    state = calendar.sync(None, NOW).state
    assert calendar.sync(state, NOW + HOUR).unchanged

    # When three days have passed
    fake.clear_log()
    batch = calendar.sync(state, NOW + 3 * DAY)

    # Then the new days of the window were read once, and the meeting is there
    assert ids(batch) == [far["iCalUID"]]
    assert len(fake.event_lists()) == 2
    fake.clear_log()
    assert calendar.sync(batch.state, NOW + 3 * DAY).unchanged
    assert len(fake.event_lists()) == 1


def test_clients_are_per_thread(tmp_path: Path, fake: FakeGoogle) -> None:
    # Given one access object shared by a source polled from several threads
    fake.put_event(ALICE, meeting("Call", NOW + DAY))
    calendar = source(oauth_access(tmp_path, fake))
    results: list[int] = []

    def poll() -> None:
        results.append(len(calendar.sync(None, NOW).upserted))

    # When four threads sync at once, Then each gets the calendar whole
    threads = [threading.Thread(target=poll) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [1, 1, 1, 1]


def test_pointing_the_source_at_another_calendar_removes_the_old_ones_events(
    tmp_path: Path, fake: FakeGoogle
) -> None:
    # Given a source synced from Alice's primary calendar
    old = fake.put_event(ALICE, meeting("Old calendar", NOW + DAY))
    new = fake.put_event(ALICE, meeting("Team calendar", NOW + DAY), calendar_id="team@acme.example")
    access = oauth_access(tmp_path, fake)
    state = source(access).sync(None, NOW).state

    # When the same source is configured to read another calendar
    batch = source(access, calendar_id="team@acme.example").sync(state, NOW)

    # Then it starts over there, and the old calendar's events are gone
    assert ids(batch) == [new["iCalUID"]] and batch.removed == [old["iCalUID"]]
    assert "syncToken" not in fake.event_lists()[-1].query
