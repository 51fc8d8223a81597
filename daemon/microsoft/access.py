"""Microsoft 365 access: one MSAL confidential client for app-only tokens, one httpx client for Graph.

MSAL (`ConfidentialClientApplication`, `acquire_token_for_client`) caches and renews the token itself;
it gets its own HTTP client trusting `[microsoft] ca_file`, and no instance discovery, so it talks only
to the configured authority. Graph requests honour 429 and 503 `Retry-After`, else back off
exponentially (`retry_delay`, pure); a POST that may have been taken is never repeated here.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from daemon.config.secrets import secret
from daemon.config.sections import MicrosoftConfig
from daemon.errors import ConfigError, GrantError
from daemon.retry import compute_backoff

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503})  # Graph throttles with these, and says when to come back
MAX_ATTEMPTS = 5  # one request and four retries
BACKOFF_BASE = timedelta(seconds=1)
BACKOFF_CAP = timedelta(seconds=60)
MAX_WAIT = timedelta(minutes=2)  # a longer Retry-After is not slept through: the caller tries later
SECRET = "MICROSOFT_CLIENT_SECRET"


class Throttled(Exception):
    """Graph asked us to wait longer than we wait inside one request; `until` is when to come back."""

    def __init__(self, until: datetime, answer: str) -> None:
        super().__init__(f"Graph asked to wait until {until.isoformat()} ({answer})")
        self.until = until
        self.answer = answer


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A `Retry-After` header (seconds, or an HTTP date) as a wait from `now`; None: none, or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(timedelta(0), moment - now)


def retry_delay(
    attempt: int,
    retry_after: str | None,
    now: datetime,
    *,
    base: timedelta = BACKOFF_BASE,
    cap: timedelta = BACKOFF_CAP,
) -> timedelta:
    """How long to wait before the next try after the `attempt`-th (1-based) was throttled: what the
    server's Retry-After says, else 1, 2, 4 … seconds up to `cap`."""
    named = parse_retry_after(retry_after, now)
    return named if named is not None else compute_backoff(attempt, base, cap)


def ssl_context(ca_file: Any) -> ssl.SSLContext:
    """The system's CAs, plus `ca_file`'s if given (a corporate proxy's, or a test's private CA)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


class _MsalHttp:
    """What MSAL asks of an http_client (requests-like `get`/`post`/`close`), on httpx: environment
    variables such as REQUESTS_CA_BUNDLE cannot replace the CA we trust."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def get(self, url: str, params: Any = None, headers: Any = None, **_: Any) -> httpx.Response:
        return self.client.get(url, params=params, headers=headers)

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **_: Any
    ) -> httpx.Response:
        if isinstance(data, Mapping):  # MSAL's client assertion is bytes: httpx would send "b'…'"
            data = {k: v.decode("ascii") if isinstance(v, bytes) else v for k, v in data.items()}
        return self.client.post(url, params=params, data=data, headers=headers)

    def close(self) -> None:
        self.client.close()


def token_roles(token: str) -> list[str]:
    """The application permissions (`roles`) an access token carries; [] if it says none. Not verified:
    Graph verifies it; we only read what it grants, to say what is missing."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return [str(r) for r in claims.get("roles") or ()]
    except (IndexError, ValueError, AttributeError, TypeError):
        return []


class MicrosoftAccess:
    """App-only tokens and Graph requests for every mailbox; `config`'s paths are absolute."""

    def __init__(
        self,
        config: MicrosoftConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.graph = config.graph_endpoint.rstrip("/")
        parts = urllib.parse.urlsplit(self.graph)
        self.scope = f"{parts.scheme}://{parts.netloc}/.default"
        self.sleep = sleep
        self.now = now
        self._context = ssl_context(config.ca_file)
        self._lock = threading.Lock()
        self._app: Any = None
        self._http: httpx.Client | None = None
        self.requests = 0  # Graph requests made, for the benchmark and tests

    # -- tokens -------------------------------------------------------------------------------

    def client_credential(self) -> str | dict[str, str]:
        """The certificate's private key (with its thumbprint, or the certificate), or the client
        secret from the environment. Raises ConfigError naming the key when either is unusable."""
        if self.config.certificate_file is not None:
            return certificate_credential(self.config.certificate_file, self.config.certificate_thumbprint)
        value, _ = secret(SECRET)
        if value is None:
            raise ConfigError(
                f"[microsoft] needs a credential: set FOLLOWTHROUGH_{SECRET} or FOLLOWTHROUGH_{SECRET}_FILE, "
                "or [microsoft] certificate_file"
            )
        return value

    def _application(self) -> Any:
        with self._lock:
            if self._app is None:
                import msal

                self._app = msal.ConfidentialClientApplication(
                    self.config.client_id,
                    client_credential=self.client_credential(),
                    authority=self.config.authority_url,
                    http_client=_MsalHttp(self._new_client()),
                    # Only the configured authority is asked: no login.microsoftonline.com lookup.
                    instance_discovery=False,
                    validate_authority=False,
                )
            return self._app

    @property
    def fix(self) -> str:
        where = f"check the app registration {self.config.client_id} in tenant {self.config.tenant_id}"
        if self.config.certificate_file is not None:
            return (
                f"{where}: the certificate of [microsoft] certificate_file ({self.config.certificate_file}) "
                "must be among its Certificates & secrets, and its admin consent granted"
            )
        return f"{where} (its client secret in FOLLOWTHROUGH_{SECRET}) and its admin consent"

    def token(self) -> str:
        """An app-only access token for Graph; MSAL keeps it until shortly before it expires.

        Raises GrantError when the authority refuses the app, httpx.TransportError when it cannot
        be reached."""
        try:
            result = self._application().acquire_token_for_client(scopes=[self.scope])
        except ConfigError:
            raise
        except ValueError as exc:  # MSAL's answer to a malformed key or an unusable authority
            raise GrantError(f"Microsoft sign-in failed: {exc}; {self.fix}") from None
        except httpx.TransportError:
            raise
        except Exception as exc:  # MSAL raises its own errors for 5xx answers
            if "HTTP Error" in str(exc) or type(exc).__name__ == "MsalServiceError":
                raise httpx.TransportError(f"the authority answered {exc}") from None
            raise GrantError(f"Microsoft sign-in failed: {type(exc).__name__}: {exc}; {self.fix}") from None
        if "access_token" not in result:
            why = " ".join(str(result.get("error_description") or result.get("error") or result).split())
            raise GrantError(
                f"Microsoft refused the app's sign-in ({result.get('error', 'error')}: {why[:300]}); "
                f"{self.fix}"
            )
        return str(result["access_token"])

    # -- Graph --------------------------------------------------------------------------------

    def _new_client(self) -> httpx.Client:
        return httpx.Client(verify=self._context, timeout=self.config.timeout, follow_redirects=False)

    def client(self) -> httpx.Client:
        """The long-lived Graph client (connections kept alive between polls)."""
        with self._lock:
            if self._http is None:
                self._http = self._new_client()
            return self._http

    def fresh_client(self) -> httpx.Client:
        """A client of its own for one request: a lost answer then always means the server had the
        whole request, never that a kept-alive connection had gone stale. Close it after use."""
        return self._new_client()

    def url(self, path: str) -> str:
        """A Graph URL from a path (`/users/…`), or a URL Graph gave us (`@odata.nextLink`) as it is."""
        return path if path.startswith("https://") else self.graph + path

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}", "Accept": "application/json", **(extra or {})}

    def get(
        self, path: str, *, params: Mapping[str, str] | None = None, prefer: str | None = None
    ) -> httpx.Response:
        """A GET, throttling honoured: 429 and 503 are tried again after their Retry-After (else with
        exponential backoff), as are connections that failed; the last answer is returned. Raises
        Throttled when Graph asks for a longer wait than MAX_WAIT."""
        extra = {"Prefer": prefer} if prefer else {}
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                self.requests += 1
                response = self.client().get(self.url(path), params=params, headers=self.headers(extra))
            except httpx.TransportError:
                if attempt == MAX_ATTEMPTS:
                    raise
                self.sleep(compute_backoff(attempt, BACKOFF_BASE, BACKOFF_CAP).total_seconds())
                continue
            if response.status_code not in RETRY_STATUSES:
                return response
            now = self.now()
            wait = retry_delay(attempt, response.headers.get("Retry-After"), now)
            if wait > MAX_WAIT:
                raise Throttled(now + wait, f"HTTP {response.status_code}")
            if attempt == MAX_ATTEMPTS:
                return response
            log.info(
                "Graph answered %s to %s; trying again in %.1fs",
                response.status_code,
                path,
                wait.total_seconds(),
            )
            self.sleep(wait.total_seconds())
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None


_KEY = re.compile(
    rb"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----", re.S
)
_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def certificate_credential(path: Path, thumbprint: str | None) -> dict[str, str]:
    """MSAL's client credential from a PEM file holding an unencrypted RSA private key and, unless
    `thumbprint` (SHA-1, hex) is given, its certificate. When both are there the thumbprint must be the
    certificate's and the key must be the certificate's: Entra ID would refuse either with AADSTS700027."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    name = "[microsoft] certificate_file"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    found = _KEY.search(data)
    if found is None:
        raise ConfigError(f"{name}: {path} holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
    try:
        key = serialization.load_pem_private_key(found.group(0), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{name}: cannot read the private key in {path} ({exc}); it must be an unencrypted PEM key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{name}: the private key in {path} is not an RSA key, which Entra ID needs")
    try:
        certificates = [x509.load_pem_x509_certificate(block) for block in _CERT.findall(data)]
    except ValueError as exc:
        raise ConfigError(f"{name}: cannot read the certificate in {path} ({exc})") from None
    public = key.public_key().public_numbers()
    own = next((c for c in certificates if c.public_key().public_numbers() == public), None)  # type: ignore[union-attr]
    if certificates and own is None:
        raise ConfigError(f"{name}: the private key in {path} belongs to none of the certificates in it")
    key_pem = found.group(0).decode("ascii")
    if own is not None:
        actual = own.fingerprint(hashes.SHA1()).hex().upper()  # Entra ID's thumbprint is SHA-1
        if thumbprint and thumbprint.upper() != actual:
            raise ConfigError(
                f"[microsoft] certificate_thumbprint {thumbprint} is not the thumbprint of the certificate "
                f"in {path} ({actual}); correct it, or leave it out"
            )
        if not thumbprint:
            cert_pem = own.public_bytes(serialization.Encoding.PEM).decode("ascii")
            return {"private_key": key_pem, "public_certificate": cert_pem}
    if not thumbprint:
        raise ConfigError(
            f"{name}: {path} holds no certificate; add it to the file, "
            "or set [microsoft] certificate_thumbprint"
        )
    return {"private_key": key_pem, "thumbprint": thumbprint.upper()}


def error_of(response: httpx.Response) -> tuple[str, str]:
    """Graph's error code and message (`{"error": {"code", "message"}}`), or the status's text."""
    try:
        error = response.json()["error"]
        return str(error.get("code") or ""), " ".join(str(error.get("message") or "").split())[:300]
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", " ".join(response.text.split())[:300] or response.reason_phrase
