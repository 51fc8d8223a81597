"""The console as a user starts it: `followthrough web`, and `run` with a [web] table, as subprocesses.

Given the demo in tmp_path, when the command starts, then the console answers on the port it logged,
refuses to start beyond loopback without a token, and stops cleanly with the daemon on SIGTERM.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.cli import Daemon, clean_env, popen, run_cli, wait_for
from tests.support.console import demo_folder

pytestmark = pytest.mark.slow
TOKEN = "e2e-console-token-5a4b3c2d1e0f"
LISTENING = re.compile(r"console at (http://127\.0\.0\.1:\d+/)")


def with_web(config: Path, listen: str) -> Path:
    with config.open("a", encoding="utf-8") as file:
        file.write(f'\n[web]\nlisten = "{listen}"\n')
    return config


def console_url(log: Path) -> str | None:
    found = LISTENING.search(log.read_text(encoding="utf-8", errors="replace"))
    return found.group(1) if found else None


def test_web_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    config = with_web(demo_folder(tmp_path), "0.0.0.0:0")
    done = run_cli("web", config=config)
    assert done.code == 3, done.output
    assert "web.listen = '0.0.0.0:0'" in done.stderr and "FOLLOWTHROUGH_WEB_ADMIN_TOKEN" in done.stderr
    assert "Traceback" not in done.output


def test_web_serves_with_a_token_and_stops_on_sigterm(tmp_path: Path) -> None:
    # Given `followthrough web` with an admin token in its environment
    config = demo_folder(tmp_path)
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        process = popen(
            "web",
            "--listen",
            "127.0.0.1:0",
            config=config,
            env=clean_env(FOLLOWTHROUGH_WEB_ADMIN_TOKEN=TOKEN),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: console_url(log) is not None, "the console's address in its log", log.read_text)
            url = console_url(log)
            assert url is not None
            # When a client asks without the token, and with it
            without = httpx.get(url + "api/plan", timeout=30)
            with_token = httpx.get(url + "api/plan", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            # Then only the token's holder gets the plan
            assert without.status_code == 401
            assert with_token.status_code == 200 and with_token.json()
        finally:
            process.terminate()
            code = process.wait(60)
    # and SIGTERM stops it cleanly
    assert code == 0, log.read_text()
    assert "console stopped" in log.read_text() and TOKEN not in log.read_text()


def test_run_serves_the_console_when_the_config_has_a_web_table(tmp_path: Path) -> None:
    # Given the daemon started with [web] in its config
    config = with_web(demo_folder(tmp_path), "127.0.0.1:0")
    daemon = Daemon.start(config, tmp_path / "run.log")
    try:
        wait_for(daemon.running, "the daemon to start", daemon.output)
        url = console_url(daemon.log)
        assert url is not None, daemon.output()
        # When the console is asked for the plan, then it answers from the daemon's ledger
        answer = httpx.get(url + "api/plan", timeout=30)
        assert answer.status_code == 200 and answer.json()
        assert httpx.get(url, timeout=30).status_code == 200
    finally:
        code = daemon.stop()
    # and SIGTERM stops both, cleanly
    assert code == 0, daemon.output()
    assert "console stopped" in daemon.output() and "followthrough stopped" in daemon.output()
