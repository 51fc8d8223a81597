"""The CLI and the daemon as subprocesses: `python -m daemon` from the project root, as a user runs it.

The environment is the test's own without FOLLOWTHROUGH_* variables, so only the config in tmp_path
counts. `run_cli` waits for a command; `Daemon` is a long-running `followthrough run` with its output in
a file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.support import ROOT

TIMEOUT = 60  # seconds for a command to finish


def clean_env(**more: str) -> dict[str, str]:
    """This process's environment without FOLLOWTHROUGH_* variables, plus `more`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWTHROUGH_")} | more


def command(*args: str, config: Path | None = None) -> list[str]:
    """`python -m daemon [--config CONFIG] ARGS...`."""
    prefix = [sys.executable, "-m", "daemon"]
    return [*prefix, "--config", str(config), *args] if config is not None else [*prefix, *args]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, config: Path | None = None, env: dict[str, str] | None = None) -> Result:
    """Run one command to its end; what it printed and its exit status."""
    done = subprocess.run(
        command(*args, config=config),
        cwd=ROOT,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def popen(*args: str, config: Path | None = None, env: dict[str, str] | None = None, **options: Any) -> Any:
    """A command started and left running; `options` go to subprocess.Popen."""
    return subprocess.Popen(
        command(*args, config=config), cwd=ROOT, env=env if env is not None else clean_env(), **options
    )


@dataclass
class Daemon:
    """`followthrough run` as a process of its own, its output (stdout and stderr) in a log file."""

    process: subprocess.Popen[bytes]
    log: Path
    out: IO[bytes]

    @classmethod
    def start(cls, config: Path, log: Path, *options: str, env: dict[str, str] | None = None) -> Daemon:
        """`followthrough [OPTIONS] run`; `-vv` logs each pass's end ("next wake-up at"); `env`: its
        environment (default: this one without FOLLOWTHROUGH_* variables)."""
        out = log.open("wb")
        process = popen(*options, "run", config=config, env=env, stdout=out, stderr=subprocess.STDOUT)
        return cls(process, log, out)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        """Up, with its signal handlers in place (so SIGTERM now means a clean stop)."""
        assert self.process.poll() is None, self.output()[-3000:]
        return "followthrough running" in self.output()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Its exit status, once it has ended."""
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.out.close()

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM, as systemd would: the daemon finishes its job and exits; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """kill -9: no signal handler, no cleanup, no flush."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.wait(30)


def wait_for(
    condition: Callable[[], bool], what: str, detail: Callable[[], str] = lambda: "", seconds: float = TIMEOUT
) -> None:
    """Poll `condition` until it holds; past `seconds`, fail naming `what` and the `detail` (a log)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f} s for {what}\n{detail()}".rstrip())
        time.sleep(0.02)
