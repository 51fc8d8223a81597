"""End to end, `preview RULE [--event ID] --send-to ADDRESS`: a test to one colleague, through the CLI.

Every command runs as `python -m daemon` in a subprocess against a real aiosmtpd server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from tests.e2e.support import REP, Deployment, addresses, write_config
from tests.support.ics import DANA, LEE, H, meeting, now_utc
from tests.support.smtp import TroubledHandler, serving

Deploy = Callable[..., Deployment]
ANN = "ann@acme.example"
SENT_LINE = re.compile(r'^sent a test of (\S+) to (\S+) \(subject "(\[TEST\] .+)"\)$')


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_send_to_mails_the_events_email_to_one_address_and_history_shows_a_test(deploy: Deploy) -> None:
    # Given a lost call with Globex in the ledger: its thank-you to Dana and Lee, from the rep, is planned
    ft = deploy()
    now = now_utc()
    ft.write_calendar(
        meeting(
            "globex-lost@acme.example",
            now - 3 * H,
            now - 2 * H,
            "Globex terms #closing #lost",
            attendees=[DANA, LEE],
        )
    )
    assert ft.tick().code == 0
    assert ft.mail.messages() == []
    preview = ft.cli("preview", "lost-thank-you", "--event", "globex-lost")
    assert preview.code == 0, preview.output
    subject = re.search(r"^Subject: (.+)$", preview.stdout, re.MULTILINE)
    assert subject, preview.stdout

    # When a test of it is sent to Ann
    result = ft.cli("preview", "lost-thank-you", "--event", "globex-lost", "--send-to", ANN)

    # Then it says so in one line, naming the rule, the address and the subject
    assert result.code == 0, result.output
    [line] = result.stdout.splitlines()
    match = SENT_LINE.match(line)
    assert match, line
    assert match.groups() == ("lost-thank-you", ANN, f"[TEST] {subject.group(1)}")
    # And Ann alone got it: the envelope and the headers name no customer, no rep, no Cc
    [received] = ft.mail.messages()
    assert received.rcpt_tos == (ANN,)
    assert addresses(received.message["To"]) == {ANN} and received.message["Cc"] is None
    head = "\n".join(received.header_lines).lower()
    assert DANA[0] not in head and LEE[0] not in head
    assert received.message["Subject"] == f"[TEST] {subject.group(1)}"
    assert addresses(received.message["From"]) == {REP[0]}  # from the rep, as the real one

    # And `history` shows it as a test, in the table and as JSON
    table = ft.cli("history")
    assert table.code == 0, table.output
    assert re.search(rf"sent \(test\)\s+lost-thank-you\s+{re.escape(ANN)}", table.stdout), table.stdout
    as_json = ft.cli("history", "--json")
    assert as_json.code == 0, as_json.output
    [test] = json.loads(as_json.stdout)
    assert (test["test"], test["rule"], test["to"], test["cc"], test["status"]) == (
        True,
        "lost-thank-you",
        [ANN],
        [],
        "sent",
    )
    assert test["key"] == received.key and test["key"].startswith("test:lost-thank-you:globex-lost@")
    # And `history --key` tells its life; `plan` does not list it
    life = ft.cli("history", "--key", test["key"])
    assert life.code == 0 and "-> sent" in life.stdout, life.output
    assert all(s["test"] is False for s in ft.plan())
    assert test["key"] not in {s["key"] for s in ft.plan()}

    # When the next pass runs, then the test is not sent again
    assert ft.tick().code == 0
    assert ft.mail.arrivals()[test["key"]] == 1
    # And `resolve` refuses it in one line
    resolve = ft.cli("resolve", test["key"], "resend")
    assert resolve.code == 1 and "is a test" in one_line_error(resolve.stderr)


def test_send_to_sample_data_needs_no_calendar_event(deploy: Deploy) -> None:
    # Given a fresh deployment, nothing read yet
    ft = deploy()

    # When a test of the closing prep on sample data is sent to Ann, with her name
    result = ft.cli("preview", "closing-prep", "--send-to", f"Ann Lee <{ANN}>")

    # Then Ann got it, marked [TEST], and the line says so
    assert result.code == 0, result.output
    assert SENT_LINE.match(result.stdout.strip()), result.stdout
    [received] = ft.mail.messages()
    assert received.rcpt_tos == (ANN,)
    assert str(received.message["Subject"]).startswith("[TEST] ")
    assert received.key.startswith("test:closing-prep:sample:")


def test_send_to_an_address_outside_the_company_is_refused_in_one_line(deploy: Deploy) -> None:
    ft = deploy()
    # When a test is sent to a customer's address, or to two addresses
    for address in (DANA[0], f"{ANN}, {DANA[0]}"):
        result = ft.cli("preview", "closing-prep", "--send-to", address)

        # Then it fails with one line naming the address, and nothing is sent or recorded
        assert result.code == 1, result.output
        assert address in one_line_error(result.stderr)
    assert ft.mail.messages() == []
    assert json.loads(ft.cli("history", "--json").stdout) == []


def test_a_test_the_server_refuses_exits_1_in_one_line_and_is_recorded_failed(tmp_path: Path) -> None:
    with serving(TroubledHandler(refuse={ANN})) as server:
        # Given a mail server that refuses Ann's mailbox
        ft = Deployment(tmp_path, server, write_config(tmp_path, server.port), tmp_path / "calendar.ics")
        ft.write_calendar()

        # When a test is sent to her
        result = ft.cli("preview", "closing-prep", "--send-to", ANN)

    # Then the command fails in one line with the server's answer
    assert result.code == 1, result.output
    error = one_line_error(result.stderr)
    assert ANN in error and "550" in error
    # And history shows a failed test, with the reason
    [test] = json.loads(ft.cli("history", "--json").stdout)
    assert (test["test"], test["status"]) == (True, "failed")
    assert "550 5.1.1" in test["reason"]
    table = ft.cli("history").stdout
    assert "failed (test)" in table, table


def test_send_to_does_not_go_with_html(deploy: Deploy) -> None:
    # When --html is asked for with --send-to, then it is a usage error, and nothing is sent
    ft = deploy()
    result = ft.cli("preview", "closing-prep", "--html", "--send-to", ANN)
    assert result.code == 2, result.output
    assert ft.mail.messages() == []
