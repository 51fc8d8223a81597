"""`followthrough auth google`: the installed-app OAuth flow for one account.

Asks only for the scopes followthrough uses, and stores the refreshable token where `access` reads
it for the Google calendar source and the Gmail transport, readable only by its owner.
"""

from __future__ import annotations

import os
from pathlib import Path

from daemon.config import Settings
from daemon.errors import ConfigError, UserError
from daemon.google.access import GMAIL_READ_SCOPE, SCOPES, token_path
from daemon.model import parse_address


def authorize(
    settings: Settings, account: str, *, open_browser: bool = True, port: int = 0, lookup: bool = False
) -> Path:
    google = settings.google_files()
    if google is None or google.token_dir is None:
        raise ConfigError("google.token_dir: set it to the folder where OAuth tokens are kept")
    if google.client_secrets_file is None:
        raise ConfigError(
            "google.client_secrets_file: download the OAuth client (type 'Desktop app') JSON from the "
            "Google Cloud console and point this key at it"
        )
    address = parse_address(account)
    if address is None:
        raise UserError(f"not an email address: {account!r}")
    secrets, token_dir = google.client_secrets_file, google.token_dir
    from google_auth_oauthlib.flow import InstalledAppFlow

    try:
        scopes = [*SCOPES, GMAIL_READ_SCOPE] if lookup else list(SCOPES)
        flow = InstalledAppFlow.from_client_secrets_file(str(secrets), scopes=scopes)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"google.client_secrets_file: cannot use {secrets}: {exc}") from None
    try:
        credentials = flow.run_local_server(
            host="localhost",
            port=port,
            open_browser=open_browser,
            login_hint=account,
            access_type="offline",
            prompt="consent",  # a refresh token every time, even for an account authorized before
            authorization_prompt_message=f"Sign in as {account} at this address:\n{{url}}",
            success_message="followthrough is authorized. You can close this window.",
        )
    except Exception as exc:  # denied, a wrong client, a network problem: say so in one line
        raise UserError(f"authorizing {account} failed: {type(exc).__name__}: {exc}") from None
    token_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = token_path(token_dir, address)
    # Created 0600 from the start: the token is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(credentials.to_json())
    os.chmod(path, 0o600)  # an older file keeps its mode through O_TRUNC
    return path
