"""End to end, settings a person must fix: `followthrough tick` holds the mail, exits 1 naming the fix,
`plan` shows why, and once fixed everything goes out once; a failed send can be resent by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import REP, Deployment, write_config
from tests.support.ics import H, meeting, now_utc
from tests.support.private_ca import make_private_ca
from tests.support.smtp import AccountHandler, serving

Deploy = Callable[..., Deployment]
GAVIN = ("gavin@hooli.example", "Gavin Belson")


def test_tick_holds_the_mail_names_the_fix_and_sends_it_once_fixed(tmp_path: Path) -> None:
    # Given a mail server that takes mail only after STARTTLS, with a certificate from a private CA
    ca = make_private_ca(tmp_path / "tls")
    handler = AccountHandler()
    with serving(handler, tls_context=ca.server_context(), require_starttls=True) as server:
        # And followthrough with STARTTLS off, a customer thank-you and a rep prompt due now
        config = write_config(tmp_path, server.port)
        ft = Deployment(tmp_path, server, config, tmp_path / "calendar.ics")
        now = now_utc()
        ft.write_calendar(
            meeting(
                "hooli-lost@acme.example",
                now - 26 * H,
                now - 25 * H,
                "Hooli #closing #lost",
                attendees=[GAVIN],
            ),
            meeting("globex-next@acme.example", now + 23 * H, now + 24 * H, "Globex #closing"),
        )

        # When one pass runs
        result = ft.tick()

        # Then it exits 1 and says sending stopped, and which setting to change
        assert result.code == 1, result.output
        assert "SENDING STOPPED" in result.stdout and "set [mail.smtp] starttls = true" in result.stdout
        assert "2 due email(s) wait in the ledger" in result.stdout, result.stdout
        assert "Traceback" not in result.output
        assert handler.messages() == []
        # And `plan` shows both pending, each with the reason in full
        assert {s["status"] for s in ft.plan()} == {"pending"}
        thanks = ft.send("lost-thank-you", "hooli-lost@acme.example")
        assert thanks["status"] == "pending" and thanks["reason"].startswith("held: "), thanks
        shown = ft.cli("plan")
        assert f"lost-thank-you:hooli-lost@acme.example: {thanks['reason']}" in shown.stdout, shown.stdout

        # When STARTTLS is turned on and ca_file names the private CA, and a pass runs
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("starttls = false", 'starttls = true\nca_file = "tls/ca.pem"'))
        result = ft.tick()

    # Then both went out, once each, and the pass is clean
    assert result.code == 0, result.output
    assert sorted(r.message["X-Followthrough-Key"] for r in handler.messages()) == [
        "closing-prep:globex-next@acme.example",
        "lost-thank-you:hooli-lost@acme.example",
    ]
    assert ft.send("lost-thank-you", "hooli-lost@acme.example")["status"] == "sent"


def test_a_failed_send_can_be_sent_again_by_hand(deploy: Deploy) -> None:
    # Given a thank-you that failed: the server did not know the customer's mailbox
    ft = deploy()
    ft.mail.refuse.add(GAVIN[0])
    now = now_utc()
    event_id = "hooli-lost@acme.example"
    lost = meeting(event_id, now - 26 * H, now - 25 * H, "Hooli #closing #lost", attendees=[GAVIN])
    ft.write_calendar(lost)
    assert ft.tick().code == 1
    key = f"lost-thank-you:{event_id}"
    assert ft.send("lost-thank-you", event_id)["status"] == "failed"

    # When someone says it did arrive, then that is refused: the server said no
    wrong = ft.cli("resolve", key, "sent")
    assert wrong.code == 1 and "resend" in wrong.stderr, wrong.output

    # When the mailbox exists again and someone resends it deliberately, and a pass runs
    ft.mail.refuse.clear()
    resent = ft.cli("resolve", key, "resend")
    assert resent.code == 0, resent.output
    result = ft.tick()

    # Then it arrives, once, and is recorded sent
    assert result.code == 0, result.output
    assert len(ft.mail.to(GAVIN[0])) == 1
    assert ft.send("lost-thank-you", event_id)["status"] == "sent"


@dataclass
class HangingUpHandler(AccountHandler):
    """A server that, while `hang_up` is set, takes each message in and hangs up instead of answering."""

    hang_up: bool = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if self.hang_up:
            server.transport.close()
        return answer


@pytest.mark.parametrize("ended", ["failed", "unknown"])
def test_a_send_resent_by_hand_gets_a_fresh_window_for_its_retries(tmp_path: Path, ended: str) -> None:
    # Given a call that ended 28 hours ago with no outcome: the nudge to the rep came due 26 hours ago,
    # more than a day
    handler = HangingUpHandler()
    with serving(handler) as server:
        config = write_config(tmp_path, server.port, mail="resend_unknown_prompts = false")
        ft = Deployment(tmp_path, server, config, tmp_path / "calendar.ics")
        now = now_utc()
        event_id = "hooli-next@acme.example"
        ft.write_calendar(meeting(event_id, now - 29 * H, now - 28 * H, "Hooli #closing", attendees=[GAVIN]))
        # And the nudge failed, the server not knowing the mailbox; or was left unknown, the server
        # hanging up once it had the message
        if ended == "failed":
            handler.refuse.add(REP[0])
        else:
            handler.hang_up = True
        assert ft.tick().code == 1
        key = f"outcome-nudge:{event_id}"
        assert ft.send("outcome-nudge", event_id)["status"] == ended

        # When someone resends it deliberately, and the next pass meets a server busy for the moment
        handler.refuse.clear()
        handler.hang_up = False
        handler.trouble = {"RCPT": "451 4.3.0 Temporary lookup failure"}
        resent = ft.cli("resolve", key, "resend")
        assert resent.code == 0, resent.output
        result = ft.tick()

    # Then it is not given up on: it waits for its next try, its window counted from the resend
    assert result.code == 1, result.output
    assert f"Will retry: {key}: " in result.stdout and "Failed" not in result.stdout, result.stdout
    send = ft.send("outcome-nudge", event_id)
    assert send["status"] == "pending" and send["reason"].startswith("will retry at "), send
    assert "451 4.3.0 Temporary lookup failure" in send["reason"]
    assert datetime.fromisoformat(send["due"].replace("Z", "+00:00")) >= now, send
