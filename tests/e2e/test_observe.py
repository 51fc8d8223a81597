"""Seeing `followthrough` run, as its operators do: /metrics, /livez and /readyz of a running daemon,
its JSON logs, and the progress line of a pass on a terminal, never on a pipe.

The CLI and the daemon are subprocesses on the real clock; metrics are read over HTTP and parsed with
prometheus_client's parser; a pseudo-terminal stands for the user's terminal.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import termios
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT
from tests.support.cli import Daemon, clean_env, command, run_cli, wait_for
from tests.support.ics import meeting, vevent
from tests.support.ports import free_port
from tests.support.probes import readyz, scrape
from tests.support.world import World

pytestmark = pytest.mark.slow  # each runs the daemon or the CLI as a subprocess
H = timedelta(hours=1)
DEADLINE = 90.0  # seconds: generous, for a slow CI machine


def a_call(world: World, uid: str) -> str:
    """A closing call 23 hours from now: its prep to the rep is due at once. Its send key."""
    now = datetime.now(UTC)
    world.write(vevent(uid, now + 23 * H, now + 24 * H))
    return f"closing-prep:{uid}"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line as a JSON object; fails naming the first line that is none."""
    objects = []
    for line in text.splitlines():
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(objects[-1], dict), line
    return objects


def test_run_serves_metrics_of_its_passes_and_is_unready_once_a_calendar_stops_syncing(
    tmp_path: Path,
) -> None:
    # Given a daemon that polls every 5 seconds, with [metrics] and no console, and a call whose prep
    # is due at once
    port = free_port()
    schedule = '[schedule]\npoll_interval = "5s"\njitter = 0'
    world = World(tmp_path, extra=f'{schedule}\n\n[metrics]\nlisten = "127.0.0.1:{port}"')
    key = a_call(world, "call-metrics")
    url = f"http://127.0.0.1:{port}/"
    daemon = Daemon.start(tmp_path / "followthrough.toml", tmp_path / "run.log")
    try:
        # When its first pass is done, it is ready, and its metrics say what the pass did
        wait_for(lambda: ready(daemon, url), "the daemon ready", daemon.output, DEADLINE)
        assert readyz(url)[1].splitlines()[1].startswith("[+]calendar cal ok: synced ")
        got = scrape(url)
        assert world.sends()[key][0].value == "sent"
        assert got.by("followthrough_sends_total", "rule", "status") == {("closing-prep", "sent"): 1}
        assert got.value("followthrough_send_lateness_seconds_count") == 1
        assert got.value("followthrough_sends_pending") == 2  # the call's final prompt and its nudge
        assert (got.value("followthrough_calendar_sync_duration_seconds_count", calendar="cal") or 0) >= 1

        # When its calendar starts failing (an error page where the calendar was)
        (tmp_path / "cal.ics").write_text("<html><body>502 Bad Gateway</body></html>", encoding="utf-8")

        # Then within three poll intervals of its last good sync it is not ready, naming the calendar
        wait_for(lambda: readyz(url)[0] == 503, "/readyz 503", daemon.output, DEADLINE)
        text = readyz(url)[1]
        assert "[-]calendar cal failed: last synced " in text and "3 poll intervals" in text, text
        assert "Bad Gateway" not in text
        assert readyz(url, verbose=False) == (503, "not ready\n")
        # And the process still answers, and counts the failed syncs
        assert up(url)
        assert (scrape(url).value("followthrough_calendar_sync_failures_total", calendar="cal") or 0) >= 1
        # And SIGTERM stops it cleanly
        assert daemon.stop(timeout=60) == 0, daemon.output()
    finally:
        daemon.kill()


def ready(daemon: Daemon, url: str) -> bool:
    return daemon.running() and up(url) and readyz(url)[0] == 200


def up(url: str) -> bool:
    try:
        answer = httpx.get(url + "livez", timeout=5)
    except httpx.TransportError:
        return False
    return answer.status_code == 200 and answer.text == "ok\n"


def test_run_with_the_console_serves_probes_on_its_port_and_logs_json_lines(tmp_path: Path) -> None:
    # Given [web] on a free port and [logging] format = "json", and a call whose prep is due at once
    port = free_port()
    world = World(tmp_path, extra=f'[web]\nlisten = "127.0.0.1:{port}"\n\n[logging]\nformat = "json"')
    key = a_call(world, "call-json")
    url = f"http://127.0.0.1:{port}/"
    daemon = Daemon.start(tmp_path / "followthrough.toml", tmp_path / "run.log")
    try:
        # When its first pass is done, the console's port answers the probes and /metrics
        wait_for(lambda: ready(daemon, url), "the daemon ready", daemon.output, DEADLINE)
        assert scrape(url).by("followthrough_sends_total", "rule", "status") == {("closing-prep", "sent"): 1}
        assert daemon.stop(timeout=60) == 0, daemon.output()
    finally:
        daemon.kill()
    # Then every line it logged is a JSON object with the time, level, logger and message
    lines = json_lines(daemon.output())
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert all(datetime.fromisoformat(line["time"]).tzinfo is not None for line in lines)
    # And the send's line carries its key as a field, the calendar's its name
    sent = [line for line in lines if line.get("send_key") == key]
    assert [line["logger"] for line in sent] == ["daemon.dispatch"]
    assert sent[0]["message"].startswith(f"send {key} sent to alice@acme.example")
    assert any(line.get("calendar") == "cal" and "1 new" in line["message"] for line in lines)
    # And the daemon's log has no progress line in it
    assert "\r" not in daemon.output()


def test_log_format_from_the_config_and_the_command_line_which_wins(tmp_path: Path) -> None:
    # Given a config that asks for JSON logs, and a call whose prep is due
    world = World(tmp_path, extra='[logging]\nformat = "json"')
    config = tmp_path / "followthrough.toml"
    key = a_call(world, "call-1")
    # When `tick` runs
    done = run_cli("-v", "tick", config=config)
    # Then its log (stderr) is JSON lines, the send's key a field; what it prints (stdout) is for people
    assert done.code == 0, done.output
    lines = json_lines(done.stderr)
    assert any(line.get("send_key") == key and line["level"] == "INFO" for line in lines), lines
    assert "Sent 1 email(s):" in done.stdout

    # When another call is due and `tick` runs with --log-format text, the command line wins
    key = a_call(world, "call-2")
    readable = run_cli("--log-format", "text", "-v", "tick", config=config)
    assert readable.code == 0, readable.output
    assert not readable.stderr.lstrip().startswith("{")
    assert f" INFO daemon.dispatch: send {key} sent to " in readable.stderr

    # When the config says text and the command line json, json it is
    config.write_text(config.read_text(encoding="utf-8").replace('"json"', '"text"'), encoding="utf-8")
    key = a_call(world, "call-3")
    shipped = run_cli("--log-format", "json", "-v", "tick", config=config)
    assert shipped.code == 0, shipped.output
    assert any(line.get("send_key") == key for line in json_lines(shipped.stderr))


def on_terminal(args: list[str], seconds: float = DEADLINE) -> tuple[int, bytes, bytes]:
    """Run a command with stderr on a pseudo-terminal (120 columns) and stdout on a pipe: its exit
    status, what the terminal showed, what went down the pipe."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        args, cwd=ROOT, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower
    )
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the command closed its end
                    break
                if not chunk:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
        stdout, _ = process.communicate(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    return process.returncode, shown, stdout


def test_a_first_pass_shows_its_progress_on_a_terminal_and_nothing_on_a_pipe(tmp_path: Path) -> None:
    # Given a calendar of 400 ordinary meetings and one closing call, never read before
    now = datetime.now(UTC)
    world = World(tmp_path)
    meetings = [meeting(f"m-{i}", now + i * H, now + i * H + H / 2, f"Sync {i}") for i in range(400)]
    world.write(*meetings, vevent("call-tty", now + 23 * H, now + 24 * H))
    config = tmp_path / "followthrough.toml"

    # When `tick` runs with its stderr on a terminal
    code, shown, stdout = on_terminal(command("tick", config=config))

    # Then the terminal showed one line redrawn in place: the calendar, the events read, the planning
    assert code == 0, (shown, stdout)
    terminal = shown.decode("utf-8", "replace")
    assert "calendar cal (1/1): reading…" in terminal, terminal
    assert "calendar cal (1/1): 401 events read" in terminal, terminal
    assert "planned 401/401" in terminal, terminal
    assert "\r" in terminal and "\n" not in terminal  # one line, redrawn, never a new one
    # And the line is gone at the end; the summary went to stdout, without any of it
    assert terminal.rstrip("\r\n").rsplit("\r", 1)[-1].strip() == ""
    out = stdout.decode()
    assert "Sent 1 email(s):" in out and "events read" not in out and "\r" not in out

    # When the same pass runs again with stderr on a pipe, the progress line is nowhere
    world.write(*meetings, vevent("call-tty-2", now + 23 * H, now + 24 * H))
    piped = run_cli("tick", config=config)
    assert piped.code == 0, piped.output
    assert "events read" not in piped.output and "reading…" not in piped.output and "\r" not in piped.output
