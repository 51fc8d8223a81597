"""Instance ids and liveness: a restarted daemon takes over a dead predecessor's work at once, and
never that of a process it cannot see (another host, another container sharing the host name)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from daemon.instances import dead_here, instance_id


def exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_process_of_this_host_and_pid_space_that_exited_is_dead_and_a_running_one_is_not() -> None:
    mine = instance_id()
    host, pid, _nonce, namespace = mine.split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert not dead_here(mine)
    assert dead_here(f"{host}:{exited_pid()}:0000:{namespace}")


def test_what_cannot_be_seen_from_here_counts_as_alive() -> None:
    host, _pid, _nonce, namespace = instance_id().split(":")
    gone = exited_pid()
    # Given ids of an exited pid in another pid namespace (a container with the same host name),
    # on another host, and in the older form without a namespace
    # Then none is declared dead: their leases run out instead
    assert not dead_here(f"{host}:{gone}:0000:{namespace}1")
    assert not dead_here(f"{host}-other:{gone}:0000:{namespace}")
    assert not dead_here(f"{host}:{gone}:0000")
