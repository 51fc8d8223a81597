"""End-to-end fixtures: a real SMTP server on 127.0.0.1 and a followthrough set up in tmp_path."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.e2e.support import (
    Deployment,
    RecordingHandler,
    SlowHandler,
    SmtpServer,
    serving,
    write_config,
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on a free port of 127.0.0.1 that records every envelope it accepts."""
    handler = RecordingHandler()
    controller: Controller | None = None
    for _ in range(5):  # the port may be taken between asking for it and binding it: try another
        candidate = Controller(handler, hostname="127.0.0.1", port=_free_port(), ready_timeout=10)
        try:
            candidate.start()
        except (OSError, RuntimeError):
            continue
        controller = candidate
        break
    assert controller is not None, "could not start the SMTP server"
    try:
        yield SmtpServer(handler, "127.0.0.1", controller.port)
    finally:
        controller.stop()


@pytest.fixture
def deploy(tmp_path: Path, smtp: SmtpServer) -> Callable[..., Deployment]:
    """Set up a deployment in tmp_path; keyword arguments go to `write_config`."""

    def make(**kwargs: Any) -> Deployment:
        config = write_config(tmp_path, smtp.port, **kwargs)
        return Deployment(tmp_path, smtp, config, tmp_path / "calendar.ics")

    return make


@pytest.fixture
def slow_smtp() -> Iterator[SmtpServer]:
    """A real SMTP server that takes each message in, then waits a moment before answering 250."""
    with serving(SlowHandler()) as server:
        yield server
