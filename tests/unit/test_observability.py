"""The pure parts of seeing the daemon run: the progress line's text, JSON log lines, systemd's
environment and status line, a transport error's kind, readiness's ages."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta

from daemon.delivery import ERROR_KINDS, error_kind
from daemon.engine import CalendarReport, PassReport
from daemon.errors import (
    AccountDeliveryError,
    HeldDeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownDeliveryError,
)
from daemon.health import ago
from daemon.logs import JsonLines
from daemon.model import Status
from daemon.progress import Progress, TerminalLine, on_terminal
from daemon.systemd import Notifier, status_field, summary


def test_the_progress_line_is_redrawn_in_place_and_cleared_at_the_end() -> None:
    # Given a progress line on a stream (drawn at every step: no wait between redraws)
    stream = io.StringIO()
    line = TerminalLine(stream, interval=0)
    # When a calendar is read and its events planned
    line.calendar("sales", 1, 2)
    assert line.text() == "calendar sales (1/2): reading…"
    line.read(1234)
    line.planning(10, 1234)
    assert line.text() == "calendar sales (1/2): 1,234 events read, planned 10/1,234"
    line.read(1)
    assert line.text().startswith("calendar sales (1/2): 1 event read")
    # And 12,500 stored events filed again (edited rules), then the next calendar
    line.stored("filing", 5000, 12500)
    assert line.text() == "stored events: filing 5,000/12,500"
    line.calendar("support", 2, 2)
    assert line.text() == "calendar support (2/2): reading…"
    line.done()
    # Then each state was drawn over the last, from the line's start, and the end blanks it out
    written = stream.getvalue()
    assert written.count("\r") >= 5 and "\n" not in written
    assert written.endswith("\r") and written.rsplit("\r", 2)[-2].strip() == ""


def test_no_progress_line_off_a_terminal() -> None:
    # Given a stream that is no terminal (a pipe, a file), nothing draws on it
    shown = on_terminal(io.StringIO())
    assert type(shown) is Progress


def test_a_json_log_line_has_time_level_logger_message_and_the_calls_fields() -> None:
    # Given a record as `log.info(..., extra={"send_key": ...})` makes it, with an exception
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "daemon.dispatch", logging.ERROR, __file__, 1, "send %s failed", ("k:1",), sys.exc_info()
        )
    record.send_key = "k:1"
    record.color_message = "send \x1b[1m%s\x1b[0m failed"  # as uvicorn adds to its lines
    record.created = datetime(2026, 12, 2, 15, 0, 1, 250000, tzinfo=UTC).timestamp()
    # When it is formatted as JSON
    line = JsonLines().format(record)
    # Then it is one object on one line, its fields named for shippers
    assert "\n" not in line
    data = json.loads(line)
    assert list(data)[:4] == ["time", "level", "logger", "message"]
    assert data["time"] == "2026-12-02T15:00:01.250+00:00"
    assert (data["level"], data["logger"], data["message"]) == ("ERROR", "daemon.dispatch", "send k:1 failed")
    assert data["send_key"] == "k:1"
    assert "color_message" not in data
    assert "ValueError: boom" in data["exc_info"]


def test_systemd_is_heard_only_through_a_unix_socket_and_its_watchdog_for_this_process() -> None:
    assert not Notifier.from_environment({}).enabled
    assert not Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    at_path = Notifier.from_environment({"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000"})
    assert at_path.enabled and at_path.ping_every == 15.0
    abstract = Notifier.from_environment({"NOTIFY_SOCKET": "@notify", "WATCHDOG_USEC": "2000000"})
    assert abstract.enabled and abstract.ping_every == 1.0
    # A watchdog meant for another process (WATCHDOG_PID) is not ours to ping
    other = {"NOTIFY_SOCKET": "@notify", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environment(other).ping_every is None
    ours = {**other, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environment(ours).ping_every == 1.0


def test_the_status_line_sums_up_a_pass_on_one_line() -> None:
    report = PassReport(calendars=[CalendarReport("sales"), CalendarReport("other", error="refused")])
    at = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    line = summary(report, at, {Status.PLANNED: 11, Status.CLAIMED: 1, Status.UNKNOWN: 2})
    assert line == (
        "last pass 2026-12-02 15:00:00 UTC; 1 calendar(s) ok, 1 failing; 0 sent, 0 failed, 0 to retry; "
        "12 pending, 2 unknown"
    )
    assert status_field("two\nlines  and\tspaces") == "STATUS=two lines and spaces"


def test_each_transport_error_has_a_kind_of_its_own() -> None:
    errors = [
        AccountDeliveryError("535 5.7.8 bad credentials"),
        HeldDeliveryError("552 too many recipients"),
        UnknownDeliveryError("connection lost after DATA"),
        TransientDeliveryError("421 busy"),
        PermanentDeliveryError("550 no such user"),
    ]
    assert tuple(error_kind(e) for e in errors) == ERROR_KINDS


def test_ages_read_as_a_person_says_them() -> None:
    assert [ago(timedelta(seconds=s)) for s in (-3, 0, 59, 119, 120, 7199, 7200, 90061)] == [
        "0s", "0s", "59s", "119s", "2m", "119m", "2h00m", "25h01m",
    ]  # fmt: skip
