"""The console's guards: security headers on every answer, and the admin token (a bearer or a cookie).

The token is compared in constant time and never logged; the cookie holds a digest of it, not the token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import urllib.parse
from collections.abc import Awaitable, Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

COOKIE = "followthrough_console"
# Scripts only from our own static files, never inline. Styles inline too: the email's HTML, shown in
# a sandboxed srcdoc iframe, inherits this policy and is styled inline by nature. Images as emails
# reference them (https). The console is never framed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
OPEN_PATHS = ("/login", "/static/")  # what an anonymous visitor may fetch: the login form and its CSS
PUBLIC_PATHS = ("/outcome/", "/unsubscribe/", "/static/")  # reached from outside, through the company's proxy
PROBE_PATHS = ("/livez", "/readyz")  # for probes: they say ok or not ready, and name calendars at most
METRICS_PATH = "/metrics"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: reachable from this machine only."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def session_value(token: str) -> str:
    """What the cookie holds: derived from the token, so a leaked cookie jar does not show the token."""
    return hmac.new(token.encode(), b"followthrough console session", hashlib.sha256).hexdigest()


def same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class SecurityHeaders:
    """Adds the headers above to every answer; nothing the console answers is cached, but its assets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                headers["cache-control"] = "no-cache" if static else "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


class TokenGuard:
    """Lets a request through with the admin token (`Authorization: Bearer`, or the login cookie), or
    without one when none is set: then only under a loopback host name, so that a web page whose
    name was pointed at 127.0.0.1 (DNS rebinding) cannot use the console. /livez and /readyz are open;
    /metrics takes the metrics token too, and needs it (or the admin token) once there is one."""

    def __init__(self, app: ASGIApp, token: str | None, metrics_token: str | None = None) -> None:
        self.app = app
        self.token = token
        self.metrics_token = metrics_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self.refusal(request)
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    def refusal(self, request: Request) -> Response | None:
        path = request.url.path
        if path.startswith(PUBLIC_PATHS):  # the links in emails: their token is their permission
            return None
        if path in PROBE_PATHS:
            return None
        if path == METRICS_PATH and self.metrics_token is not None:
            if bearer(request.headers, self.metrics_token) or (
                self.token is not None and self.allowed(request.headers)
            ):
                return None
            return unauthorized("the metrics token is missing or wrong (Authorization: Bearer <token>)")
        if self.token is None:
            host = (request.url.hostname or "").lower()
            if not is_loopback(host):
                return JSONResponse(
                    {"error": f"the console answers only to a loopback name, not {host}"}, 403
                )
            return None
        if path.startswith(OPEN_PATHS) or self.allowed(request.headers):
            return None
        if path.startswith("/api/") or path == METRICS_PATH:
            return unauthorized("the admin token is missing or wrong (Authorization: Bearer <token>)")
        return RedirectResponse(f"/login?next={urllib.parse.quote(path)}", 303)

    def allowed(self, headers: Headers) -> bool:
        assert self.token is not None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given:
            return same(given.strip(), self.token)
        cookie = Request({"type": "http", "headers": headers.raw}).cookies.get(COOKIE)
        return cookie is not None and same(cookie, session_value(self.token))


def bearer(headers: Headers, token: str) -> bool:
    """The request carries `Authorization: Bearer <token>` (compared in constant time)."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(given) and same(given.strip(), token)


def unauthorized(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, 401, headers={"www-authenticate": 'Bearer realm="followthrough"'})


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path of ours, never another site (`//evil.example`)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


MAX_BODY = 16384  # bytes of a request body read at most: no form or JSON here comes near it


async def capped_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request's body, read no further than `limit` bytes: a public route must not take a gigabyte."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def login_routes(
    token: str | None, page: Callable[[Request, str | None, int, str], Response]
) -> tuple[Callable[[Request], Awaitable[Response]], Callable[[Request], Awaitable[Response]]]:
    """The login form (GET shows it, POST checks the token and sets the cookie) and logout."""

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return page(request, None, 200, safe_next(request.query_params.get("next")))
        body = await capped_body(request, 4096)
        fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        given = (fields.get("token") or [""])[0].strip()
        target = safe_next((fields.get("next") or [""])[0])
        if token is None:
            return RedirectResponse(target, 303)
        if not given or not same(given, token):
            log.warning(
                "console: a login with a wrong token from %s", request.client.host if request.client else "?"
            )
            return page(request, "That is not the admin token.", 401, target)
        response = RedirectResponse(target, 303)
        response.set_cookie(
            COOKIE,
            session_value(token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return login, logout


def cross_site(request: Request) -> bool:
    """A request another site's page made the browser send: its Origin is not this console's, or the
    browser says so (Sec-Fetch-Site). Requests without either header come from scripts, not pages."""
    origin = request.headers.get("origin")
    if origin is not None and urllib.parse.urlsplit(origin).netloc != request.headers.get("host"):
        return True
    return request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")
