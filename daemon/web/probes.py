"""/livez, /readyz and /metrics, for probes and scrapers: on the console's port, or, without the console,
on a small server of their own at [metrics] listen (`probes_app`).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from daemon import clock
from daemon.config import Settings
from daemon.health import Health
from daemon.ledger import Ledger, open_ledger
from daemon.metrics import CONTENT_TYPE, Metrics
from daemon.web.security import SecurityHeaders, TokenGuard

PROBE_PATHS = ("/livez", "/readyz")  # open to anyone who reaches the port: they say ok or not, no more


@dataclass
class Probes:
    """What the daemon in this process counts and knows of its calendars. The console on its own
    (`followthrough web`) has neither: its metrics are the ledger's, its readiness the ledger's."""

    metrics: Metrics
    health: Health

    @classmethod
    def without_daemon(cls, settings: Settings) -> Probes:
        return cls(Metrics(), Health(None, settings.schedule.poll_interval))


def routes(probes: Probes, ledger: Callable[[], Ledger]) -> list[Route]:
    """The three routes over `ledger` (which gives the open ledger of the server)."""

    def livez(_request: Request) -> Response:
        return PlainTextResponse("ok\n")

    def readyz(request: Request) -> Response:
        readiness = probes.health.check(ledger, clock.now())
        verbose = "verbose" in request.query_params
        return PlainTextResponse(readiness.text(verbose), 200 if readiness.ok else 503)

    def metrics(_request: Request) -> Response:
        return Response(probes.metrics.exposition(ledger), media_type=CONTENT_TYPE)

    # Plain functions: Starlette runs them in its thread pool, as the ledger's calls block.
    return [
        Route("/livez", livez, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET", "HEAD"]),
    ]


class SharedLedger:
    """One ledger for every request of the server, opened at the first and closed with the server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ledger: Ledger | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Ledger:
        with self._lock:
            if self._ledger is None:
                self._ledger = open_ledger(self.settings.store_url, self.settings.store.busy_timeout)
            return self._ledger

    def close(self) -> None:
        with self._lock:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None


def probes_app(settings: Settings, probes: Probes, metrics_token: str | None) -> Starlette:
    """The probes alone: /metrics needs `metrics_token` when there is one, else a loopback name."""
    ledger = SharedLedger(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ledger.close()

    return Starlette(
        routes=routes(probes, ledger),
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TokenGuard, token=None, metrics_token=metrics_token),
        ],
        lifespan=lifespan,
    )
