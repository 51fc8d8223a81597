"""Google API access for one account: credentials, API clients, and what to do when a grant fails.

Credentials come from an OAuth token (`<token_dir>/<account>.json`, google-auth's authorized-user
format) or from a service account with domain-wide delegation, impersonating the account. Clients
use the discovery documents shipped with google-api-python-client, an optional `api_endpoint` (a
corporate proxy, or a local fake in tests), retries with backoff on 429 and 5xx, and one
`httplib2.Http` per thread, since it is not thread-safe.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, NamedTuple

import httplib2

from daemon.config.sections import GoogleConfig
from daemon.errors import ConfigError, GrantError

CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.events.readonly"
GMAIL_SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
# Finding a message by its Message-ID after a crash needs a search, which gmail.send cannot do.
GMAIL_READ_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
SCOPES = (CALENDAR_SCOPE, GMAIL_SEND_SCOPE)
NUM_RETRIES = 5  # the library's own exponential backoff on 429, 5xx and rate-limit 403s
# Where each API lives under the root URL; `api_endpoint` replaces the root and keeps these.
SERVICE_PATHS = {"calendar": "calendar/v3/", "gmail": ""}


class Client(NamedTuple):
    service: Any  # a googleapiclient Resource
    credentials: Any  # what it authorizes with, for requests that need an Http of their own


def token_path(token_dir: Path, account: str) -> Path:
    """Where `auth google` stores an account's OAuth token and where clients read it."""
    return token_dir / f"{account}.json"


class GoogleAccess:
    """Builds API clients per account, per scope set, per thread; `config`'s paths are absolute."""

    def __init__(self, config: GoogleConfig) -> None:
        self.config = config
        self._local = threading.local()

    @property
    def delegated(self) -> bool:
        """One service account acts for every account (domain-wide delegation)."""
        return self.config.service_account_file is not None

    def grant_fix(self, account: str, scope: str) -> str:
        """What a person does when `account`'s grant for `scope` is missing, revoked or expired."""
        if self.delegated:
            gmail = f" and that {account} has Gmail" if "/gmail." in scope else ""
            return (
                f"check the domain-wide delegation of the service account for {account} in the Google "
                f"Workspace admin console (client id and scope {scope}){gmail}"
            )
        return f"run `followthrough auth google --account {account}`"

    def credentials(self, account: str, scopes: tuple[str, ...]) -> Any:
        """Credentials acting as `account`; refreshed through the token_uri stored with them."""
        if self.config.service_account_file is not None:
            from google.oauth2 import service_account

            try:
                base = service_account.Credentials.from_service_account_file(
                    str(self.config.service_account_file), scopes=list(scopes)
                )
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"google.service_account_file: cannot use {self.config.service_account_file}: {exc}"
                ) from None
            return base.with_subject(account)
        from google.oauth2.credentials import Credentials

        assert self.config.token_dir is not None  # the config asks for one of the two
        path = token_path(self.config.token_dir, account)
        if not path.is_file():
            fix = self.grant_fix(account, scopes[0])
            raise GrantError(f"account {account}: no OAuth token at {path}; {fix}")
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            credentials = Credentials.from_authorized_user_info(info, scopes=list(scopes))
        except (OSError, ValueError) as exc:
            raise GrantError(f"account {account}: the token at {path} cannot be read: {exc}") from None
        # google-auth refreshes at Google's own endpoint unless told: use the one stored with the token.
        if info.get("token_uri"):
            credentials = credentials.with_token_uri(info["token_uri"])
        return credentials

    def authorized(self, credentials: Any, http: httplib2.Http | None = None) -> Any:
        """An Http that signs its requests with `credentials`; a fresh plain one unless given."""
        import google_auth_httplib2

        return google_auth_httplib2.AuthorizedHttp(
            credentials, http=http or httplib2.Http(timeout=self.config.timeout)
        )

    def client(self, api: str, version: str, account: str, scopes: tuple[str, ...]) -> Client:
        """This thread's API client for `account` with only `scopes`: a grant missing one scope
        must not break the clients that do not need it."""
        cache = self._clients()
        key = (api, version, account, scopes)
        if key not in cache:
            from googleapiclient.discovery import build

            credentials = self.credentials(account, scopes)
            root = self.config.api_endpoint
            service = build(
                api,
                version,
                http=self.authorized(credentials),
                static_discovery=True,
                client_options={"api_endpoint": endpoint(root, api)} if root else None,
                cache_discovery=False,
            )
            cache[key] = Client(service, credentials)
        return cache[key]

    def _clients(self) -> dict[tuple[str, str, str, tuple[str, ...]], Client]:
        """This thread's clients by (api, version, account, scopes)."""
        if not hasattr(self._local, "clients"):
            self._local.clients = {}
        clients: dict[tuple[str, str, str, tuple[str, ...]], Client] = self._local.clients
        return clients

    def forget(self, account: str) -> None:
        """Drop this thread's clients for an account, so the next one reads its credentials afresh
        (after its grant was revoked, or renewed)."""
        cache = self._clients()
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
