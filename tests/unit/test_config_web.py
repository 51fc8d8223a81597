"""[web] and the console's admin token: where it listens, and a token only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import load
from daemon.config.sections import parse_listen
from daemon.errors import ConfigError
from daemon.web.server import console_access
from tests.support.config import MINIMAL, config_error, write_toml

TOKEN = "7f3c9e2a41d84b6f9a0c5e1d2b3a4f5e"


def write(tmp_path: Path, extra: str = "") -> Path:
    return write_toml(tmp_path, MINIMAL + extra)


@pytest.fixture(autouse=True)
def no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN_FILE", raising=False)


def test_without_a_web_table_the_console_listens_on_loopback_8025(tmp_path: Path) -> None:
    settings = load(write(tmp_path))
    assert settings.web is None  # so `run` serves no console
    assert settings.web_listen() == ("127.0.0.1", 8025)
    assert console_access(settings) == ("127.0.0.1", 8025, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8025", ("127.0.0.1", 8025)),
        ("[::1]:9000", ("::1", 9000)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("value", ["8025", "127.0.0.1", "127.0.0.1:99999", "::1:8025", "http://x:1"])
def test_a_bad_listen_address_names_the_key(tmp_path: Path, value: str) -> None:
    assert "web.listen" in config_error(write(tmp_path, f'\n[web]\nlisten = "{value}"\n'))


def test_an_unknown_web_key_is_an_config_error(tmp_path: Path) -> None:
    assert "web.port: unknown key" in config_error(write(tmp_path, "\n[web]\nport = 8025\n"))


def test_a_token_in_the_file_is_refused_naming_the_variable(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, f'\n[web]\nadmin_token = "{TOKEN}"\n'))
    assert "web.admin_token" in message and "FOLLOWTHROUGH_WEB_ADMIN_TOKEN" in message
    assert TOKEN not in message


def test_the_token_variables_are_not_unknown_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    assert load(write(tmp_path)).web_admin_token() == TOKEN


def test_the_token_comes_from_the_environment_or_the_file_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load(write(tmp_path))
    assert settings.web_admin_token() is None
    (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    assert settings.web_admin_token() == TOKEN
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="FOLLOWTHROUGH_WEB_ADMIN_TOKEN_FILE: cannot read"):
        settings.web_admin_token()


def test_a_short_token_is_refused_without_showing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN", "hunter2")
    with pytest.raises(ConfigError) as refused:
        load(write(tmp_path)).web_admin_token()
    assert "FOLLOWTHROUGH_WEB_ADMIN_TOKEN" in str(refused.value) and "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:8025", "[::]:8025", "192.0.2.10:8025", "console.acme.example:80"]
)
def test_beyond_loopback_without_a_token_is_refused_naming_the_key(tmp_path: Path, listen: str) -> None:
    settings = load(write(tmp_path, f'\n[web]\nlisten = "{listen}"\n'))
    with pytest.raises(ConfigError) as refused:
        console_access(settings)
    assert f"web.listen = {listen!r}" in str(refused.value)
    assert "FOLLOWTHROUGH_WEB_ADMIN_TOKEN" in str(refused.value)


@pytest.mark.parametrize("listen", ["127.0.0.1:8025", "127.0.0.2:8025", "[::1]:8025", "localhost:8025"])
def test_loopback_needs_no_token(tmp_path: Path, listen: str) -> None:
    settings = load(write(tmp_path, f'\n[web]\nlisten = "{listen}"\n'))
    assert console_access(settings)[2] is None


def test_beyond_loopback_with_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN", TOKEN)
    settings = load(write(tmp_path, '\n[web]\nlisten = "0.0.0.0:8025"\n'))
    assert console_access(settings) == ("0.0.0.0", 8025, TOKEN)
