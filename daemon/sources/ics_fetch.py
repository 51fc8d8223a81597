"""An ICS feed's bytes, from a file or a URL: within its size limit, and whole or not at all.

A URL is fetched with its ETag/Last-Modified, so that an unchanged feed costs one conditional GET.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon.errors import SourceError
from daemon.sources.ics_events import short_error

_CHUNK = 1 << 20


def redact_url(url: str) -> str:
    """Private feed URLs carry their secret in the path or query: show only where they point."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


@dataclass
class Fetch:
    """Fetches one calendar's feed; `name` is the calendar's, for the errors."""

    name: str
    path: Path | None
    url: str | None
    timeout: float
    max_bytes: int

    @property
    def where(self) -> str:
        return str(self.path) if self.path else redact_url(self.url or "")

    def __call__(self, state: dict[str, Any]) -> tuple[bytes | None, dict[str, Any]]:
        """The feed's bytes, or None if the server says it has not changed; plus HTTP validators."""
        if self.path is not None:
            try:
                with self.path.open("rb") as file:
                    size = os.fstat(file.fileno()).st_size
                    if size > self.max_bytes:
                        raise self._too_big(size)
                    # As big as the file, not as max_bytes: read(n) sets aside n bytes first.
                    data = file.read(size + 1)
                    if len(data) > size:  # it grew while we read it
                        data += file.read(self.max_bytes + 1 - len(data))
            except OSError as exc:
                raise SourceError(
                    f"calendar {self.name!r}: cannot read {self.path}: {exc.strerror}"
                ) from None
            if len(data) > self.max_bytes:
                raise self._too_big()
            return data, {}
        assert self.url is not None
        request = urllib.request.Request(self.url, headers={"User-Agent": f"followthrough/{__version__}"})
        if state.get("etag"):
            request.add_header("If-None-Match", state["etag"])
        if state.get("last_modified"):
            request.add_header("If-Modified-Since", state["last_modified"])
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                headers = response.headers
                data = self._download(response, headers.get("Content-Length"))
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                return None, {}
            raise SourceError(
                f"calendar {self.name!r}: {self.where} answered HTTP {exc.code} {exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceError(f"calendar {self.name!r}: cannot fetch {self.where}: {reason}") from None
        except http.client.HTTPException as exc:  # e.g. a chunked response that broke off
            raise SourceError(
                f"calendar {self.name!r}: the download of {self.where} broke off: {short_error(exc)}"
            ) from None
        validators = {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified")}
        return data, {k: v for k, v in validators.items() if v}

    def _download(self, response: Any, length: str | None) -> bytes:
        """The body, read in chunks so that an oversized feed is refused before it fills memory."""
        announced = int(length) if length and length.strip().isdigit() else None
        if announced is not None and announced > self.max_bytes:
            raise self._too_big(announced)
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_big()
            chunks.append(chunk)
        if announced is not None and size < announced:  # the connection closed early
            raise SourceError(
                f"calendar {self.name!r}: the download of {self.where} broke off after {size} of "
                f"{announced} bytes"
            )
        return b"".join(chunks)

    def _too_big(self, size: int | None = None) -> SourceError:
        what = f"{size} bytes" if size is not None else "more than that"
        return SourceError(
            f"calendar {self.name!r}: {self.where} is larger than its max_bytes = {self.max_bytes} "
            f"({what}); not read. If it really is this big, raise max_bytes in its [[calendars]] entry"
        )
