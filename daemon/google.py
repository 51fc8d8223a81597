"""Google API access for one account: credentials and API clients.

Credentials come from an OAuth token (`<token_dir>/<account>.json`, google-auth's authorized-user
format) or from a service account with domain-wide delegation, impersonating the account. Clients
use the discovery documents shipped with google-api-python-client, an optional `api_endpoint` (a
corporate proxy, or a local fake in tests), retries with backoff on 429 and 5xx, and one
`httplib2.Http` per thread, since it is not thread-safe.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError, FollowthroughError

log = logging.getLogger(__name__)

CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.events.readonly"
GMAIL_SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
# Finding a message by its Message-ID after a crash needs a search, which gmail.send cannot do.
GMAIL_READ_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
SCOPES = (CALENDAR_SCOPE, GMAIL_SEND_SCOPE)
NUM_RETRIES = 5
# Where each API lives under the root URL; `api_endpoint` replaces the root and keeps these.
SERVICE_PATHS = {
    "calendar": "calendar/v3/",
    "gmail": "",
}  # the library's own exponential backoff on 429, 5xx and rate-limit 403s


class GrantError(FollowthroughError):
    """An account's credentials are missing, revoked or expired: a person must act."""


@dataclass(frozen=True)
class GoogleSettings:
    service_account_file: Path | None = None
    token_dir: Path | None = None
    api_endpoint: str | None = None  # root URL replacing https://www.googleapis.com/ and kin
    timeout: float = 30.0


class GoogleAccess:
    """Builds API clients per account, per thread."""

    def __init__(self, settings: GoogleSettings) -> None:
        if settings.service_account_file is None and settings.token_dir is None:
            raise ConfigError("[google]: set service_account_file (delegation) or token_dir (OAuth tokens)")
        self.settings = settings
        self._local = threading.local()

    def token_path(self, account: str) -> Path:
        assert self.settings.token_dir is not None
        return self.settings.token_dir / f"{account}.json"

    def credentials(self, account: str, scopes: tuple[str, ...]) -> Any:
        """Credentials acting as `account`; refreshed through the token_uri stored with them."""
        if self.settings.service_account_file is not None:
            from google.oauth2 import service_account

            try:
                base = service_account.Credentials.from_service_account_file(
                    str(self.settings.service_account_file), scopes=list(scopes)
                )
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"google.service_account_file: cannot use {self.settings.service_account_file}: {exc}"
                ) from None
            return base.with_subject(account)
        from google.oauth2.credentials import Credentials

        path = self.token_path(account)
        if not path.is_file():
            raise GrantError(
                f"account {account}: no OAuth token at {path}; "
                f"run `followthrough auth google --account {account}`"
            )
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            credentials = Credentials.from_authorized_user_info(info, scopes=list(scopes))
        except (OSError, ValueError) as exc:
            raise GrantError(f"account {account}: the token at {path} cannot be read: {exc}") from None
        # google-auth refreshes at Google's own endpoint unless told: use the one stored with the token.
        if info.get("token_uri"):
            credentials = credentials.with_token_uri(info["token_uri"])
        return credentials

    def service(self, api: str, version: str, account: str, scopes: tuple[str, ...]) -> Any:
        """An API client for `account`, cached per thread."""
        cache: dict[tuple[str, str, str], Any] = getattr(self._local, "services", None) or {}
        self._local.services = cache
        key = (api, version, account)
        if key not in cache:
            import google_auth_httplib2
            import httplib2
            from googleapiclient.discovery import build

            http = google_auth_httplib2.AuthorizedHttp(
                self.credentials(account, scopes), http=httplib2.Http(timeout=self.settings.timeout)
            )
            options = (
                {"api_endpoint": endpoint(self.settings.api_endpoint, api)}
                if self.settings.api_endpoint
                else None
            )
            cache[key] = build(
                api, version, http=http, static_discovery=True, client_options=options, cache_discovery=False
            )
        return cache[key]

    def forget(self, account: str) -> None:
        """Drop this thread's clients for an account, e.g. after its grant was revoked."""
        cache: dict[tuple[str, str, str], Any] = getattr(self._local, "services", None) or {}
        for key in [k for k in cache if k[2] == account]:
            del cache[key]


def endpoint(root: str, api: str) -> str:
    """The client library's api_endpoint for an API under a root URL such as https://proxy.example."""
    return root.rstrip("/") + "/" + SERVICE_PATHS.get(api, "")


def grant_problem(exc: BaseException) -> str | None:
    """If an error means the account's grant is revoked or expired, say so; else None."""
    from google.auth.exceptions import RefreshError

    if isinstance(exc, RefreshError):
        return f"the grant was revoked or has expired ({exc.args[0] if exc.args else exc})"
    return None
