"""`followthrough run` under Type=notify, with the test playing systemd's side on a real notify socket.

A Unix datagram socket in tmp_path, NOTIFY_SOCKET pointed at it and WATCHDOG_USEC set, as systemd does;
the daemon is a subprocess on the real clock.
"""

from __future__ import annotations

import itertools
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.cli import Daemon, clean_env, wait_for
from tests.support.ics import vevent
from tests.support.world import World

pytestmark = pytest.mark.slow  # runs the daemon as a subprocess
H = timedelta(hours=1)
DEADLINE = 90.0  # seconds: generous, for a slow CI machine


@dataclass
class FakeSystemd:
    """The notify socket: every datagram received, with when it came (time.time())."""

    path: Path
    received: list[tuple[float, list[str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def listen(self, sock: socket.socket, stop: threading.Event) -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.received.append((time.time(), data.decode("utf-8").split("\n")))

    def messages(self) -> list[tuple[float, list[str]]]:
        with self._lock:
            return list(self.received)

    def with_field(self, name: str) -> list[tuple[float, list[str]]]:
        """The datagrams that carry `name=…` (READY, STATUS, WATCHDOG, STOPPING)."""
        prefix = name + "="
        return [(at, fields) for at, fields in self.messages() if any(f.startswith(prefix) for f in fields)]


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    path = tmp_path / "notify"
    assert len(str(path)) < 100, "a Unix socket's path must be short"
    fake = FakeSystemd(path)
    stop = threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        thread = threading.Thread(target=fake.listen, args=(sock, stop), daemon=True)
        thread.start()
        try:
            yield fake
        finally:
            stop.set()
            thread.join(5)


def test_run_tells_systemd_ready_status_watchdog_and_stopping(tmp_path: Path, systemd: FakeSystemd) -> None:
    # Given a call whose prep is due at once, a poll every 5 seconds, and systemd's notify socket with
    # a 2-second watchdog
    world = World(tmp_path, extra='[schedule]\npoll_interval = "5s"\njitter = 0')
    now = datetime.now(UTC)
    world.write(vevent("call-notify", now + 23 * H, now + 24 * H))
    env = clean_env(NOTIFY_SOCKET=str(systemd.path), WATCHDOG_USEC="2000000")
    started = time.time()
    daemon = Daemon.start(tmp_path / "followthrough.toml", tmp_path / "run.log", env=env)
    try:
        # When it has made its first sync, READY=1 arrives, with the pass's summary
        wait_for(lambda: bool(systemd.with_field("READY")), "READY=1", daemon.output, DEADLINE)
        ((ready_at, ready),) = systemd.with_field("READY")
        assert "READY=1" in ready
        (status,) = [f for f in ready if f.startswith("STATUS=")]
        assert "1 calendar(s) ok, 0 failing; 1 sent, 0 failed, 0 to retry; 2 pending, 0 unknown" in status
        # And only after the first sync and its sends: the prep was in the outbox before it
        (eml,) = (tmp_path / "outbox").glob("*.eml")
        assert eml.stat().st_mtime <= ready_at
        # And WATCHDOG=1 comes every second (half of WATCHDOG_USEC), from the start
        wait_for(lambda: len(systemd.with_field("WATCHDOG")) >= 4, "four pings", daemon.output, DEADLINE)
        pings = [at for at, _ in systemd.with_field("WATCHDOG")]
        assert pings[0] - started < 30
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert all(0.5 <= gap <= 5 for gap in gaps), gaps
        # And the next pass says how it went on a STATUS= line of its own, READY=1 said once only
        wait_for(lambda: len(systemd.with_field("STATUS")) >= 2, "a second STATUS=", daemon.output, DEADLINE)
        later = [fields for _, fields in systemd.with_field("STATUS")][1]
        assert "READY=1" not in later
        assert any(f.startswith("STATUS=last pass ") and "1 calendar(s) ok" in f for f in later), later
        assert not systemd.with_field("STOPPING")

        # When systemd stops it (SIGTERM), STOPPING=1 arrives and it exits cleanly
        daemon.signal(signal.SIGTERM)
        code = daemon.wait(60)
    finally:
        daemon.kill()
    assert code == 0, daemon.output()
    stopping = systemd.with_field("STOPPING")
    assert len(stopping) == 1 and "STOPPING=1" in stopping[0][1]
    assert len(systemd.with_field("READY")) == 1


def test_without_notify_socket_nothing_is_sent_and_all_runs_as_before(tmp_path: Path) -> None:
    # Given no NOTIFY_SOCKET (not under systemd, or Type=simple): the daemon runs and stops as ever
    world = World(tmp_path)
    now = datetime.now(UTC)
    world.write(vevent("call-plain", now + 23 * H, now + 24 * H))
    daemon = Daemon.start(tmp_path / "followthrough.toml", tmp_path / "run.log", "-vv")
    try:
        wait_for(lambda: "next wake-up at" in daemon.output(), "a whole pass", daemon.output, DEADLINE)
        assert daemon.stop(timeout=60) == 0, daemon.output()
    finally:
        daemon.kill()
    assert "systemd" not in daemon.output().lower()
