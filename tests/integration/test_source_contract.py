"""The contract of `daemon/sources/__init__.py`, run against every calendar source: the same calendar
changes made through an ICS file, through (a local fake of) Google Calendar and through (a local fake
of) Microsoft Graph give the same batches."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.config.sections import GoogleConfig
from daemon.google.access import GoogleAccess
from daemon.sources import CalendarSource
from daemon.sources.google import GoogleCalendarSource
from daemon.sources.ics import IcsSource
from daemon.sources.microsoft import MicrosoftCalendarSource
from tests.support.google_fake import FakeGoogle, when
from tests.support.graph_fake import FakeGraph, graph_time
from tests.support.ics import ALICE, DANA, calendar, vevent
from tests.support.microsoft import access_for

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PAST, FUTURE = timedelta(days=30), timedelta(days=400)


class Harness(ABC):
    """A calendar we can change, and the source that reads it."""

    @abstractmethod
    def put(self, uid: str, start: datetime, title: str) -> None: ...

    @abstractmethod
    def delete(self, uid: str) -> None: ...

    @abstractmethod
    def break_times(self, uid: str) -> None:
        """Save the event with times no meeting can have, as a broken client might."""

    @abstractmethod
    def source(self) -> CalendarSource: ...


class IcsHarness(Harness):
    def __init__(self, root: Path) -> None:
        self.path = root / "cal.ics"
        self.events: dict[str, str] = {}
        self.path.write_text(calendar())
        self._source = IcsSource("contract", path=self.path, window_past=PAST, window_future=FUTURE)

    def _write(self) -> None:
        self.path.write_text(calendar(*self.events.values()))

    def put(self, uid: str, start: datetime, title: str) -> None:
        self.events[uid] = vevent(uid, start, start + timedelta(hours=1), title, attendees=(ALICE, DANA))
        self._write()

    def delete(self, uid: str) -> None:
        del self.events[uid]
        self._write()

    def break_times(self, uid: str) -> None:
        self.events[uid] = self.events[uid].replace("DTSTART:", "DTSTART:notadate\r\nX-WAS:", 1)
        self._write()

    def source(self) -> CalendarSource:
        return self._source


class GoogleHarness(Harness):
    def __init__(self, root: Path, fake: FakeGoogle) -> None:
        self.fake = fake
        self.ids: dict[str, str] = {}
        (root / "tokens").mkdir()
        (root / "tokens" / f"{ALICE[0]}.json").write_text(json.dumps(fake.authorized_user(ALICE[0])))
        access = GoogleAccess(GoogleConfig(token_dir=root / "tokens", api_endpoint=fake.url))
        self._source = GoogleCalendarSource(
            "contract", access=access, account=ALICE[0], window_past=PAST, window_future=FUTURE
        )

    def put(self, uid: str, start: datetime, title: str) -> None:
        fields = {
            "summary": title,
            "start": when(start),
            "end": when(start + timedelta(hours=1)),
            "organizer": {"email": ALICE[0], "displayName": ALICE[1]},
            "attendees": [{"email": ALICE[0]}, {"email": DANA[0], "displayName": DANA[1]}],
        }
        if uid in self.ids:
            self.fake.update_event(ALICE[0], self.ids[uid], **fields)
        else:
            self.ids[uid] = self.fake.put_event(ALICE[0], {"iCalUID": uid, **fields})["id"]

    def delete(self, uid: str) -> None:
        self.fake.cancel_event(ALICE[0], self.ids.pop(uid))

    def break_times(self, uid: str) -> None:
        # What the API lets through that no meeting can be: an end before the start.
        self.fake.update_event(ALICE[0], self.ids[uid], end=when(NOW - timedelta(days=1)))

    def source(self) -> CalendarSource:
        return self._source


class MicrosoftHarness(Harness):
    def __init__(self, fake: FakeGraph) -> None:
        self.fake = fake
        self.ids: dict[str, str] = {}
        self._source = MicrosoftCalendarSource(
            "contract", access=access_for(fake), mailbox=ALICE[0], window_past=PAST, window_future=FUTURE
        )

    def put(self, uid: str, start: datetime, title: str) -> None:
        fields = {
            "subject": title,
            "start": graph_time(start),
            "end": graph_time(start + timedelta(hours=1)),
            "organizer": {"emailAddress": {"address": ALICE[0], "name": ALICE[1]}},
            "attendees": [
                {"type": "required", "emailAddress": {"address": ALICE[0]}},
                {"type": "required", "emailAddress": {"address": DANA[0], "name": DANA[1]}},
            ],
        }
        if uid in self.ids:
            self.fake.update_event(ALICE[0], self.ids[uid], **fields)
        else:
            self.ids[uid] = self.fake.put_event(ALICE[0], {"iCalUId": uid, **fields})["id"]

    def delete(self, uid: str) -> None:
        self.fake.delete_event(ALICE[0], self.ids.pop(uid))

    def break_times(self, uid: str) -> None:
        # A start in a zone no one knows (an Exchange server that ignored our request for UTC).
        event = self.fake.mailbox(ALICE[0]).events[self.ids[uid]]
        self.fake.update_event(ALICE[0], self.ids[uid], start={**event["start"], "timeZone": "Mars Time"})

    def source(self) -> CalendarSource:
        return self._source


@pytest.fixture(params=["ics", "google", "microsoft"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "ics":
        yield IcsHarness(tmp_path)
        return
    if request.param == "microsoft":
        request.getfixturevalue("microsoft_secret")
        with FakeGraph(directory=tmp_path / "ca") as graph:
            yield MicrosoftHarness(graph)
        return
    with FakeGoogle() as fake:
        yield GoogleHarness(tmp_path, fake)


def test_every_source_reports_additions_changes_and_deletions_alike(harness: Harness) -> None:
    # Given three meetings, one of them far beyond the window
    harness.put("a@test", NOW + timedelta(days=1), "Globex #closing")
    harness.put("b@test", NOW + timedelta(days=2), "Initech")
    harness.put("far@test", NOW + timedelta(days=600), "Much later")
    source = harness.source()
    # When first synced, then every meeting in the window is listed, with the same ids everywhere
    first = source.sync(None, NOW)
    assert sorted(e.id for e in first.upserted) == ["a@test", "b@test"]
    assert first.removed == [] and first.problems == []
    event = next(e for e in first.upserted if e.id == "a@test")
    assert (event.start, event.title, event.organizer and event.organizer.email) == (
        NOW + timedelta(days=1),
        "Globex #closing",
        ALICE[0],
    )
    # When nothing changed, then nothing is reported
    quiet = source.sync(first.state, NOW + timedelta(minutes=5))
    assert (quiet.upserted, quiet.removed) == ([], [])
    # When one meeting moves and another is deleted, then exactly those are reported
    harness.put("a@test", NOW + timedelta(days=3), "Globex #closing")
    harness.delete("b@test")
    changes = source.sync(quiet.state, NOW + timedelta(minutes=10))
    assert [(e.id, e.start) for e in changes.upserted] == [("a@test", NOW + timedelta(days=3))]
    assert changes.removed == ["b@test"]


def test_an_event_edited_into_an_unreadable_one_is_named_and_not_taken_as_deleted(harness: Harness) -> None:
    # Given two meetings, synced
    harness.put("a@test", NOW + timedelta(days=1), "Globex #closing")
    harness.put("b@test", NOW + timedelta(days=2), "Initech #closing")
    source = harness.source()
    first = source.sync(None, NOW)

    # When one is saved with a start that is no time
    harness.break_times("a@test")
    broken = source.sync(first.state, NOW + timedelta(minutes=5))

    # Then it is named as unusable, and neither changed nor removed: what was known of it stands
    assert broken.unusable == ["a@test"], broken.problems
    assert any("a@test" in p for p in broken.problems)
    assert broken.removed == [] and broken.upserted == []

    # When synced again with nothing changed, then it is still named: a pass does not forget it
    quiet = source.sync(broken.state, NOW + timedelta(minutes=7))
    assert quiet.unusable == ["a@test"] and any("a@test" in p for p in quiet.problems)
    assert quiet.removed == [] and quiet.upserted == []

    # When it is fixed, then it comes through again, and is no longer named
    harness.put("a@test", NOW + timedelta(days=4), "Globex #closing")
    fixed = source.sync(quiet.state, NOW + timedelta(minutes=10))
    assert [(e.id, e.start) for e in fixed.upserted] == [("a@test", NOW + timedelta(days=4))]
    assert fixed.unusable == [] and fixed.removed == []
    assert source.sync(fixed.state, NOW + timedelta(minutes=15)).unusable == []
