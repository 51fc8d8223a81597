"""Who may read /livez, /readyz and /metrics: probes always, scrapers on loopback or with their token.

Real uvicorn servers on free ports of 127.0.0.1: the console (`followthrough web`, whose probes see the
ledger alone) and the probes' own server; tokens come from the environment.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from daemon.config import Settings, load
from daemon.config.sections import MetricsConfig
from daemon.errors import ConfigError
from daemon.model import Status
from daemon.web.probes import Probes
from daemon.web.server import ProbeServer
from tests.support.console import demo_folder, serving
from tests.support.probes import get, readyz, scrape

ADMIN = "c0ns0le-t0ken-9f8e7d6c5b4a3f2e1d0c"
SCRAPER = "scr4per-t0ken-0a1b2c3d4e5f6a7b8c9d"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_folder(tmp_path_factory.mktemp("demo"))


@pytest.fixture(autouse=True)
def no_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEB_ADMIN_TOKEN", "METRICS_TOKEN"):
        monkeypatch.delenv(f"FOLLOWTHROUGH_{name}", raising=False)
        monkeypatch.delenv(f"FOLLOWTHROUGH_{name}_FILE", raising=False)


def pending(settings: Settings) -> int:
    from daemon.ledger import open_ledger

    with open_ledger(settings.store_url) as ledger:
        counts = ledger.counts()
    return counts.get(Status.PLANNED, 0) + counts.get(Status.CLAIMED, 0)


def test_the_console_serves_the_probes_and_the_ledgers_metrics_on_its_port(demo: Path) -> None:
    # Given the console alone on loopback, over the demo's ledger
    settings = load(demo)
    with serving(settings) as console:
        # When a probe and a scraper ask, without any token
        live = get(console.url, "/livez")
        status, text = readyz(console.url)
        got = scrape(console.url)
    # Then the process answers, it is ready (no daemon here: the ledger is all there is to check)
    assert (live.status_code, live.text) == (200, "ok\n")
    assert status == 200, text
    assert text.splitlines()[0].startswith("[+]ledger ok: answers (")
    # And the metrics hold the ledger's counts
    assert got.value("followthrough_sends_pending") == pending(settings) > 0
    assert got.value("followthrough_ledger_up") == 1


def test_with_the_admin_token_probes_stay_open_and_metrics_need_a_token(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the console with an admin token, and a token for scrapers
    monkeypatch.setenv("FOLLOWTHROUGH_WEB_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("FOLLOWTHROUGH_METRICS_TOKEN", SCRAPER)
    with serving(load(demo)) as console:
        url = console.url
        # Then probes need nothing
        assert get(url, "/livez").status_code == 200
        assert readyz(url, verbose=False) == (200, "ok\n")
        # And /metrics refuses no token, or a wrong one, with 401 and how to send it
        for headers in ({}, {"Authorization": "Bearer not-the-token-at-all"}):
            refused = get(url, "/metrics", headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"].startswith("Bearer")
        # And takes the scrapers' token, or the admin's
        assert scrape(url, SCRAPER).value("followthrough_ledger_up") == 1
        assert scrape(url, ADMIN).value("followthrough_ledger_up") == 1
        # But the scrapers' token opens nothing else
        assert get(url, "/api/plan", headers={"Authorization": f"Bearer {SCRAPER}"}).status_code == 401


def test_the_probes_own_server_answers_on_loopback_names_only(demo: Path) -> None:
    # Given the probes' own server on loopback, without a token
    settings = load(demo)  # no [metrics] table: its default, 127.0.0.1:9325, would be taken by a run
    settings = settings.model_copy(update={"metrics": MetricsConfig(listen="127.0.0.1:0")})
    server = ProbeServer(settings, Probes.without_daemon(settings)).start()
    try:
        # Then it answers its probes and metrics
        assert get(server.url, "/livez").text == "ok\n"
        assert scrape(server.url).value("followthrough_ledger_up") == 1
        # But not /metrics under a name pointed at 127.0.0.1 by another site (DNS rebinding)
        assert get(server.url, "/metrics", headers={"Host": "evil.example"}).status_code == 403
        # And nothing of the console
        assert get(server.url, "/api/plan").status_code == 404
    finally:
        server.stop()


def test_the_probes_own_server_beyond_loopback_needs_the_metrics_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given [metrics] listen on every interface
    config = demo_folder(tmp_path)
    with config.open("a", encoding="utf-8") as file:
        file.write('\n[metrics]\nlisten = "0.0.0.0:0"\n')
    settings = load(config)
    # When there is no metrics token, it refuses to start, naming the key and the variable
    with pytest.raises(ConfigError) as refused:
        ProbeServer(settings, Probes.without_daemon(settings))
    assert "metrics.listen = '0.0.0.0:0'" in str(refused.value)
    assert "FOLLOWTHROUGH_METRICS_TOKEN" in str(refused.value)
    # When there is one, it starts, and /metrics needs it
    monkeypatch.setenv("FOLLOWTHROUGH_METRICS_TOKEN", SCRAPER)
    server = ProbeServer(settings, Probes.without_daemon(settings)).start()
    try:
        url = f"http://127.0.0.1:{server.port}/"
        assert httpx.get(url + "metrics", timeout=30).status_code == 401
        assert scrape(url, SCRAPER).value("followthrough_ledger_up") == 1
        assert get(url, "/readyz").status_code == 200
    finally:
        server.stop()
