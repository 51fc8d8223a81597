"""[metrics] and [logging]: where the probes listen, how the log reads, the metrics token from the
environment only."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import load
from daemon.errors import ConfigError
from daemon.web.server import metrics_access
from tests.support.config import MINIMAL, config_error, write_toml

TOKEN = "0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d"


def write(tmp_path: Path, extra: str = "") -> Path:
    return write_toml(tmp_path, MINIMAL + extra)


@pytest.fixture(autouse=True)
def no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOLLOWTHROUGH_METRICS_TOKEN", raising=False)
    monkeypatch.delenv("FOLLOWTHROUGH_METRICS_TOKEN_FILE", raising=False)
    monkeypatch.delenv("FOLLOWTHROUGH_LOGGING__FORMAT", raising=False)


def test_by_default_no_metrics_server_and_readable_logs(tmp_path: Path) -> None:
    settings = load(write(tmp_path))
    assert settings.metrics is None  # so `run` without [web] serves no probes
    assert settings.logging.format == "text"


def test_the_metrics_table_listens_on_loopback_9325_unless_told(tmp_path: Path) -> None:
    assert metrics_access(load(write(tmp_path, "[metrics]\n"))) == ("127.0.0.1", 9325, None)
    assert load(write(tmp_path, '[metrics]\nlisten = "[::1]:9400"\n')).metrics is not None


def test_a_bad_listen_or_log_format_names_the_key(tmp_path: Path) -> None:
    assert "metrics.listen: " in config_error(write(tmp_path, '[metrics]\nlisten = "9325"\n'))
    message = config_error(write(tmp_path, '[logging]\nformat = "xml"\n'))
    assert "logging.format: " in message and "'text' or 'json'" in message


def test_json_logs_from_the_environment_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOLLOWTHROUGH_LOGGING__FORMAT", "json")
    assert load(write(tmp_path)).logging.format == "json"


def test_the_metrics_token_comes_from_the_environment_and_is_no_unknown_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLLOWTHROUGH_METRICS_TOKEN", TOKEN)
    settings = load(write(tmp_path, '[metrics]\nlisten = "0.0.0.0:9325"\n'))
    assert metrics_access(settings) == ("0.0.0.0", 9325, TOKEN)
    # A short one is refused, saying how to make one
    monkeypatch.setenv("FOLLOWTHROUGH_METRICS_TOKEN", "short")
    with pytest.raises(ConfigError) as refused:
        settings.metrics_token()
    assert "FOLLOWTHROUGH_METRICS_TOKEN: the metrics token must be at least 16" in str(refused.value)
    # And written in the file, it is refused as a secret, naming where it belongs
    message = config_error(write(tmp_path, '[metrics]\ntoken = "x"\n'))
    assert "metrics.token: secrets are read only from the environment (FOLLOWTHROUGH_METRICS_TOKEN)" in (
        message
    )
