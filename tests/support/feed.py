"""A calendar published over HTTP on 127.0.0.1: a real server with ETag and Last-Modified, error
pages and downloads that break off, for the ICS source's tests and the CLI's.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class SeenRequest:
    """One request the feed server received, and the status it answered with."""

    path: str
    headers: dict[str, str]
    status: int


@dataclass
class CalendarFeed:
    """What the feed server publishes; tests change it between syncs like a real publisher would."""

    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    status: int = 200  # anything but 200 is answered as an error page
    # A download that breaks off: only the first `cut_at` bytes of the body are sent, then the
    # connection is closed; with `announce_length`, after promising the whole body's Content-Length.
    cut_at: int | None = None
    announce_length: bool = True
    requests: list[SeenRequest] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def publish(self, body: bytes, etag: str | None, last_modified: str | None = None) -> None:
        with self._lock:
            self.body, self.etag, self.last_modified = body, etag, last_modified

    def answer(self, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            if self.status != 200:
                page = b"<h1>Internal Server Error</h1>"
                return self.status, page, {"Content-Type": "text/html", "Content-Length": str(len(page))}
            validators = {"ETag": self.etag, "Last-Modified": self.last_modified}
            validators = {k: v for k, v in validators.items() if v}
            if self.etag and headers.get("If-None-Match") == self.etag:
                return 304, b"", validators
            extra = {"Content-Type": "text/calendar; charset=utf-8", **validators}
            if self.announce_length:
                extra["Content-Length"] = str(len(self.body))
            body = self.body if self.cut_at is None else self.body[: self.cut_at]
            return 200, body, extra


class _FeedHandler(BaseHTTPRequestHandler):
    """HTTP/1.0: the connection closes after each answer, which is what ends a body sent without a
    Content-Length, and what a download that breaks off looks like."""

    server: _FeedServer

    def do_GET(self) -> None:
        headers = dict(self.headers.items())
        status, body, extra = self.server.feed.answer(headers)
        # Recorded before answering: once the client has its answer, the record is already there.
        self.server.feed.requests.append(SeenRequest(self.path, headers, status))
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if status != 304:
            # A client may stop reading half way: a size limit at work.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


class _FeedServer(ThreadingHTTPServer):
    daemon_threads = True
    feed: CalendarFeed


@contextlib.contextmanager
def serving_feed() -> Iterator[CalendarFeed]:
    """A real HTTP server on 127.0.0.1 (a free port) that publishes one calendar with validators."""
    server = _FeedServer(("127.0.0.1", 0), _FeedHandler)
    server.feed = CalendarFeed(port=server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="calendar-feed", daemon=True)
    thread.start()
    try:
        yield server.feed
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
