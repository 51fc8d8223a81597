"""The console as a Starlette application: the routes of the pages and the JSON API, and their guards.

`create_app` wires what pages.py and api.py serve over one `Console` (the settings and an open ledger).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from daemon.config import Settings
from daemon.ledger import Ledger
from daemon.links import Links
from daemon.web import api, links, pages, probes
from daemon.web.security import SecurityHeaders, TokenGuard, login_routes

HERE = Path(__file__).resolve().parent


@dataclass
class Console:
    """What every route works on: the settings, the company's zone, one ledger opened on first use
    (one connection pool for every request), and the page templates (autoescaped)."""

    settings: Settings
    token: str | None = None
    zone: ZoneInfo = field(init=False)
    html: Environment = field(init=False)
    links: Links | None = field(init=False)  # the links in emails this server reads, if it serves them
    _ledger: probes.SharedLedger = field(init=False)

    def __post_init__(self) -> None:
        self.zone = ZoneInfo(self.settings.company.timezone)
        self._ledger = probes.SharedLedger(self.settings)
        self.links = self.settings.links()
        self.html = Environment(
            loader=FileSystemLoader(str(HERE / "pages")),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def ledger(self) -> Ledger:
        return self._ledger()

    def close(self) -> None:
        self._ledger.close()

    def page(self, request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        body = self.html.get_template(name).render(
            request=request, path=request.url.path, company=self.settings.company.name,
            secured=self.token is not None, **values,
        )  # fmt: skip
        return HTMLResponse(body, status)


def create_app(
    settings: Settings,
    token: str | None = None,
    watch: probes.Probes | None = None,
    metrics_token: str | None = None,
) -> Starlette:
    """The console for these settings; with a token, every page and API call needs it. `watch`: the
    metrics and health of the daemon beside it in `run` (see probes.py)."""
    console = Console(settings, token)
    watch = watch or probes.Probes.without_daemon(settings)

    def login_page(request: Request, message: str | None, status: int, target: str) -> Response:
        return console.page(request, "login.html", status, message=message, next=target)

    login, logout = login_routes(token, login_page)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            console.close()

    routes = [
        Route("/", pages.schedule(console), name="schedule"),
        Route("/history", pages.history(console), name="history"),
        Route("/templates", pages.templates(console), name="templates"),
        Route("/templates/{rule}", pages.preview(console), name="preview"),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/plan", api.plan(console)),
        Route("/api/history", api.history(console)),
        Route("/api/templates", api.templates(console)),
        Route("/api/preview/{rule}", api.preview(console)),
        Route("/api/test-send", api.test_send(console), methods=["POST"]),
        Route("/outcome/{token}", links.outcome(console), methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", links.unsubscribe(console), methods=["GET", "POST"]),
        *probes.routes(watch, console.ledger),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TokenGuard, token=token, metrics_token=metrics_token),
        ],
        exception_handlers={404: api.not_found, 405: api.not_allowed},
        lifespan=lifespan,
    )
    app.state.console = console
    return app
