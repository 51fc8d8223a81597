"""Errors of followthrough, all under one base class, and the exit codes they map to.

`UserError` and `LedgerError` (and their children) are shown as one actionable line, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """The command line's exit codes: the one table the CLI's help and the README follow."""

    OK = 0
    FAILED = 1  # something failed or needs a decision: a calendar, a send, an unknown outcome, an argument
    USAGE = 2  # the command line itself is wrong (click's own)
    CONFIG = 3  # the configuration file or environment is invalid
    TEMPLATES = 4  # a template does not render
    LEDGER = 5  # the ledger cannot be used: locked, read-only, full, unreachable
    KILLED = 130  # stopped hard by a second signal


class FollowthroughError(Exception):
    """Base of every error followthrough raises on purpose."""

    exit_code = ExitCode.FAILED


class UserError(FollowthroughError):
    """Something the user can fix: a bad argument, a missing file, an unknown event."""


class ConfigError(UserError):
    """The configuration file or environment is invalid; the message names the key and file."""

    exit_code = ExitCode.CONFIG


class LedgerError(FollowthroughError):
    """The ledger cannot be read or written: locked, read-only, full, unreachable. Not the user's
    doing, but stated in one line all the same: nothing is lost, the next pass picks up."""

    exit_code = ExitCode.LEDGER


class SourceError(FollowthroughError):
    """A calendar could not be read; the others still run."""


class GrantError(FollowthroughError):
    """An account's credentials are missing, revoked or expired: a person must act."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a template: the file (relative to the template folder), the line, what."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line else self.file
        return f"{where}: {self.message}"

    def as_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "message": self.message}


class TemplateError(UserError):
    """A template is missing, broken or refers to an undefined name; `problem` says where."""

    exit_code = ExitCode.TEMPLATES

    def __init__(self, problem: Problem | str) -> None:
        self.problem = problem if isinstance(problem, Problem) else Problem("?", None, problem)
        super().__init__(str(self.problem) if isinstance(problem, Problem) else problem)


class DeliveryError(FollowthroughError):
    """A transport could not deliver a message."""

    transient = False


class TransientDeliveryError(DeliveryError):
    """Worth retrying later: a 4xx answer, a refused or dropped connection, a timeout."""

    transient = True


class UnknownDeliveryError(DeliveryError):
    """The message was handed over whole, then the answer was lost: it may or may not have arrived."""


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help: a 5xx answer such as an unknown mailbox."""


class UnsafeMessageError(PermanentDeliveryError):
    """The built message's headers are not what followthrough set: it is never handed over."""


class HeldDeliveryError(DeliveryError):
    """Neither the message's fault nor trouble that passes by itself: a person must change something
    first (the mail settings, the account, a recipient limit). The send waits in the ledger with the
    reason, and the try does not count toward giving up."""


class AccountDeliveryError(HeldDeliveryError):
    """The mail server refused our own connection, login or account (530, 534, 535, 538, a bad TLS
    setup, a 5xx refusal before any recipient was taken). Every other send would meet the same answer,
    so sending stops for this pass: for every sender, or only for `sender` when the server refused
    that envelope sender."""

    def __init__(self, message: str, sender: str | None = None) -> None:
        super().__init__(message)
        self.sender = sender
