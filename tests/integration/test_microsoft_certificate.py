"""The app's certificate sign-in (`[microsoft] certificate_file`, `certificate_thumbprint`) through the real
MSAL against the fake token endpoint, which verifies the signed client assertion as Entra ID does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from daemon.config import load
from daemon.errors import ConfigError, SourceError
from daemon.mail.graph import GraphTransport
from daemon.sources.microsoft import MicrosoftCalendarSource
from tests.support.config import config_toml
from tests.support.graph_fake import ASSERTION_TYPE, CLIENT_ID, FakeGraph, graph_time
from tests.support.microsoft import AppCertificate, access_for, app_certificate

REP = "alice@acme.example"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGraph]:
    monkeypatch.delenv("FOLLOWTHROUGH_MICROSOFT_CLIENT_SECRET", raising=False)
    monkeypatch.delenv("FOLLOWTHROUGH_MICROSOFT_CLIENT_SECRET_FILE", raising=False)
    with FakeGraph(directory=tmp_path / "ca") as fake:
        yield fake


@pytest.fixture
def registered(graph: FakeGraph, tmp_path: Path) -> AppCertificate:
    """A certificate uploaded to the app registration; its PEM file holds the key and the certificate."""
    app = app_certificate(tmp_path / "app")
    graph.certificates.append(app.cert)
    return app


def source(graph: FakeGraph, **more: object) -> MicrosoftCalendarSource:
    return MicrosoftCalendarSource(
        "outlook", access=access_for(graph, **more), mailbox=REP, window_future=timedelta(days=60)
    )


def put_meeting(graph: FakeGraph) -> None:
    graph.put_event(
        REP,
        {
            "iCalUId": "m1",
            "subject": "Globex",
            "start": graph_time(NOW + timedelta(days=1)),
            "end": graph_time(NOW + timedelta(days=1, hours=1)),
            "organizer": {"emailAddress": {"address": REP, "name": "Alice"}},
        },
    )


def test_a_calendar_syncs_signed_in_with_the_certificate_and_no_secret(
    graph: FakeGraph, registered: AppCertificate
) -> None:
    put_meeting(graph)
    # When synced with the PEM file (key and certificate) and no thumbprint
    first = source(graph, certificate_file=registered.file).sync(None, NOW)
    # Then the meeting is there, and the token was had with a verified assertion, no secret sent
    assert [e.id for e in first.upserted] == ["m1"]
    (token,) = graph.calls("/oauth2/v2.0/token", "POST")
    assert b"client_secret" not in token.body and ASSERTION_TYPE.encode().replace(b":", b"%3A") in token.body
    (assertion,) = graph.assertions
    assert assertion["claims"]["iss"] == assertion["claims"]["sub"] == CLIENT_ID
    assert assertion["claims"]["aud"] == f"{graph.authority}/oauth2/v2.0/token"
    assert "x5t#S256" in assertion["header"]


def test_a_key_only_file_with_the_thumbprint_signs_in_with_x5t(graph: FakeGraph, tmp_path: Path) -> None:
    app = app_certificate(tmp_path / "app", with_cert=False)
    graph.certificates.append(app.cert)
    thumbprint = ":".join(app.thumbprint[i : i + 2].lower() for i in range(0, 40, 2))  # as some tools show it
    (ready, *_) = GraphTransport(
        access_for(graph, certificate_file=app.file, certificate_thumbprint=thumbprint)
    ).check([])
    assert ready.problem is None, ready
    (assertion,) = graph.assertions
    assert assertion["header"]["alg"] == "RS256" and "x5t" in assertion["header"]


def test_another_key_claiming_the_registered_thumbprint_is_refused_naming_the_file(
    graph: FakeGraph, registered: AppCertificate, tmp_path: Path
) -> None:
    # Given a file whose key is not the registered certificate's, claiming its thumbprint
    other = app_certificate(tmp_path / "other", with_cert=False)
    access = access_for(graph, certificate_file=other.file, certificate_thumbprint=registered.thumbprint)
    # When the transport is checked, then Microsoft's refusal is shown with the key to look at
    (ready,) = GraphTransport(access).check([])
    assert ready.problem is not None
    assert "invalid_client" in ready.problem and "AADSTS700027" in ready.problem
    assert "did not match the expected signature" in ready.problem
    assert "[microsoft] certificate_file" in ready.problem and str(other.file) in ready.problem
    assert graph.assertions == []
    # And a calendar says the same
    with pytest.raises(SourceError, match=r"AADSTS700027.*\[microsoft\] certificate_file"):
        source(graph, certificate_file=other.file, certificate_thumbprint=registered.thumbprint).sync(
            None, NOW
        )


def test_a_certificate_not_uploaded_to_the_app_is_refused(graph: FakeGraph, tmp_path: Path) -> None:
    unknown = app_certificate(tmp_path / "unknown")
    (ready,) = GraphTransport(access_for(graph, certificate_file=unknown.file)).check([])
    assert ready.problem is not None and "The key was not found" in ready.problem


def test_a_thumbprint_not_the_certificates_is_a_config_error(
    graph: FakeGraph, registered: AppCertificate, tmp_path: Path
) -> None:
    other = app_certificate(tmp_path / "other")
    access = access_for(graph, certificate_file=registered.file, certificate_thumbprint=other.thumbprint)
    with pytest.raises(ConfigError, match=r"certificate_thumbprint .* is not the thumbprint") as caught:
        access.token()
    assert registered.thumbprint in str(caught.value)
    assert graph.token_requests == 0


def test_a_file_gone_or_unusable_is_a_config_error_naming_the_key(
    graph: FakeGraph, registered: AppCertificate, tmp_path: Path
) -> None:
    # A file there when the config was read, gone when signing in
    gone = app_certificate(tmp_path / "gone")
    access = access_for(graph, certificate_file=gone.file)
    gone.file.unlink()
    with pytest.raises(ConfigError, match=r"\[microsoft\] certificate_file: cannot read"):
        access.token()
    # A file holding no key; a key and a certificate not its own
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[microsoft\] certificate_file: .* holds no PEM private key"):
        access_for(graph, certificate_file=junk).token()
    mixed = tmp_path / "mixed.pem"
    key_only = app_certificate(tmp_path / "k", with_cert=False).file.read_bytes()
    mixed.write_bytes(key_only + registered.cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match="belongs to none of the certificates"):
        access_for(graph, certificate_file=mixed).token()
    # A key-only file without a thumbprint
    bare = app_certificate(tmp_path / "bare", with_cert=False)
    with pytest.raises(ConfigError, match=r"holds no certificate.*certificate_thumbprint"):
        access_for(graph, certificate_file=bare.file).token()
    # And the transport's check shows it as the app's problem
    (ready,) = GraphTransport(access_for(graph, certificate_file=junk)).check([])
    assert ready.problem is not None and "[microsoft] certificate_file" in ready.problem
    assert graph.token_requests == 0


def test_a_missing_file_is_refused_when_the_config_is_read(graph: FakeGraph, tmp_path: Path) -> None:
    config = tmp_path / "followthrough.toml"
    extra = graph.toml(certificate_file='"app/missing.pem"')
    config.write_text(config_toml(extra=extra), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"microsoft\.certificate_file.*no such file"):
        load(config)
