"""Memory figures of the benchmark's own process, from Linux's /proc: what a pass held at its peak.

No followthrough imports here: the bare-parse baseline uses it too, and must not pay for them.
"""

from __future__ import annotations

import re
import resource
from pathlib import Path


def status_mb(key: str) -> float | None:
    """A memory figure of this process from /proc/self/status (Linux), in MiB."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    match = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def reset_peak_rss() -> bool:
    """Start VmHWM afresh from the current RSS (Linux >= 4.0), so the next reading is this pass's peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def peak_rss_mb(reset: bool) -> float:
    """The pass's peak RSS; without a reset, the process's, which is all getrusage can give.

    On Linux ru_maxrss also counts the parent's RSS at the moment of exec, so a child started by a big
    parent reports the parent's size: VmHWM has no such inheritance.
    """
    hwm = status_mb("VmHWM")
    return hwm if reset and hwm is not None else maxrss_mb()
