"""`followthrough auth google`: the installed-app OAuth flow against a local fake of Google's
sign-in and token endpoints, run end to end as a user would (with --no-browser)."""

from __future__ import annotations

import json
import stat
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.support.cli import clean_env, popen, run_cli


class FakeSignIn(BaseHTTPRequestHandler):
    """/auth signs the user in at once and redirects back with a code; /token trades it."""

    token_requests: ClassVar[list[dict[str, list[str]]]] = []
    granted: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        FakeSignIn.granted[:] = query["scope"]
        back = (
            query["redirect_uri"][0]
            + "?"
            + urllib.parse.urlencode(
                {"code": "the-code", "state": query["state"][0], "scope": " ".join(query["scope"])}
            )
        )
        self.send_response(302)
        self.send_header("Location", back)
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        FakeSignIn.token_requests.append(urllib.parse.parse_qs(body))
        answer = json.dumps(
            {
                "access_token": "access-1",
                "refresh_token": "refresh-1",
                "expires_in": 3600,
                "token_type": "Bearer",
                "scope": " ".join(FakeSignIn.granted),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


ACCOUNT = ("auth", "google", "--account", "rep@acme.example", "--no-browser")


@pytest.fixture
def sign_in() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSignIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_auth_google_stores_a_refreshable_token_readable_only_by_its_owner(
    tmp_path: Path, sign_in: str
) -> None:
    # Given an OAuth client downloaded from the console and a config that points at it
    (tmp_path / "client.json").write_text(
        json.dumps(
            {
                "installed": {
                    "client_id": "cid.apps.example",
                    "client_secret": "not-so-secret",
                    "auth_uri": f"{sign_in}/auth",
                    "token_uri": f"{sign_in}/token",
                    "redirect_uris": ["http://localhost"],
                }
            }
        )
    )
    (tmp_path / "followthrough.toml").write_text(
        '[company]\nname = "Acme"\ndomains = ["acme.example"]\n'
        '[mail]\nfrom = "ft@acme.example"\n'
        '[google]\ntoken_dir = "tokens"\nclient_secrets_file = "client.json"\n'
    )
    env = clean_env(PYTHONUNBUFFERED="1", OAUTHLIB_INSECURE_TRANSPORT="1")  # the fake speaks plain http
    process = popen(
        *ACCOUNT,
        config=tmp_path / "followthrough.toml",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # When the user opens the printed address and signs in
        assert process.stdout is not None
        url = ""
        for line in process.stdout:
            if line.startswith("http"):
                url = line.strip()
                break
        assert url.startswith(f"{sign_in}/auth?"), url
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        assert set(query["scope"][0].split()) == {
            "https://www.googleapis.com/auth/calendar.events.readonly",
            "https://www.googleapis.com/auth/gmail.send",
        }
        assert query["login_hint"] == ["rep@acme.example"] and query["access_type"] == ["offline"]
        urllib.request.urlopen(url, timeout=30).read()
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    # Then the token is stored for the account, refreshable through the token_uri, mode 0600
    assert process.returncode == 0, output
    token = tmp_path / "tokens" / "rep@acme.example.json"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    stored = json.loads(token.read_text())
    assert stored["refresh_token"] == "refresh-1" and stored["token_uri"] == f"{sign_in}/token"
    assert FakeSignIn.token_requests[-1]["code"] == ["the-code"]
    assert "mode 0600" in output


def test_auth_google_without_a_client_file_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "followthrough.toml").write_text(
        '[company]\nname = "Acme"\ndomains = ["acme.example"]\n'
        '[mail]\nfrom = "ft@acme.example"\n[google]\ntoken_dir = "tokens"\n'
    )
    result = run_cli(*ACCOUNT, config=tmp_path / "followthrough.toml")
    assert result.code == 3
    assert "google.client_secrets_file" in result.stderr and "Desktop app" in result.stderr
