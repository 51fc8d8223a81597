"""How the log reads: one readable line an event (the default), or one JSON object a line for log
shippers, with the send key, event id or calendar as fields when the call gives them (`extra=`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

Format = Literal["text", "json"]
FORMATS: tuple[Format, ...] = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLines(JsonFormatter):
    """{"time", "level", "logger", "message", then the call's fields (`send_key`, `event_id`,
    `calendar`) and `exc_info` with the traceback, if any}; the time in UTC, to the millisecond."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            # uvicorn's lines carry their message again with terminal colours: not for a shipper
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)


class Handler(logging.StreamHandler):
    """Ours on the root logger, to stderr: its format can be changed once the config is read."""


def formatter(kind: Format) -> logging.Formatter:
    return JsonLines() if kind == "json" else logging.Formatter(TEXT)


def setup(level: int, kind: Format = "text") -> None:
    """Log to stderr at `level`, in `kind`: as logging.basicConfig, nothing is added to a root logger
    that already has handlers (a test's)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(Handler())
        root.setLevel(level)
    use(kind)


def use(kind: Format) -> None:
    """Switch our handler to `kind` (the config's [logging] format, read after the command line)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, Handler):
            handler.setFormatter(formatter(kind))
