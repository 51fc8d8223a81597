"""A long pass shown on a terminal: one line on stderr, redrawn in place, cleared when the pass ends.

Only when stderr is a terminal (`tick`, `demo`): never on a pipe, in a file, or in the daemon's logs.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


class Progress:
    """What the engine tells of a pass as it goes. This one tells no one: the daemon, a pipe, a file."""

    def calendar(self, name: str, index: int, total: int) -> None:
        """Calendar `index` of `total` is being read."""

    def read(self, events: int) -> None:
        """The calendar gave this many new or changed events."""

    def planning(self, done: int, total: int) -> None:
        """`done` of the `total` events of this calendar are planned."""

    def stored(self, step: str, done: int, total: int) -> None:
        """The stored events are being filed or planned again (edited rules, an upgraded ledger):
        `step` ("filing", "planning"), `done` of `total`."""

    def done(self) -> None:
        """The pass is over: whatever was shown goes."""


class TerminalLine(Progress):
    """One line, redrawn at most every `interval` seconds, never wider than the terminal."""

    def __init__(self, stream: TextIO, interval: float = 0.1) -> None:
        self.stream = stream
        self.interval = interval
        self._where = ""
        self._events: int | None = None
        self._planned: tuple[int, int] | None = None
        self._step: str | None = None  # the stored events being filed or planned again
        self._shown = 0  # the width of what is on the line now
        self._last = float("-inf")

    def calendar(self, name: str, index: int, total: int) -> None:
        self._where = f"calendar {name} ({index}/{total})"
        self._events, self._planned, self._step = None, None, None
        self._draw(force=True)

    def read(self, events: int) -> None:
        self._events = events
        self._draw(force=True)

    def planning(self, done: int, total: int) -> None:
        self._planned = (done, total)
        self._draw(force=done == total)

    def stored(self, step: str, done: int, total: int) -> None:
        self._where, self._events, self._planned = "stored events", None, None
        self._step = f"{step} {done:,}/{total:,}"
        self._draw(force=done == total)

    def done(self) -> None:
        if self._shown:
            self._write("\r" + " " * self._shown + "\r")
            self._shown = 0

    def text(self) -> str:
        if self._step is not None:
            return f"{self._where}: {self._step}"
        where = self._where or "finishing an earlier pass"
        if self._events is None and self._planned is None:
            return f"{where}: reading…"
        read = self._events
        parts = [] if read is None else [f"{read:,} event{'' if read == 1 else 's'} read"]
        if self._planned is not None:
            parts.append(f"planned {self._planned[0]:,}/{self._planned[1]:,}")
        return f"{where}: {', '.join(parts)}"

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        line = self.text()[: max(self._width() - 1, 10)]
        self._write("\r" + line + " " * max(self._shown - len(line), 0))
        self._shown = len(line)

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            columns = 0
        return columns or 80  # 0: a terminal that does not say its size

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: the pass itself goes on
            pass


def on_terminal(stream: TextIO | None = None) -> Progress:
    """A progress line on `stream` (stderr) when it is a terminal; else one that shows nothing."""
    stream = stream if stream is not None else sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return TerminalLine(stream) if tty else Progress()
