"""[mail] settings for delivery: max_recipients and [mail.smtp] ca_file, each error naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import load
from daemon.errors import ConfigError
from tests.unit.test_config import BASE, write


def test_max_recipients_defaults_to_50_and_is_at_most_100_with_gmail(tmp_path: Path) -> None:
    # Given the defaults, then customer mail goes to at most 50 people
    assert load(write(tmp_path)).mail.max_recipients == 50
    # Given Gmail and a limit above its own, then the config is refused, naming the key
    gmail = BASE.replace("[mail]\n", '[mail]\ntransport = "gmail"\nmax_recipients = 101\n')
    gmail += '\n[google]\ntoken_dir = "tokens"\n'
    with pytest.raises(ConfigError, match=r"mail\.max_recipients: Gmail sends a message to at most 100"):
        load(write(tmp_path, base=gmail))


def test_ca_file_resolves_next_to_the_config_and_a_missing_one_names_the_key(tmp_path: Path) -> None:
    # Given a ca_file that exists next to the config file, then it is found there
    (tmp_path / "private-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    settings = load(write(tmp_path, '\n[mail.smtp]\nca_file = "private-ca.pem"\n'))
    assert settings.mail.smtp.ca_file is not None
    assert settings.resolve(settings.mail.smtp.ca_file) == tmp_path / "private-ca.pem"

    # Given a ca_file that does not exist, then start-up fails naming the key and the path
    with pytest.raises(ConfigError) as raised:
        load(write(tmp_path, '\n[mail.smtp]\nca_file = "no-such-ca.pem"\n'))
    assert "mail.smtp.ca_file: no such file" in str(raised.value)
    assert str(tmp_path / "no-such-ca.pem") in str(raised.value)
