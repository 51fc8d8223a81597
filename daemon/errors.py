"""Errors of followthrough, all under one base class.

`UserError` and its children are shown as one actionable line, never a traceback.
"""

from __future__ import annotations


class FollowthroughError(Exception):
    """Base of every error followthrough raises on purpose."""


class UserError(FollowthroughError):
    """Something the user can fix: a bad argument, a missing file, an unknown event."""

    exit_code = 1


class ConfigError(UserError):
    """The configuration file or environment is invalid; the message names the key and file."""

    exit_code = 3


class LedgerError(UserError):
    """The ledger cannot be read or written: locked, read-only, full, unreachable."""

    exit_code = 5


class SourceError(FollowthroughError):
    """A calendar could not be read; the others still run."""


class TemplateError(UserError):
    """A template is missing, broken or refers to an undefined name."""

    exit_code = 4


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
