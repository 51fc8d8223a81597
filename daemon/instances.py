"""Which daemon process holds a lease or a claim, and whether that process is known to be dead.

Every lease and claim records its owner's instance id; a dead owner's are taken over at once.
"""

from __future__ import annotations

import os
import socket
import uuid


def _pid_namespace() -> str:
    """Which process-id space this process lives in: containers sharing a host name each have their
    own, and a pid from another one says nothing about processes here."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def instance_id() -> str:
    """`host:pid:nonce:pid-namespace`, recorded with every lease and claim this process takes."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_pid_namespace()}"


def dead_here(instance: str) -> bool:
    """Whether an instance id names a process of this host, and of this pid namespace, that has died.

    A restarted daemon need not wait for its predecessor's lease to run out. Anything it cannot be
    sure of (another host, another container, an id from an older version) counts as alive: its
    lease runs out instead.
    """
    host, pid, _nonce, namespace = ([*instance.split(":"), "", "", ""])[:4]
    if host != socket.gethostname() or not pid.isdigit() or namespace != _pid_namespace() or namespace == "-":
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
