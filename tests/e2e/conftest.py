"""End-to-end fixtures: a real SMTP server on 127.0.0.1 and a followthrough set up in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import Deployment, write_config
from tests.support.smtp import RecordingHandler, SlowHandler, SmtpServer, serving


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on a free port of 127.0.0.1 that records every envelope it accepts."""
    with serving(RecordingHandler()) as server:
        yield server


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
