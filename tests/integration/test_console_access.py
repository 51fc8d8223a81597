"""Who may use the console: anyone on this machine without a token, only the token's holder with one.

A real uvicorn server on a free port, a real HTTP client; the token comes from the environment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from daemon.config import Settings, load
from daemon.errors import ConfigError
from daemon.web.security import COOKIE
from daemon.web.server import ConsoleServer
from tests.support.console import demo_folder, serving

TOKEN = "c0ns0le-t0ken-9f8e7d6c5b4a3f2e1d0c"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_folder(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def open_to_all(tmp_path: Path) -> Settings:
    """The demo with the console on every interface (port 0: any free one)."""
    config = demo_folder(tmp_path)
    with config.open("a", encoding="utf-8") as file:
        file.write('\n[web]\nlisten = "0.0.0.0:0"\n')
    return load(config)


@pytest.fixture
def secured(open_to_all: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN", TOKEN)
    with (
        serving(open_to_all, "0.0.0.0:0") as console,
        httpx.Client(base_url=f"http://127.0.0.1:{console.port}", timeout=30) as client,
    ):
        yield client


def test_on_loopback_no_token_is_needed(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN", raising=False)
    with serving(load(demo)) as console, httpx.Client(base_url=console.url, timeout=30) as client:
        assert client.get("/api/plan").status_code == 200
        assert client.get("/").status_code == 200
        # but a page whose host name was pointed at 127.0.0.1 (DNS rebinding) is refused
        assert client.get("/api/plan", headers={"Host": "evil.example:8025"}).status_code == 403


def test_beyond_loopback_without_a_token_it_refuses_to_start(
    open_to_all: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN_FILE", raising=False)
    with pytest.raises(ConfigError) as refused:
        ConsoleServer(open_to_all)
    assert "web.listen = '0.0.0.0:0'" in str(refused.value)
    assert "FOLLOWTHROUGH_WEB_ADMIN_TOKEN" in str(refused.value)


def test_with_a_token_the_api_answers_401_without_it_or_with_a_wrong_one(secured: httpx.Client) -> None:
    missing = secured.get("/api/plan")
    assert missing.status_code == 401 and missing.json()["error"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert secured.get("/api/plan", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert secured.get("/api/plan", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert secured.get("/api/preview/closing-prep").status_code == 401
    good = secured.get("/api/plan", headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200 and good.json()


def test_with_a_token_pages_send_to_the_login_form(secured: httpx.Client) -> None:
    page = secured.get("/history")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/history"
    form = secured.get("/login")
    assert form.status_code == 200 and 'name="token"' in form.text
    assert secured.get("/static/console.css").status_code == 200  # the form's own style


def test_the_login_form_sets_a_strict_http_only_cookie(secured: httpx.Client) -> None:
    wrong = secured.post("/login", data={"token": "not-the-token", "next": "/history"})
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    right = secured.post("/login", data={"token": TOKEN, "next": "/history"})
    assert right.status_code == 303 and right.headers["location"] == "/history"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie
    # the client keeps the cookie: pages and the API answer
    assert secured.get("/history").status_code == 200
    assert secured.get("/api/history").status_code == 200
    # and logging out forgets it
    secured.post("/logout")
    assert secured.get("/api/history").status_code == 401


def test_the_token_is_never_logged(
    open_to_all: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    with serving(open_to_all, "0.0.0.0:0") as console:
        base = f"http://127.0.0.1:{console.port}"
        httpx.post(base + "/login", data={"token": TOKEN}, timeout=30)
        httpx.post(base + "/login", data={"token": TOKEN + "x"}, timeout=30)
        httpx.get(base + "/api/plan", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert "console at" in caplog.text
    assert TOKEN not in caplog.text
