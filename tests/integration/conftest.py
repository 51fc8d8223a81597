"""Fixtures for integration tests: real servers on 127.0.0.1, nothing mocked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import google.oauth2.credentials
import googleapiclient.http
import pytest

from daemon.engine import Engine
from tests.support import smtp as smtp_support
from tests.support.feed import CalendarFeed, serving_feed
from tests.support.gmail_fake import FakeGmail, serving_gmail
from tests.support.ports import free_port


@pytest.fixture
def calendar_feed() -> Iterator[CalendarFeed]:
    """A real HTTP server on 127.0.0.1 (a free port) that publishes one calendar with validators."""
    with serving_feed() as feed:
        yield feed


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connecting to it is refused."""
    return free_port()


@pytest.fixture
def gmail(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGmail]:
    """The fake Gmail (tests/support/gmail_fake.py) on 127.0.0.1, google-auth's token endpoint on it."""
    with serving_gmail() as fake:
        # google-auth ignores the token_uri of an authorized-user file ("always overrides"): point its
        # default at the fake instead.
        monkeypatch.setattr(google.oauth2.credentials, "_GOOGLE_OAUTH2_TOKEN_ENDPOINT", f"{fake.url}token")
        yield fake


@pytest.fixture
def google_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The Google library's retries sleep through `time.sleep`, taken when a request is made: record
    the pauses instead, so retries cost no time."""
    slept: list[float] = []
    monkeypatch.setattr(googleapiclient.http.time, "sleep", slept.append)
    return slept


@pytest.fixture
def t0() -> datetime:
    """The first pass's moment, an hour ahead of the real clock for the whole test: a dispatcher takes
    the later of the moment it is given and the clock, so the ledger records exactly the moments given."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    """Engines made by a test, closed at its end whatever happens."""
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.close()


@pytest.fixture
def microsoft_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """The fake app registration's client secret, where followthrough reads it: the environment."""
    from tests.support.graph_fake import CLIENT_SECRET

    monkeypatch.setenv("FOLLOWTHROUGH_MICROSOFT_CLIENT_SECRET", CLIENT_SECRET)
    return CLIENT_SECRET


@pytest.fixture(params=[False, True], ids=["one-command-at-a-time", "pipelining"])
def either_pipelining(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Each test twice: its SMTP servers offer PIPELINING (RFC 2920), as most do, or not, as aiosmtpd."""
    monkeypatch.setattr(smtp_support, "OFFER_PIPELINING", request.param)
    return bool(request.param)
