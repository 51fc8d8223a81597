"""A small fake Gmail on 127.0.0.1: the OAuth token endpoint, `messages.send` and the message search.

One refresh token per account (`refresh-<account>`), scopes per account; the send method takes the plain
and the upload paths, and `answers` scripts the next sends' replies (None: the answer never leaves).
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from daemon.config.sections import GoogleConfig
from daemon.google.access import GMAIL_READ_SCOPE, GMAIL_SEND_SCOPE, GoogleAccess
from daemon.model import Person


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    account: str | None  # whose access token came with the request
    body: bytes


@dataclass
class FakeGmail:
    """Accounts, their grants and mailboxes; scripted answers for the next sends."""

    port: int = 0
    scopes: dict[str, set[str]] = field(default_factory=dict)  # account -> granted scopes
    revoked: set[str] = field(default_factory=set)
    mailboxes: dict[str, list[EmailMessage]] = field(default_factory=dict)
    answers: list[tuple[int, dict[str, Any]] | None] = field(default_factory=list)  # None: drop the line
    requests: list[Seen] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)  # each message taken, as the client sent it
    tokens: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # access token -> account, scopes
    delay: float = 0.0  # seconds before answering a send
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def grant(self, account: str, *scopes: str) -> None:
        self.scopes[account] = set(scopes)
        self.mailboxes.setdefault(account, [])

    def sends(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/messages/send")]

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        account = form.get("refresh_token", "").removeprefix("refresh-")
        if account not in self.scopes or account in self.revoked:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        wanted = set(form.get("scope", "").split()) or self.scopes[account]
        if not wanted <= self.scopes[account]:
            return 400, {"error": "invalid_scope", "error_description": "Bad Request"}
        with self.lock:
            access = f"access-{account}-{len(self.tokens)}"
            self.tokens[access] = (account, wanted)
        return 200, {
            "access_token": access,
            "expires_in": 3600,
            "token_type": "Bearer",
            "scope": " ".join(wanted),
        }


def error_answer(status: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": status, "message": message, "errors": [{"reason": reason}]}}


NOT_GRANTED = error_answer(403, "insufficientPermissions", "Request had insufficient authentication scopes.")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _seen(self, body: bytes) -> tuple[str | None, set[str]]:
        fake = self.server.fake
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        account, scopes = fake.tokens.get(token, (None, set()))
        with fake.lock:  # recorded before answering: once the client has its answer, it is here
            fake.requests.append(Seen(self.command, self.path.split("?")[0], account, body))
        return account, scopes

    def do_POST(self) -> None:
        fake = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/token":
            self._seen(body)
            form = dict(urllib.parse.parse_qsl(body.decode()))
            self._answer(*fake.token(form))
            return
        account, scopes = self._seen(body)
        if not self.path.split("?")[0].endswith("/messages/send"):
            self._answer(*error_answer(404, "notFound", "Not Found"))
            return
        if account is None:
            self._answer(*error_answer(401, "authError", "Invalid Credentials"))
            return
        if GMAIL_SEND_SCOPE not in scopes:
            self._answer(*NOT_GRANTED)
            return
        with fake.lock:
            scripted = fake.answers.pop(0) if fake.answers else (200, {})
        if fake.delay:
            threading.Event().wait(fake.delay)  # not time.sleep, which the tests silence for the library
        if scripted is None:  # the whole request arrived; the answer never leaves
            self.close_connection = True
            return
        if scripted[0] not in (200, 250):
            self._answer(*scripted)
            return
        upload = self.path.startswith("/upload/")  # the media path carries the message itself
        raw = body if upload else base64.urlsafe_b64decode(json.loads(body)["raw"])
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with fake.lock:
            fake.mailboxes[account].append(message)
            fake.raw.append(raw)
            number = len(fake.mailboxes[account])
        if scripted[0] == 250:  # scripted "sent, but the answer is lost on the way back"
            self.close_connection = True
            return
        self._answer(200, {"id": f"m{number}", "threadId": f"t{number}", "labelIds": ["SENT"]})

    def do_GET(self) -> None:
        fake = self.server.fake
        account, scopes = self._seen(b"")
        path, _, query = self.path.partition("?")
        if account is None:
            self._answer(*error_answer(401, "authError", "Invalid Credentials"))
            return
        if GMAIL_READ_SCOPE not in scopes:
            self._answer(*NOT_GRANTED)
            return
        if not path.endswith("/messages"):
            self._answer(*error_answer(404, "notFound", "Not Found"))
            return
        search = urllib.parse.parse_qs(query).get("q", [""])[0]
        wanted = search.removeprefix("rfc822msgid:").strip("<>")
        found = [
            {"id": f"m{i + 1}", "threadId": f"t{i + 1}"}
            for i, m in enumerate(fake.mailboxes.get(account, []))
            if search.startswith("rfc822msgid:") and str(m["Message-ID"]).strip("<>") == wanted
        ]
        self._answer(
            200, {"messages": found, "resultSizeEstimate": len(found)} if found else {"resultSizeEstimate": 0}
        )

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGmail


@contextmanager
def serving_gmail() -> Iterator[FakeGmail]:
    """The fake on a free port of 127.0.0.1 until the block ends. google-auth ignores the token_uri of
    an authorized-user file ("always overrides"): point its default at `fake.url + "token"` too."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeGmail(port=server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-gmail", daemon=True)
    thread.start()
    try:
        yield server.fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def access_for(gmail: FakeGmail, tmp_path: Path, *accounts: Person, timeout: float = 10.0) -> GoogleAccess:
    for person in accounts:
        token = {
            "type": "authorized_user",
            "client_id": "client-id",
            "client_secret": "client-secret",
            "refresh_token": f"refresh-{person.email}",
            "token_uri": f"{gmail.url}token",
        }
        (tmp_path / f"{person.email}.json").write_text(json.dumps(token))
    return GoogleAccess(GoogleConfig(token_dir=tmp_path, api_endpoint=gmail.url, timeout=timeout))
