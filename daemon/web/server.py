"""Serving the console with uvicorn, in a thread: beside the daemon in `run`, or alone in `followthrough web`.

The socket is bound here, before anything else starts, so a taken port, or an address beyond loopback
without an admin token, stops start-up with a message that names the key.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from types import FrameType

import uvicorn

from daemon.config import Settings
from daemon.config.sections import parse_listen
from daemon.errors import ConfigError, UserError
from daemon.web.app import create_app
from daemon.web.links import HideTokens
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


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; UserError naming the address when it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UserError(f"the console cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UserError(f"the console cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class ConsoleServer:
    """The console on a uvicorn server of its own, in a daemon thread; `start` returns once it answers."""

    def __init__(self, settings: Settings, listen: str | None = None) -> None:
        host, port, token = console_access(settings, listen)
        self.secured = token is not None
        self.socket = bind(host, port)
        self.port = int(self.socket.getsockname()[1])  # the one given, or the free one for port 0
        self.host = host
        access = logging.getLogger("uvicorn.access")
        if not any(isinstance(f, HideTokens) for f in access.filters):
            access.addFilter(HideTokens())
        if not log.isEnabledFor(logging.DEBUG):  # uvicorn's start and stop lines: -vv only
            logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        config = uvicorn.Config(
            create_app(settings, token),
            log_config=None,  # our logging, set up by the CLI
            access_log=log.isEnabledFor(logging.DEBUG),  # the preview polls every 1.5 s: -vv only
            lifespan="on",
            server_header=False,
            timeout_graceful_shutdown=int(STOP_TIMEOUT / 2),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="console", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        except BaseException:  # uvicorn exits on a failed start-up: say so, the thread ends
            log.exception("the console stopped")

    def start(self) -> ConsoleServer:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise UserError(f"the console did not start on {self.url} (see the log above)")
            time.sleep(0.02)
        log.info("console at %s%s", self.url, " (admin token required)" if self.secured else "")
        return self

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(STOP_TIMEOUT)
        self.socket.close()
        log.info("console stopped")


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
