"""The outbox transport: each message becomes an .eml file in a folder, for dry runs and demos."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.errors import TransientDeliveryError
from daemon.mail import Readiness, Transport

if TYPE_CHECKING:
    from daemon.backends import Wiring


def file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:200] + ".eml"


class OutboxTransport(Transport):
    idempotent = True

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def from_config(cls, wiring: Wiring) -> OutboxTransport:
        return cls(wiring.settings.resolve(wiring.settings.mail.outbox_dir))

    def deliver(self, message: EmailMessage, envelope_from: str, recipients: Sequence[str]) -> dict[str, str]:
        key = str(message["X-Followthrough-Key"] or message["Message-ID"])
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Written whole or not at all: a crash never leaves half a message in the outbox.
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.directory / file_name(key))
        except OSError as exc:
            raise TransientDeliveryError(f"cannot write to outbox {self.directory}: {exc.strerror}") from None
        return {}

    def check(self, senders: Sequence[str]) -> list[Readiness]:
        """The folder takes a file (one written and removed), or can be made at the first send."""
        subject = f"outbox {self.directory}"
        fix = "check [mail] outbox_dir, or the folder's owner and permissions"
        if not self.directory.exists():
            parent = next((p for p in self.directory.parents if p.exists()), None)
            if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                problem = f"does not exist, and {parent} is not a writable folder; {fix}"
                return [Readiness(subject, problem=problem)]
            return [Readiness(subject, found=f"not there yet: made at the first send ({parent} is writable)")]
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            return [Readiness(subject, problem=f"cannot write a file there: {exc.strerror}; {fix}")]
        return [Readiness(subject, found="writable (a file written and removed); nothing sent")]
