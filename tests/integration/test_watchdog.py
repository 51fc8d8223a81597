"""The watchdog pings systemd only while the daemon is healthy: on a real Unix datagram socket.

The daemon's health is a callable here, switched by the test; the pings' period is a tenth of a second.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from daemon.ledger import open_ledger
from daemon.systemd import Notifier, Systemd
from tests.support.cli import wait_for


def test_pings_stop_while_the_scheduler_is_unhealthy_and_start_again(tmp_path: Path) -> None:
    # Given systemd's notify socket and a watchdog of 0.2 s (a ping every 0.1 s)
    path = tmp_path / "notify"
    received: list[bytes] = []
    asked = {"count": 0}
    healthy = threading.Event()
    healthy.set()

    def is_healthy() -> bool:
        asked["count"] += 1
        return healthy.is_set()

    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger,
    ):
        sock.bind(str(path))
        sock.settimeout(0.05)

        def drain() -> int:
            while True:
                try:
                    received.append(sock.recv(4096))
                except TimeoutError:
                    return len(received)

        systemd = Systemd(Notifier(str(path), watchdog_usec=200_000), ledger, is_healthy)
        systemd.start()
        try:
            # When the daemon is healthy, WATCHDOG=1 comes
            wait_for(lambda: drain() >= 3, "three pings", seconds=30)
            assert set(received) == {b"WATCHDOG=1"}
            # When it is not (a job stuck, or stopping), the watchdog asks and no ping goes
            healthy.clear()
            drain()
            asked_then = asked["count"]
            wait_for(lambda: asked["count"] >= asked_then + 3, "the watchdog to ask three times", seconds=30)
            before = drain()
            wait_for(lambda: asked["count"] >= asked_then + 5, "two more asks", seconds=30)
            assert drain() == before
            # When it is healthy again, the pings resume
            healthy.set()
            wait_for(lambda: drain() >= before + 2, "pings again", seconds=30)
        finally:
            systemd.stopping()
        # And stopping says STOPPING=1
        wait_for(lambda: drain() > 0 and any(m.startswith(b"STOPPING=1") for m in received), "STOPPING=1")
