"""End to end, the mail a user gets: `followthrough tick` as a subprocess, delivering to a real SMTP server.

Each test writes an ICS calendar around the real current time, runs the CLI against a SQLite ledger in
tmp_path and looks at what the SMTP server received: envelopes, headers and bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email.utils import parsedate_to_datetime

from tests.e2e.support import REP, SENDER, Deployment, addresses, message_id_for
from tests.support.ics import IVY, H, meeting, now_utc

Deploy = Callable[..., Deployment]

DANA = ("dana.fox@globex.example", "Dana Fox")
LEE = ("lee.park@globex.example", "Lee Park")
GAVIN = ("gavin@hooli.example", "Gavin Belson")
PETER = ("peter@hooli.example", "Peter Gregory")
ALICE_EMAIL, IVY_EMAIL = REP[0], IVY[0]

# The implementation intro waits 30 minutes by default (time to undo a mistaken #won); these tests
# run against the real clock, so they ask for it at once, as the bundled demo does.
INTRO_AT_ONCE = """
[[rules]]
name = "implementation-intro"
offset = "0m"
"""


def test_tick_sends_the_closing_prep_to_the_rep_once_through_smtp(deploy: Deploy) -> None:
    # Given a closing call 23 hours from now, so its prep (24 hours before) is due now
    ft = deploy()
    now = now_utc()
    uid = "globex-terms@acme.example"
    ft.write_calendar(
        meeting(uid, now + 23 * H, now + 24 * H, "Globex final terms #closing", attendees=[DANA])
    )

    # When one pass runs
    result = ft.tick()

    # Then the rep gets exactly one prompt, from the configured sender, through the SMTP server
    assert result.code == 0, result.output
    assert "closing-prep" in result.stdout
    messages = ft.mail.messages()
    assert len(messages) == 1, messages
    got = messages[0]
    assert got.mail_from == SENDER
    assert list(got.rcpt_tos) == [ALICE_EMAIL]
    message = got.message
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        assert message[header], f"{header} missing"
    assert addresses(message["From"]) == {SENDER}
    assert addresses(message["To"]) == {ALICE_EMAIL}
    assert abs(parsedate_to_datetime(message["Date"]) - now) < timedelta(minutes=5)
    # And its Message-ID is the deterministic one, so a resend after a crash is recognisably the same
    assert message["Message-ID"] == message_id_for(f"closing-prep:{uid}", "acme.example")
    # And it has a plain and an HTML version, and says it is a machine prompt
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert got.part("plain").strip() and got.part("html").strip()
    assert message["Auto-Submitted"] == "auto-generated"

    # When the pass runs again
    again = ft.tick()

    # Then nothing more is sent, and that is not an error
    assert again.code == 0, again.output
    assert len(ft.mail.messages()) == 1


def test_won_call_introduces_implementation_to_all_customers_in_one_mail(deploy: Deploy) -> None:
    # Given a closing call tagged #won that ended 2 hours ago, with two customers and private notes
    ft = deploy(extra=INTRO_AT_ONCE)
    now = now_utc()
    secret = "PRIVATE-NOTE: they would pay 40 percent more, codeword AUBERGINE-7"
    ft.write_calendar(
        meeting(
            "globex-won@acme.example",
            now - 3 * H,
            now - 2 * H,
            "Globex contract review #closing #won",
            description=f"Dana signs; Lee's team does the work.\n{secret}",
            attendees=[DANA, LEE],
        )
    )

    # When one pass runs
    result = ft.tick()

    # Then the customers get one introduction, From the rep, copying implementation (not the rep,
    # who sends it)
    assert result.code == 0, result.output
    to_customers = ft.mail.to(DANA[0])
    assert len(to_customers) == 1, to_customers
    intro = to_customers[0]
    assert {a.lower() for a in intro.rcpt_tos} == {DANA[0], LEE[0], IVY_EMAIL}
    message = intro.message
    assert addresses(message["To"]) == {DANA[0], LEE[0]}
    assert addresses(message["Cc"]) == {IVY_EMAIL}
    assert intro.mail_from == ALICE_EMAIL
    (sender,) = message["From"].addresses
    assert (sender.addr_spec, sender.display_name) == (ALICE_EMAIL, "Alice Moreno")
    # And a reply reaches the rep (Reply-To if set, else From, which is the rep)
    assert (addresses(message["Reply-To"]) or addresses(message["From"])) == {ALICE_EMAIL}
    # And the rep's private notes stay out of the customer's mail
    assert "AUBERGINE-7" not in intro.content.decode("utf-8", "replace")
    assert "AUBERGINE-7" not in intro.part("plain") and "AUBERGINE-7" not in intro.part("html")

    # And implementation gets the handoff brief, copying the rep, with the rep's notes in it
    briefs = [r for r in ft.mail.to(IVY_EMAIL) if DANA[0] not in r.rcpt_tos]
    assert len(briefs) == 1, briefs
    brief = briefs[0].message
    assert addresses(brief["To"]) == {IVY_EMAIL}
    assert addresses(brief["Cc"]) == {ALICE_EMAIL}
    assert "AUBERGINE-7" in briefs[0].part("plain")
    assert len(ft.mail.messages()) == 2
    # And the internal brief says it is automated, so out-of-office replies leave it alone; the
    # customer's letter, written as from a person, does not
    assert brief["Auto-Submitted"] == "auto-generated"
    assert message["Auto-Submitted"] is None


def test_lost_call_thanks_the_customer_from_the_rep_with_an_unsubscribe_link(deploy: Deploy) -> None:
    # Given a closing call tagged #lost that ended 25 hours ago
    ft = deploy()
    now = now_utc()
    ft.write_calendar(
        meeting(
            "hooli-lost@acme.example",
            now - 26 * H,
            now - 25 * H,
            "Hooli decision #closing #lost",
            attendees=[GAVIN],
        )
    )

    # When one pass runs
    result = ft.tick()

    # Then the customer gets the thank-you, From the rep, with a mailto List-Unsubscribe
    assert result.code == 0, result.output
    received = ft.mail.to(GAVIN[0])
    assert len(received) == 1, ft.mail.messages()
    message = received[0].message
    assert received[0].mail_from == ALICE_EMAIL
    assert addresses(message["From"]) == {ALICE_EMAIL}
    assert addresses(message["To"]) == {GAVIN[0]}
    # (as sent on the wire: mail clients read this header raw, an RFC 2047 encoded-word hides it)
    unsubscribe = received[0].raw_header("List-Unsubscribe") or ""
    assert unsubscribe.startswith("<mailto:") and unsubscribe.endswith(">"), unsubscribe
    assert "=?" not in unsubscribe, unsubscribe
    assert str(message["List-Unsubscribe"]).startswith(f"<mailto:{SENDER}?")
    assert ft.send("lost-thank-you", "hooli-lost@acme.example")["status"] == "sent"


def test_hostile_event_text_adds_no_recipient_and_no_header(deploy: Deploy) -> None:
    # Given events whose title has an ICS-escaped newline followed by a Bcc line, and attendees whose
    # names try the same (a literal backslash-n, and RFC 6868's ^n which decodes to a real newline)
    ft = deploy()
    now = now_utc()
    # (and RFC 2047 encoded words, which Python's header folding decodes after our cleaning)
    title = "Deal\nBcc: evil@attacker.example =?utf-8?q?x=0D=0ABcc:_evil5@attacker.example?= #closing"
    mallory = ("mallory@initech.example", "Mallory\\nBcc: evil2@attacker.example")
    trent = ("trent@initech.example", "Trent^nBcc: evil3@attacker.example")
    oscar = ("oscar@initech.example", "=?utf-8?q?Oscar=0D=0ABcc:_evil4@attacker.example?=")
    ft.write_calendar(
        meeting(
            "hostile-next@acme.example", now + 23 * H, now + 24 * H, title, attendees=[mallory, trent, oscar]
        ),
        meeting(
            "hostile-lost@acme.example",
            now - 26 * H,
            now - 25 * H,
            title + " #lost",
            attendees=[mallory, trent, oscar],
        ),
    )
    assert "SUMMARY:Deal\\nBcc: evil@attacker.example =?utf-8" in ft.calendar.read_text(encoding="utf-8")

    # When one pass runs
    result = ft.tick()

    # Then the rep's prep and the customers' thank-you go out, to the real people only
    assert result.code == 0, result.output
    messages = ft.mail.messages()
    assert ft.mail.to(ALICE_EMAIL) and ft.mail.to(mallory[0]) and ft.mail.to(oscar[0]), messages
    for received in messages:
        assert not [a for a in received.rcpt_tos if "attacker" in a.lower()], received.rcpt_tos
        # And no message carries a Bcc header, nor any header line that starts with "Bcc"
        assert received.message["Bcc"] is None
        assert not [line for line in received.header_lines if line.lower().startswith("bcc")], (
            received.header_lines
        )
        for header in ("To", "Cc", "From", "Reply-To"):
            assert not [a for a in addresses(received.message[header]) if "attacker" in a]


def test_partly_refused_mail_still_reaches_the_others_and_records_the_refusal(deploy: Deploy) -> None:
    # Given a lost deal with two customers, one of whom the mail server does not know
    ft = deploy()
    ft.mail.refuse.add(PETER[0])
    now = now_utc()
    event_id = "hooli-two@acme.example"
    ft.write_calendar(
        meeting(
            event_id, now - 26 * H, now - 25 * H, "Hooli decision #closing #lost", attendees=[GAVIN, PETER]
        )
    )

    # When one pass runs
    result = ft.tick()

    # Then the other customer still gets the thank-you, and the refused one gets nothing
    assert "Traceback" not in result.output
    assert len(ft.mail.to(GAVIN[0])) == 1, ft.mail.messages()
    assert not ft.mail.to(PETER[0])
    # And `plan --json` shows the send as sent, naming the refused address and the server's answer
    send = ft.send("lost-thank-you", event_id)
    assert send["status"] == "sent"
    refused = send.get("refused") or {}
    assert PETER[0] in refused or PETER[0] in (send.get("reason") or ""), send
    assert "550" in (refused.get(PETER[0], "") + (send.get("reason") or "")), send
    # And `history` lists it
    history = ft.cli("history")
    assert history.code == 0, history.output
    assert "lost-thank-you" in history.stdout and GAVIN[0] in history.stdout


def test_suppressed_address_gets_no_mail_and_the_send_shows_stopped(deploy: Deploy) -> None:
    # Given the customer asked never to be written to again
    ft = deploy()
    added = ft.cli("suppress", "add", GAVIN[0], "--reason", "asked to stop")
    assert added.code == 0, added.output
    # And a lost deal with that customer
    now = now_utc()
    event_id = "hooli-suppressed@acme.example"
    ft.write_calendar(
        meeting(event_id, now - 26 * H, now - 25 * H, "Hooli decision #closing #lost", attendees=[GAVIN])
    )

    # When one pass runs
    result = ft.tick()

    # Then no thank-you reaches them, and the plan says it was stopped
    assert result.code == 0, result.output
    assert not ft.mail.to(GAVIN[0]), ft.mail.messages()
    assert ft.send("lost-thank-you", event_id)["status"] == "stopped"
    # And the suppression list shows the address until it is removed
    listed = ft.cli("suppress", "list")
    assert listed.code == 0 and GAVIN[0] in listed.stdout, listed.output
    removed = ft.cli("suppress", "remove", GAVIN[0])
    assert removed.code == 0, removed.output
    listed = ft.cli("suppress", "list")
    assert listed.code == 0 and GAVIN[0] not in listed.stdout, listed.output


def test_a_missing_calendar_does_not_stop_the_others(deploy: Deploy) -> None:
    # Given two calendars: one whose file does not exist, then a good one with a prep due now
    ft = deploy(calendars=[("lost-laptop", "no-such-calendar.ics"), ("sales", "calendar.ics")])
    now = now_utc()
    ft.write_calendar(
        meeting(
            "globex-next@acme.example", now + 23 * H, now + 24 * H, "Globex terms #closing", attendees=[DANA]
        )
    )

    # When one pass runs
    result = ft.tick()

    # Then the good calendar's mail still goes out
    assert len(ft.mail.to(ALICE_EMAIL)) == 1, ft.mail.messages()
    # And the failure is reported, naming the calendar, and the pass exits 1
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert failed and "lost-laptop" in failed[0], result.output
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
