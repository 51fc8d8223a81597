"""Secrets, only ever from the environment: FOLLOWTHROUGH_<NAME>, or the file FOLLOWTHROUGH_<NAME>_FILE names.

Read when a command needs them, so commands that need none never ask; never from the config file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from daemon.errors import ConfigError

ENV_PREFIX = "FOLLOWTHROUGH_"
SECRETS = ("SMTP_PASSWORD", "WEB_ADMIN_TOKEN", "WEB_SECRET", "METRICS_TOKEN")
# The console's admin token and the links' keys must not be guessable: `openssl rand -hex 16` gives 32.
MIN_LENGTH = 16


def secret(name: str) -> tuple[str | None, str]:
    """The value of FOLLOWTHROUGH_<name>, else of the file FOLLOWTHROUGH_<name>_FILE names, and the
    variable it came from (for messages; never the value)."""
    variable = ENV_PREFIX + name
    value = os.environ.get(variable)
    secret_file = os.environ.get(variable + "_FILE")
    if not value and secret_file:
        variable += "_FILE"
        try:
            value = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{variable}: cannot read {secret_file}: {exc.strerror}") from None
    return value or None, variable


def admin_token() -> str | None:
    """The console's admin token; None when it is not set."""
    return _token("WEB_ADMIN_TOKEN", "the admin token")


def metrics_token() -> str | None:
    """The token scrapers send for /metrics (read-only: it opens nothing else); None when not set."""
    return _token("METRICS_TOKEN", "the metrics token")


def _token(name: str, what: str) -> str | None:
    token, variable = secret(name)
    if token is not None and (len(token) < MIN_LENGTH or token != token.strip()):
        raise ConfigError(
            f"{variable}: {what} must be at least {MIN_LENGTH} characters, without "
            "spaces around it (make one with `openssl rand -hex 16`)"
        )
    return token


def link_keys() -> tuple[str, ...]:
    """The keys of the links in emails, newest first, separated by spaces, commas or new lines: to
    rotate, put a new key first and drop the old one once its links have expired."""
    value, variable = secret("WEB_SECRET")
    keys = tuple(k for k in re.split(r"[\s,]+", value or "") if k)
    if not keys:
        raise ConfigError(
            "web.base_url is set, so emails carry links, which need a secret key: set "
            f"{ENV_PREFIX}WEB_SECRET or {ENV_PREFIX}WEB_SECRET_FILE (make one with `openssl rand -hex 32`)"
        )
    short = [i + 1 for i, k in enumerate(keys) if len(k) < MIN_LENGTH]
    if short:
        raise ConfigError(
            f"{variable}: key {', '.join(map(str, short))} is shorter than {MIN_LENGTH} characters "
            "(make one with `openssl rand -hex 32`)"
        )
    return keys
