"""The Gmail transport over real HTTP: the real client library against a small fake Gmail on 127.0.0.1.

The fake serves the OAuth token endpoint (one refresh token per account, scopes per account), the
send method (plain and upload paths), and the message search by `rfc822msgid:`.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from daemon.config import load
from daemon.errors import (
    HeldDeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownDeliveryError,
)
from daemon.google.access import GMAIL_READ_SCOPE, GMAIL_SEND_SCOPE
from daemon.mail.gmail import GmailTransport
from daemon.mail.message import build
from daemon.model import Person
from daemon.templates import Rendered
from tests.support.gmail_fake import FakeGmail, access_for, error_answer
from tests.support.ics import vevent
from tests.support.world import World

REP = Person("rita.rep@seller.example", "Rita Rep")
SERVICE = Person("followthrough@seller.example", "Followthrough")
CUSTOMER = Person("carl@customer.example", "Carl Customer")
COLLEAGUE = Person("cora@customer.example", "Cora")


@pytest.fixture(autouse=True)
def no_backoff(google_sleeps: list[float]) -> list[float]:
    """The library's retries, recorded instead of slept (see the fixture in conftest)."""
    return google_sleeps


def letter(
    key: str = "deal-7/recap/carl", *, sender: Person = REP, to: tuple[Person, ...] = (CUSTOMER,)
) -> EmailMessage:
    return build(
        key=key,
        rendered=Rendered(
            subject="Our call on Tuesday — next steps",
            text="Hello Carl,\n\nthank you for your time.\n",
            html="<p>Hello Carl,</p><p>thank you for your time.</p>",
        ),
        sender=sender,
        to=to,
        cc=(COLLEAGUE,),
        reply_to=REP,
        date=datetime(2026, 3, 3, 9, 30, tzinfo=UTC),
        unsubscribe="mailto:unsubscribe@seller.example?subject=unsubscribe",
    )


def recipients(message: EmailMessage) -> list[str]:
    return [a.addr_spec for f in ("To", "Cc") for a in message[f].addresses]


def test_a_built_message_arrives_as_the_same_mime_in_the_senders_mailbox(
    gmail: FakeGmail, tmp_path: Path
) -> None:
    # Given a rep with a gmail.send grant and a customer letter built like every transport's
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    transport = GmailTransport(access_for(gmail, tmp_path, REP))
    message = letter()

    # When it is delivered as the rep
    refused = transport.deliver(message, REP.email, recipients(message))

    # Then one send went to the rep's mailbox with the rep's own token, as raw MIME with every header intact
    assert refused == {}
    [send] = gmail.sends()
    assert send.path == "/gmail/v1/users/me/messages/send"
    assert send.account == REP.email
    [arrived] = gmail.mailboxes[REP.email]
    for header in ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "List-Unsubscribe"):
        assert str(arrived[header]) == str(message[header]), header
    assert str(arrived["From"]) == "Rita Rep <rita.rep@seller.example>"
    assert str(arrived["Subject"]) == "Our call on Tuesday — next steps"
    assert arrived["Bcc"] is None
    assert arrived.get_content_type() == "multipart/alternative"
    # Lines end in CRLF on the wire, as the SMTP policy writes them
    parts = {p.get_content_type(): p.get_content().replace("\r\n", "\n") for p in arrived.iter_parts()}
    assert parts == {
        "text/plain": "Hello Carl,\n\nthank you for your time.\n",
        "text/html": "<p>Hello Carl,</p><p>thank you for your time.</p>\n",
    }
    raw = base64.urlsafe_b64decode(json.loads(send.body)["raw"])
    assert raw == message.as_bytes()


@pytest.mark.parametrize(
    "injection",
    [
        "=?utf-8?q?Carl=0D=0ABcc:_attacker@evil.example?=",
        "=?utf-8?b?Q2FybA0KQ2M6IGF0dGFja2VyQGV2aWwuZXhhbXBsZQ==?=",
    ],
)
def test_encoded_words_in_a_customer_name_add_no_recipient_gmail_reads(
    gmail: FakeGmail, tmp_path: Path, injection: str
) -> None:
    # Given a customer whose display name, and a subject, carry an encoded CR LF and a recipient
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    transport = GmailTransport(access_for(gmail, tmp_path, REP))
    carl = Person(CUSTOMER.email, injection)
    message = build(
        key="deal-7/inject",
        rendered=Rendered(f"Next steps {injection}", "Hello\n", "<p>Hello</p>"),
        sender=Person(REP.email, injection),
        to=(carl,),
        reply_to=Person(REP.email, injection),
        date=datetime(2026, 12, 1, 9, tzinfo=UTC),
    )

    # When it is sent through Gmail, which takes the recipients from the headers
    transport.deliver(message, REP.email, [CUSTOMER.email])

    # Then the raw MIME Gmail received has only the header lines we set, and no other recipient
    [send] = gmail.sends()
    raw = base64.urlsafe_b64decode(json.loads(send.body)["raw"])
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")
    names = [line.split(":", 1)[0].lower() for line in head if line and not line[0].isspace()]
    assert names == [
        "from",
        "to",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "x-followthrough-key",
        "mime-version",
        "content-type",
    ], head
    [arrived] = gmail.mailboxes[REP.email]
    assert [a.addr_spec for a in arrived["To"].addresses] == [CUSTOMER.email]
    assert arrived["Bcc"] is None and arrived["Cc"] is None


def test_each_sender_sends_from_its_own_mailbox(gmail: FakeGmail, tmp_path: Path) -> None:
    # Given a rep and the service sender, each with its own grant
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    gmail.grant(SERVICE.email, GMAIL_SEND_SCOPE)
    transport = GmailTransport(access_for(gmail, tmp_path, REP, SERVICE))

    # When a customer letter goes out as the rep and a prompt as the service sender
    transport.deliver(letter(), REP.email, [CUSTOMER.email])
    prompt = letter("deal-7/prompt/rita", sender=SERVICE, to=(REP,))
    transport.deliver(prompt, SERVICE.email, [REP.email])

    # Then each landed in its own sender's mailbox, sent with that sender's credentials
    assert [s.account for s in gmail.sends()] == [REP.email, SERVICE.email]
    assert [str(m["From"]) for m in gmail.mailboxes[SERVICE.email]] == [
        "Followthrough <followthrough@seller.example>"
    ]
    assert len(gmail.mailboxes[REP.email]) == 1


def test_a_429_then_success_is_retried_by_the_library(
    gmail: FakeGmail, tmp_path: Path, no_backoff: list[float]
) -> None:
    # Given Gmail answers the first send with a rate limit
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    gmail.answers = [error_answer(429, "rateLimitExceeded", "Too many concurrent requests for user.")]
    transport = GmailTransport(access_for(gmail, tmp_path, REP))

    # When the message is delivered
    refused = transport.deliver(letter(), REP.email, [CUSTOMER.email])

    # Then the library backed off once and sent again: two requests, one message
    assert refused == {}
    assert len(gmail.sends()) == 2
    assert len(no_backoff) == 1
    assert len(gmail.mailboxes[REP.email]) == 1


def test_an_invalid_recipient_is_a_permanent_failure_with_gmails_words(
    gmail: FakeGmail, tmp_path: Path
) -> None:
    # Given Gmail rejects the message as invalid
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    gmail.answers = [error_answer(400, "invalidArgument", "Invalid To header")]
    transport = GmailTransport(access_for(gmail, tmp_path, REP))

    # When it is delivered, then it fails for good, quoting Gmail, after a single request
    with pytest.raises(PermanentDeliveryError, match="Invalid To header"):
        transport.deliver(letter(), REP.email, [CUSTOMER.email])
    assert len(gmail.sends()) == 1


def test_the_daily_limit_keeps_the_send_waiting_and_pauses_the_sender(
    gmail: FakeGmail, tmp_path: Path
) -> None:
    # Given Gmail says the rep's daily sending quota is used up
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    gmail.answers = [error_answer(403, "dailyLimitExceeded", "Daily user sending quota exceeded.")]
    transport = GmailTransport(access_for(gmail, tmp_path, REP))

    # When a send is delivered, then it is transient and says it waits in the ledger
    with pytest.raises(TransientDeliveryError, match=r"daily sending limit.*waits in the ledger"):
        transport.deliver(letter(), REP.email, [CUSTOMER.email])
    assert len(gmail.sends()) == 1

    # And the rep's next send waits too, without asking Gmail again
    with pytest.raises(TransientDeliveryError, match="paused until"):
        transport.deliver(letter("deal-8/recap/carl"), REP.email, [CUSTOMER.email])
    assert len(gmail.sends()) == 1


def test_a_mail_sending_rate_limit_after_retries_waits_in_the_ledger(
    gmail: FakeGmail, tmp_path: Path, no_backoff: list[float]
) -> None:
    # Given Gmail keeps answering the per-user mail sending limit, naming when to retry
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    limit = error_answer(
        429,
        "rateLimitExceeded",
        "User-rate limit exceeded (Mail sending). Retry after 2099-03-03T11:00:00.000Z",
    )
    gmail.answers = [limit] * 6
    transport = GmailTransport(access_for(gmail, tmp_path, REP))

    # When a send is delivered, then after the library's retries it waits until the named time
    with pytest.raises(TransientDeliveryError, match=r"waits in the ledger.*2099-03-03T11:00:00"):
        transport.deliver(letter(), REP.email, [CUSTOMER.email])
    assert len(gmail.sends()) == 6


def test_the_transport_counts_its_own_sends_against_the_daily_limit(gmail: FakeGmail, tmp_path: Path) -> None:
    # Given a daily limit of two messages
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    gmail.grant(SERVICE.email, GMAIL_SEND_SCOPE)
    transport = GmailTransport(access_for(gmail, tmp_path, REP, SERVICE), daily_limit=2)
    transport.deliver(letter("a"), REP.email, [CUSTOMER.email])
    transport.deliver(letter("b"), REP.email, [CUSTOMER.email])

    # When the rep sends a third, then it waits without reaching Gmail; another sender still sends
    with pytest.raises(TransientDeliveryError, match=r"daily limit \(2\).*waits in the ledger"):
        transport.deliver(letter("c"), REP.email, [CUSTOMER.email])
    assert len(gmail.sends()) == 2
    transport.deliver(letter("d", sender=SERVICE, to=(REP,)), SERVICE.email, [REP.email])
    assert len(gmail.sends()) == 3


def test_the_ledger_history_counts_against_the_daily_limit(gmail: FakeGmail, tmp_path: Path) -> None:
    # Given the ledger says the rep already sent 2,000 messages in the last day (before a restart)
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    asked: list[tuple[str, datetime]] = []

    def history(sender: str, since: datetime) -> int:
        asked.append((sender, since))
        return 2000

    transport = GmailTransport(access_for(gmail, tmp_path, REP), history=history)

    # When a send is delivered, then it waits, and Gmail was never asked
    with pytest.raises(TransientDeliveryError, match="waits in the ledger"):
        transport.deliver(letter(), REP.email, [CUSTOMER.email])
    assert gmail.sends() == []
    assert [sender for sender, _ in asked] == [REP.email]


def test_more_than_100_recipients_are_held_without_calling_gmail(gmail: FakeGmail, tmp_path: Path) -> None:
    # Given a message to 101 people
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    transport = GmailTransport(access_for(gmail, tmp_path, REP))
    crowd = tuple(Person(f"guest{i}@customer.example") for i in range(100))
    message = letter(to=crowd)  # and Cora in Cc

    # When it is delivered, then it is held for a person (as over [mail] max_recipients), naming
    # Gmail's limit, and no request was made
    with pytest.raises(HeldDeliveryError, match="at most 100"):
        transport.deliver(message, REP.email, recipients(message))
    assert gmail.requests == []


def test_a_revoked_grant_keeps_the_send_waiting_and_names_the_account(
    gmail: FakeGmail, tmp_path: Path
) -> None:
    # Given the rep revoked followthrough's access
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    gmail.revoked.add(REP.email)
    transport = GmailTransport(access_for(gmail, tmp_path, REP))

    # When a send is delivered, then it waits, naming the account and the command that fixes it
    with pytest.raises(TransientDeliveryError) as caught:
        transport.deliver(letter(), REP.email, [CUSTOMER.email])
    assert REP.email in str(caught.value)
    assert f"followthrough auth google --account {REP.email}" in str(caught.value)
    assert gmail.sends() == []

    # And once the grant is renewed, the next attempt sends
    gmail.revoked.clear()
    transport.deliver(letter(), REP.email, [CUSTOMER.email])
    assert len(gmail.mailboxes[REP.email]) == 1


def test_a_lost_answer_is_unknown_and_never_sent_twice(gmail: FakeGmail, tmp_path: Path) -> None:
    # Given Gmail takes the whole request, then the connection drops before its answer
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    gmail.answers = [None]
    transport = GmailTransport(access_for(gmail, tmp_path, REP))

    # When it is delivered, then the outcome is unknown, and neither httplib2 nor the library sent it again
    with pytest.raises(UnknownDeliveryError, match="answer was lost"):
        transport.deliver(letter(), REP.email, [CUSTOMER.email])
    assert len(gmail.sends()) == 1


def test_a_timeout_after_the_request_is_unknown(gmail: FakeGmail, tmp_path: Path) -> None:
    # Given Gmail is slower to answer a send than the client waits
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    gmail.delay = 1.5
    transport = GmailTransport(access_for(gmail, tmp_path, REP, timeout=0.5))

    # When it is delivered, then the outcome is unknown after a single request
    with pytest.raises(UnknownDeliveryError, match="answer was lost"):
        transport.deliver(letter(), REP.email, [CUSTOMER.email])
    assert len(gmail.sends()) == 1


def test_find_looks_the_message_up_by_its_message_id(gmail: FakeGmail, tmp_path: Path) -> None:
    # Given the rep's mailbox holds one sent letter and the grant includes gmail.readonly
    gmail.grant(REP.email, GMAIL_SEND_SCOPE, GMAIL_READ_SCOPE)
    transport = GmailTransport(access_for(gmail, tmp_path, REP))
    sent = letter()
    transport.deliver(sent, REP.email, [CUSTOMER.email])

    # When the transport looks up that Message-ID and another one
    found = transport.find(str(sent["Message-ID"]), REP.email)
    missing = transport.find(str(letter("deal-9/recap/carl")["Message-ID"]), REP.email)

    # Then the first is there and the second is not, both searched in the rep's mailbox
    assert (found, missing) == (True, False)
    searches = [r for r in gmail.requests if r.method == "GET"]
    assert [(r.path, r.account) for r in searches] == [("/gmail/v1/users/me/messages", REP.email)] * 2


def test_find_without_the_readonly_grant_cannot_tell_and_logs_once(
    gmail: FakeGmail, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a rep who granted gmail.send only, and a sent letter
    gmail.grant(REP.email, GMAIL_SEND_SCOPE)
    transport = GmailTransport(access_for(gmail, tmp_path, REP))
    sent = letter()
    transport.deliver(sent, REP.email, [CUSTOMER.email])

    # When the transport looks it up twice
    results = [transport.find(str(sent["Message-ID"]), REP.email) for _ in range(2)]

    # Then it cannot tell, says so once, and sending still works
    assert results == [None, None]  # cannot tell: not "not sent"
    assert len([r for r in caplog.records if GMAIL_READ_SCOPE in r.getMessage()]) == 1
    transport.deliver(letter("deal-8/recap/carl"), REP.email, [CUSTOMER.email])
    assert len(gmail.mailboxes[REP.email]) == 2


def test_find_when_gmail_is_unreachable_raises_transient(closed_port: int, tmp_path: Path) -> None:
    # Given Gmail cannot be reached at all
    fake = FakeGmail(port=closed_port)
    transport = GmailTransport(access_for(fake, tmp_path, REP, timeout=1.0))

    # When a lookup is made, then it fails as transient rather than answering "not sent"
    with pytest.raises(TransientDeliveryError):
        transport.find("<ft.0@seller.example>", REP.email)


def test_the_engine_sends_customer_mail_as_the_rep_and_prompts_as_the_service_sender(
    gmail: FakeGmail, tmp_path: Path
) -> None:
    # Given a config with Gmail as the transport, OAuth tokens for the rep and the service sender,
    # and a calendar with a closing call due for its prep and a lost call due for its thank-you
    from daemon.engine import Engine

    rep, service = Person("alice@acme.example", "Alice Moreno"), Person("ft@acme.example")
    for account in (rep, service):
        gmail.grant(account.email, GMAIL_SEND_SCOPE)
    (tmp_path / "tokens").mkdir()
    access_for(gmail, tmp_path / "tokens", rep, service)
    extra = (
        f'[google]\ntoken_dir = "tokens"\napi_endpoint = "{gmail.url}"\n'
        '[schedule]\nbusiness_hours = "00:00-24:00"\n'
        'business_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\n'
    )
    world = World(tmp_path, extra=extra)
    config = tmp_path / "followthrough.toml"
    config.write_text(config.read_text().replace('transport = "outbox"', 'transport = "gmail"'))
    now = datetime.now(UTC)
    world.write(
        vevent("call", now + timedelta(hours=23), now + timedelta(hours=24)),
        vevent("lost", now - timedelta(hours=26), now - timedelta(hours=25), "Globex #closing #lost"),
    )
    engine = Engine(load(config))
    try:
        # When a pass runs
        report = engine.tick(now)
    finally:
        engine.close()
    # Then the thank-you went from the rep's mailbox, the prompt from the service sender's
    assert {s.key for s in report.dispatch.sent} == {"closing-prep:call", "lost-thank-you:lost"}
    assert [str(m["X-Followthrough-Key"]) for m in gmail.mailboxes[rep.email]] == ["lost-thank-you:lost"]
    assert [str(m["X-Followthrough-Key"]) for m in gmail.mailboxes[service.email]] == ["closing-prep:call"]


def test_an_unknown_outcome_is_looked_up_in_the_sent_mail_and_never_sent_twice(
    gmail: FakeGmail, tmp_path: Path
) -> None:
    # Given Gmail stores the rep's thank-you but the answer is lost on the way back
    from daemon.engine import Engine
    from daemon.model import Status

    rep = Person("alice@acme.example", "Alice Moreno")
    gmail.grant(rep.email, GMAIL_SEND_SCOPE, GMAIL_READ_SCOPE)
    (tmp_path / "tokens").mkdir()
    access_for(gmail, tmp_path / "tokens", rep)
    extra = (
        f'[google]\ntoken_dir = "tokens"\napi_endpoint = "{gmail.url}"\n'
        '[schedule]\nbusiness_hours = "00:00-24:00"\nclaim_lease = "2m"\n'
        'business_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\n'
    )
    world = World(tmp_path, extra=extra)
    config = tmp_path / "followthrough.toml"
    config.write_text(config.read_text().replace('transport = "outbox"', 'transport = "gmail"'))
    now = datetime.now(UTC)
    world.write(vevent("lost", now - timedelta(hours=26), now - timedelta(hours=25), "Globex #closing #lost"))
    gmail.answers = [(250, {})]
    engine = Engine(load(config))
    try:
        engine.tick(now)
        # Then it is not guessed at once: it waits, handed over, for its lease to run out
        pending = engine.ledger.send("lost-thank-you:lost")
        assert pending is not None and pending.status is Status.CLAIMED and pending.handed_at is not None
        # When the lease has run out, the sent mail is searched and the send recorded as sent
        engine.dispatcher.dispatch_due(now + timedelta(minutes=3))
        done = engine.ledger.send("lost-thank-you:lost")
    finally:
        engine.close()
    assert (
        done is not None
        and done.status is Status.SENT
        and "found in the sender's sent mail" in (done.reason or "")
    )
    assert len(gmail.sends()) == 1 and len(gmail.mailboxes[rep.email]) == 1
