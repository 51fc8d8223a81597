"""The contract of `daemon/sources/__init__.py`, run against every calendar source: the same calendar
changes made through an ICS file and through (a local fake of) Google Calendar give the same batches."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.google import GoogleAccess, GoogleSettings
from daemon.sources import CalendarSource
from daemon.sources.google import GoogleCalendarSource
from daemon.sources.ics import IcsSource
from tests.google_fake import FakeGoogle, when
from tests.helpers import ALICE, DANA, calendar, vevent

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PAST, FUTURE = timedelta(days=30), timedelta(days=400)


class Harness(ABC):
    """A calendar we can change, and the source that reads it."""

    @abstractmethod
    def put(self, uid: str, start: datetime, title: str) -> None: ...

    @abstractmethod
    def delete(self, uid: str) -> None: ...

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

    def source(self) -> CalendarSource:
        return self._source


class GoogleHarness(Harness):
    def __init__(self, root: Path, fake: FakeGoogle) -> None:
        self.fake = fake
        self.ids: dict[str, str] = {}
        (root / "tokens").mkdir()
        (root / "tokens" / f"{ALICE[0]}.json").write_text(json.dumps(fake.authorized_user(ALICE[0])))
        access = GoogleAccess(GoogleSettings(token_dir=root / "tokens", api_endpoint=fake.url))
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

    def source(self) -> CalendarSource:
        return self._source


@pytest.fixture(params=["ics", "google"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "ics":
        yield IcsHarness(tmp_path)
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
