"""Serving the console with uvicorn, in a thread: beside the daemon in `run`, or alone in `followthrough web`;
and, in `run` without the console, the probes and metrics on a server of their own.

The socket is bound here, before anything else starts, so a taken port, or an address beyond loopback
without its token, stops start-up with a message that names the key.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from types import FrameType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

from daemon.config import Settings
from daemon.config.sections import MetricsConfig, parse_listen
from daemon.errors import ConfigError, UserError
from daemon.web.app import create_app
from daemon.web.links import HideTokens
from daemon.web.probes import Probes, probes_app
from daemon.web.security import is_loopback

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0  # seconds for uvicorn to be ready once its socket is bound
STOP_TIMEOUT = 10.0  # seconds for open connections to finish when stopping


def console_access(settings: Settings, listen: str | None = None) -> tuple[str, int, str | None]:
    """Where to listen and the admin token; ConfigError when bound beyond loopback without one."""
    if listen is not None:
        try:
            host, port = parse_listen(listen)
        except ValueError as exc:
            raise UserError(f"--listen: {exc}") from None
        where = f"--listen {listen}"
    else:
        host, port = settings.web_listen()
        where = f"web.listen = {(settings.web.listen if settings.web else '127.0.0.1:8025')!r}"
    token = settings.web_admin_token()
    settings.links()  # the links' keys, when base_url is set: missing ones stop start-up, not a click
    if token is None and settings.web is not None and settings.web.base_url is not None:
        # Reached from outside through a proxy, whose requests all come from this machine.
        raise ConfigError(
            "web.base_url is set, so this server is reached from outside for the links in emails, and "
            "the console needs an admin token: set FOLLOWTHROUGH_WEB_ADMIN_TOKEN or _FILE"
        )
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"{where} reaches beyond this machine, so the console needs an admin token: set "
            "FOLLOWTHROUGH_WEB_ADMIN_TOKEN or FOLLOWTHROUGH_WEB_ADMIN_TOKEN_FILE, or listen on 127.0.0.1"
        )
    return host, port, token


def metrics_access(settings: Settings) -> tuple[str, int, str | None]:
    """Where the probes' own server listens and the metrics token; ConfigError when bound beyond
    loopback without one."""
    listen = (settings.metrics or MetricsConfig()).listen
    host, port = parse_listen(listen)
    token = settings.metrics_token()
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"metrics.listen = {listen!r} reaches beyond this machine, so /metrics needs a token: set "
            "FOLLOWTHROUGH_METRICS_TOKEN or FOLLOWTHROUGH_METRICS_TOKEN_FILE, or listen on 127.0.0.1"
        )
    return host, port, token


def bind(host: str, port: int, what: str = "the console") -> socket.socket:
    """A listening TCP socket; UserError naming the address when it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UserError(f"{what} cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UserError(f"{what} cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class ThreadedServer:
    """An ASGI app on a uvicorn server of its own, in a daemon thread; `start` returns once it answers."""

    what = "the server"

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.socket = bind(host, port, self.what)
        self.port = int(self.socket.getsockname()[1])  # the one given, or the free one for port 0
        self.host = host
        access = logging.getLogger("uvicorn.access")
        if not any(isinstance(f, HideTokens) for f in access.filters):
            access.addFilter(HideTokens())
        if not log.isEnabledFor(logging.DEBUG):  # uvicorn's start and stop lines: -vv only
            logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        config = uvicorn.Config(
            app,
            log_config=None,  # our logging, set up by the CLI
            access_log=log.isEnabledFor(logging.DEBUG),  # the preview polls every 1.5 s: -vv only
            lifespan="on",
            server_header=False,
            timeout_graceful_shutdown=int(STOP_TIMEOUT / 2),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name=self.what, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        except BaseException:  # uvicorn exits on a failed start-up: say so, the thread ends
            log.exception("%s stopped", self.what)

    def start(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise UserError(f"{self.what} did not start on {self.url} (see the log above)")
            time.sleep(0.02)
        self.started()
        return self

    def started(self) -> None:
        """Say where it listens."""

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(STOP_TIMEOUT)
        self.socket.close()
        log.info("%s stopped", self.what)


class ConsoleServer(ThreadedServer):
    """The console; in `run`, `watch` holds the daemon's metrics and health for its probes."""

    what = "the console"

    def __init__(self, settings: Settings, listen: str | None = None, watch: Probes | None = None) -> None:
        host, port, token = console_access(settings, listen)
        self.secured = token is not None
        super().__init__(create_app(settings, token, watch, settings.metrics_token()), host, port)

    def started(self) -> None:
        log.info("console at %s%s", self.url, " (admin token required)" if self.secured else "")


class ProbeServer(ThreadedServer):
    """/livez, /readyz and /metrics alone, at [metrics] listen: `run` without the console."""

    what = "the metrics server"

    def __init__(self, settings: Settings, watch: Probes) -> None:
        host, port, token = metrics_access(settings)
        self.secured = token is not None
        super().__init__(probes_app(settings, watch, token), host, port)

    def started(self) -> None:
        secured = " (metrics token required)" if self.secured else ""
        log.info("metrics at %smetrics, probes at /livez and /readyz%s", self.url, secured)


def serve_console(console: ConsoleServer) -> None:
    """`followthrough web`: serve until SIGTERM or SIGINT, then stop cleanly."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping the console", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    console.start()
    try:
        while not stop.wait(1.0):
            if not console.running:
                raise UserError("the console stopped unexpectedly (see the log above)")
    finally:
        console.stop()
