"""Test sends (`preview RULE --send-to ADDRESS`) through real transports: an aiosmtpd server and the outbox.

The email is the one `preview` shows, to the address given only, `[TEST]` in its subject, recorded in the
ledger as a test that no later pass sends again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon import display, operations
from daemon.config import Settings, load
from daemon.engine import Engine
from daemon.errors import UserError
from daemon.ledger import open_ledger
from daemon.model import Status
from daemon.preview import preview_event, preview_sample
from daemon.testsend import send_test
from tests.support.config import smtp_table, write_config
from tests.support.ics import ALICE, DANA, LEE, calendar, meeting
from tests.support.smtp import Received, RecordingHandler, TroubledHandler, serving
from tests.support.world import World

H = timedelta(hours=1)
ANN = "ann@acme.example"  # the admin trying an email out
CUSTOMERS = (DANA[0], LEE[0])


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def deployment(directory: Path, port: int, *events: str) -> Settings:
    """A followthrough sending through 127.0.0.1:`port`, its calendar holding `events`."""
    (directory / "calendar.ics").write_text(calendar(*events), encoding="utf-8")
    return load(write_config(directory, smtp=smtp_table(port)))


def tick(settings: Settings, at: datetime) -> None:
    engine = Engine(settings)
    try:
        engine.tick(at)
    finally:
        engine.close()


def lost_call(start: datetime) -> str:
    """A closing call with Globex that was lost: its thank-you to Dana and Lee is planned, from Alice."""
    return meeting(
        "globex-lost@acme.example",
        start,
        start + H,
        "Globex terms #closing #lost",
        attendees=[DANA, LEE],
    )


def same_text(sent: str, rendered: str) -> bool:
    """The part as sent (CR LF line ends, a final newline) reads as the rendered text."""
    return sent.replace("\r\n", "\n").rstrip("\n") == rendered.rstrip("\n")


def header_block(received: Received) -> str:
    return "\n".join(received.header_lines).lower()


def only_to(received: Received, address: str) -> None:
    """The message went to `address` alone: in the envelope and in every address header."""
    assert received.rcpt_tos == (address,)
    message = received.message
    assert [a.addr_spec for a in message["To"].addresses] == [address]
    assert message["Cc"] is None and message["Bcc"] is None
    for customer in CUSTOMERS:
        assert customer not in header_block(received), f"{customer} in the headers of a test"


@dataclass
class SenderRefusingHandler(RecordingHandler):
    """A server that will not take mail from one sender (a relay refusing a From it does not own)."""

    refused_sender: str = ""

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if address.lower() == self.refused_sender:
            return "553 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"


# -- sample data --------------------------------------------------------------------------------------
def test_a_test_of_sample_data_is_the_preview_to_the_one_address_marked_test(tmp_path: Path) -> None:
    with serving(RecordingHandler()) as server:
        settings = deployment(tmp_path, server.port)
        # Given the implementation introduction: customer mail from the rep, copying the lead
        headers, shown = preview_sample(settings, "implementation-intro")

        # When a test of it on sample data is sent to Ann
        done = send_test(settings, "implementation-intro", None, f"Ann Lee <{ANN}>", now())

    # Then the server got one message, for Ann alone: no customer, no Cc, in the envelope or the headers
    [received] = server.handler.messages()
    only_to(received, ANN)
    # And it is the email `preview` shows, with [TEST] before its subject, from the rep as the real one
    message = received.message
    assert message["Subject"] == f"[TEST] {shown.subject}"
    assert same_text(received.part("plain"), shown.text)
    assert same_text(received.part("html"), shown.html)
    assert str(message["From"]) == dict(headers)["From"]
    assert received.mail_from == message["From"].addresses[0].addr_spec
    # And the result says what it did, under the key the message carries
    assert (done.address, done.subject, done.key) == (ANN, f"[TEST] {shown.subject}", received.key)
    assert done.key.startswith("test:implementation-intro:sample:") and done.note is None


# -- a real event ---------------------------------------------------------------------------------
def test_a_test_of_an_event_uses_its_data_and_no_later_pass_sends_it_again(tmp_path: Path) -> None:
    start = now() - 3 * H
    with serving(RecordingHandler()) as server:
        # Given a lost call with Globex in the ledger: its thank-you to Dana and Lee is planned, nothing due
        settings = deployment(tmp_path, server.port, lost_call(start))
        tick(settings, now())
        assert server.handler.messages() == []
        _, shown = preview_event(settings, "lost-thank-you", "globex-lost", now())

        # When a test of the thank-you for that event is sent to Ann, by a prefix of its id
        done = send_test(settings, "lost-thank-you", "globex-lost", ANN, now())

        # Then Ann alone got the event's email, as `preview --event` shows it, from Alice
        [received] = server.handler.messages()
        only_to(received, ANN)
        assert received.message["Subject"] == f"[TEST] {shown.subject}"
        assert same_text(received.part("plain"), shown.text)
        # The event's own data, not the sample's: Alice signs it, not the sample's Sam Rivera
        assert "Alice" in received.part("plain") and "Sam Rivera" not in received.part("plain")
        assert received.mail_from == ALICE[0]
        assert done.key.startswith("test:lost-thank-you:globex-lost@acme.example:")

        # And history shows it as a test of that rule and event, sent to Ann
        with open_ledger(settings.store_url) as ledger:
            [test] = [s for s in operations.history(ledger) if s.test]
            planned = operations.sends(ledger)
        as_json = display.send_json(test)
        assert (as_json["test"], as_json["rule"], as_json["event_id"], as_json["to"], as_json["status"]) == (
            True,
            "lost-thank-you",
            "globex-lost@acme.example",
            [ANN],
            "sent",
        )
        assert as_json["subject"] == f"[TEST] {shown.subject}" and as_json["key"] == done.key
        # And the plan does not list it: it is no send of the playbook
        assert all(not s.test for s in planned) and done.key not in {s.key for s in planned}

        # When the passes that follow run, up to when the real thank-you is due and past it
        tick(settings, now())
        tick(settings, start + H + 25 * H)

    # Then the real thank-you went to Dana and Lee, and the test was never sent again
    arrivals = server.handler.arrivals()
    assert arrivals[done.key] == 1
    assert arrivals["lost-thank-you:globex-lost@acme.example"] == 1
    [real] = server.handler.to(DANA[0])
    assert set(real.rcpt_tos) == set(CUSTOMERS)
    with open_ledger(settings.store_url) as ledger:
        record = ledger.send(done.key)
    assert record is not None and record.test and record.status is Status.SENT


# -- the sender ---------------------------------------------------------------------------------------
def test_a_test_the_server_refuses_as_the_rep_goes_from_the_service_sender_and_says_so(
    tmp_path: Path,
) -> None:
    with serving(SenderRefusingHandler(refused_sender=ALICE[0])) as server:
        # Given a lost call whose thank-you goes from Alice, and a server that refuses Alice as sender
        settings = deployment(tmp_path, server.port, lost_call(now() - 3 * H))
        tick(settings, now())

        # When a test of the thank-you is sent to Ann
        done = send_test(settings, "lost-thank-you", "globex-lost", ANN, now())

    # Then it went from the service sender, to Ann alone
    [received] = server.handler.messages()
    only_to(received, ANN)
    assert received.mail_from == "ft@acme.example" == received.message["From"].addresses[0].addr_spec
    # And the result and history say why
    assert done.sender == "ft@acme.example"
    assert done.note is not None and ALICE[0] in done.note and "553 5.7.1" in done.note
    with open_ledger(settings.store_url) as ledger:
        record = ledger.send(done.key)
    assert record is not None and record.status is Status.SENT and record.reason == done.note


# -- what fails ---------------------------------------------------------------------------------------
def test_a_test_the_server_refuses_is_reported_and_recorded_failed_with_the_reason(tmp_path: Path) -> None:
    with serving(TroubledHandler(refuse={ANN})) as server:
        settings = deployment(tmp_path, server.port)
        # When a test goes to an address the server refuses
        with pytest.raises(UserError) as failed:
            send_test(settings, "closing-prep", None, ANN, now())

    # Then it fails, in one line naming the rule, the address and the server's answer
    message = str(failed.value)
    assert "\n" not in message and "closing-prep" in message and ANN in message and "550" in message
    # And history shows it as a failed test, with the reason
    with open_ledger(settings.store_url) as ledger:
        [test] = operations.history(ledger)
    assert test.test and test.status is Status.FAILED
    assert test.reason is not None and "550 5.1.1" in test.reason
    assert test.key in message
    assert "failed (test)" in display.history_table([test], ZoneInfo("UTC"))


@pytest.mark.parametrize("address", ["dana@globex.com", "ann@acme.example, dana@globex.com", "ann"])
def test_a_test_to_anything_but_one_company_address_is_refused_before_anything_happens(
    tmp_path: Path, address: str
) -> None:
    with serving(RecordingHandler()) as server:
        settings = deployment(tmp_path, server.port, lost_call(now() - 3 * H))
        tick(settings, now())
        # When a test goes to a customer, to several addresses, or to no address at all
        with pytest.raises(UserError) as refused:
            send_test(settings, "lost-thank-you", "globex-lost", address, now())

    # Then it is refused naming the address, nothing is sent and nothing recorded
    assert address in str(refused.value) or repr(address) in str(refused.value)
    assert server.handler.messages() == []
    with open_ledger(settings.store_url) as ledger:
        assert ledger.tests() == []


def test_a_test_to_a_suppressed_address_is_refused(tmp_path: Path) -> None:
    with serving(RecordingHandler()) as server:
        settings = deployment(tmp_path, server.port)
        # Given Ann on the suppression list
        with open_ledger(settings.store_url) as ledger:
            ledger.suppress(ANN, now(), "asked to stop")
        # When a test goes to her, then it is refused, and nothing is sent
        with pytest.raises(UserError, match="suppression list"):
            send_test(settings, "closing-prep", None, ANN, now())
    assert server.handler.messages() == []


# -- the outbox ---------------------------------------------------------------------------------------
def test_a_test_through_the_outbox_is_a_file_addressed_to_the_one_address(tmp_path: Path) -> None:
    # Given a followthrough writing to its outbox
    world = World(tmp_path)
    settings = load(tmp_path / "followthrough.toml")
    headers, shown = preview_sample(settings, "lost-thank-you")

    # When a test of the thank-you is sent to Ann
    done = send_test(settings, "lost-thank-you", None, ANN, now())

    # Then the outbox holds that one message, to Ann alone, marked [TEST], the preview's text
    [(key, message)] = world.outbox().items()
    assert key == done.key
    assert [a.addr_spec for a in message["To"].addresses] == [ANN]
    assert message["Cc"] is None and message["Subject"] == f"[TEST] {shown.subject}"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and same_text(body.get_content(), shown.text)
    assert str(message["From"]) == dict(headers)["From"]
    # And it is no send of the playbook
    assert done.key not in world.sends()
