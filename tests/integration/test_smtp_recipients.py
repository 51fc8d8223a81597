"""Many recipients: a crowded invite is held for a person, and recipients a server puts off (4xx) get
the message later, while those it took never get it twice. A real aiosmtpd server, in process, with
T0 an hour ahead of the real clock (see test_smtp_faults).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from daemon.cli import cli
from daemon.delivery import DispatchReport
from daemon.engine import Engine
from daemon.model import Status
from tests.support import TEMPLATES_DIR
from tests.support.engine import Calls, start_engine
from tests.support.ics import calendar, vevent
from tests.support.smtp import TroubledHandler, serving

pytestmark = pytest.mark.usefixtures("either_pipelining")  # each test against both kinds of server

H = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


@dataclass
class LimitedHandler(TroubledHandler):
    """Takes at most `per_message` recipients in one transaction and puts off the rest with 452, as
    Postfix does past smtpd_recipient_limit."""

    per_message: int = 1000
    put_off: set[str] = field(default_factory=set)  # always answered 452 4.2.2

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.put_off:
            return "452 4.2.2 Mailbox full, try later"
        if len(envelope.rcpt_tos) >= self.per_message:
            return "452 4.5.3 Error: too many recipients"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    def copies(self) -> Counter[str]:
        """How many copies each address received."""
        return Counter(a.lower() for r in self.messages() for a in r.rcpt_tos)


def start(
    directory: Path, port: int, calls: Calls, engines: list[Engine], mail: str = "", extra: str = ""
) -> Engine:
    """A followthrough process; `mail` adds keys to [mail], `extra` tables at the end. Writing it
    again is a restart."""
    return start_engine(directory, port, calls, engines=engines, timeout=10, mail=mail + "\n", extra=extra)


def crowd(n: int, domain: str = "initech.example") -> list[tuple[str, str]]:
    return [(f"guest{i}@{domain}", f"Guest {i}") for i in range(n)]


def test_customer_mail_to_more_than_max_recipients_is_held_until_the_limit_is_raised(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given a lost deal whose invite had 60 customers, and a prep prompt to the rep, both due now
    calls = Calls()
    thanks = calls.lost("initech-lost", t0, crowd(60))
    prep = calls.closing("hooli-next", t0, [("gavin@hooli.example", "Gavin Belson")])
    handler = LimitedHandler()
    with serving(handler) as server:
        # And the default limit of 50 recipients for customer mail
        engine = start(tmp_path, server.port, calls, engines)

        # When passes run over the next two hours
        report = engine.tick(t0)
        engine.dispatcher.dispatch_due(t0 + 2 * H)

        # Then the thank-you went to nobody, and waits with a reason naming the limit
        assert "initech-lost" not in str(handler.arrivals())
        send = engine.ledger.send(thanks)
        assert send is not None and send.status is Status.PLANNED, send
        assert send.reason is not None and send.reason.startswith("held: 60 recipients"), send.reason
        assert "[mail] max_recipients = 50" in send.reason
        assert send.attempts == 0
        # And the pass says so, which makes tick exit 1, while the rep's prompt went out
        assert [s.key for s, _ in report.dispatch.held] == [thanks]
        assert report.failed
        assert handler.arrivals() == {prep: 1}

        # When the admin raises the limit and restarts
        raised = start(tmp_path, server.port, calls, engines, mail="max_recipients = 100")
        raised.dispatcher.dispatch_due(t0 + 3 * H)

    # Then the thank-you went out once, to all 60 in one message
    assert handler.arrivals() == {prep: 1, thanks: 1}
    assert handler.copies() == Counter({a: 1 for a, _ in crowd(60)} | {"alice@acme.example": 1})
    sent = raised.ledger.send(thanks)
    assert sent is not None and sent.status is Status.SENT


def test_a_held_crowd_is_still_skipped_after_its_deadline(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given a thank-you to 51 customers, held over the limit
    calls = Calls()
    thanks = calls.lost("initech-lost", t0, crowd(51))
    handler = LimitedHandler()
    with serving(handler) as server:
        engine = start(tmp_path, server.port, calls, engines)
        engine.tick(t0)
        held = engine.ledger.send(thanks)
        assert held is not None and held.status is Status.PLANNED and held.expires is not None

        # When nobody raises the limit, and a pass runs after its deadline
        engine.dispatcher.dispatch_due(held.expires + H)

    # Then it is skipped as too late, as any send would be, and was never sent
    send = engine.ledger.send(thanks)
    assert send is not None and send.status is Status.SKIPPED, send
    assert handler.messages() == []


def test_recipients_put_off_with_a_4xx_get_the_message_later_and_the_others_only_once(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given a thank-you to five customers of a lost deal, due now
    calls = Calls()
    thanks = calls.lost("initech-lost", t0, crowd(5))
    # And a server that takes three recipients a message and puts off the rest with 452 4.5.3
    handler = LimitedHandler(per_message=3)
    with serving(handler) as server:
        engine = start(tmp_path, server.port, calls, engines)

        # When a pass runs
        report = engine.tick(t0)

        # Then three customers got it, and the send waits to reach the two put off, saying so
        assert sum(handler.copies().values()) == 3
        send = engine.ledger.send(thanks)
        assert send is not None and send.status is Status.PLANNED, send
        assert send.reason is not None and send.reason.startswith(
            f"will retry at {(t0 + MINUTE).isoformat()}"
        )
        assert "452 4.5.3" in send.reason
        later = {a for a, answer in send.refused.items() if answer.startswith("452")}
        assert len(later) == 2 and not later & set(handler.copies())
        assert [s.key for s, _ in report.dispatch.retrying] == [thanks]

        # When the next passes run
        engine.dispatcher.dispatch_due(t0 + MINUTE)
        engine.dispatcher.dispatch_due(t0 + H)

    # Then the two put off got the same message, and every customer has exactly one copy
    assert handler.copies() == Counter({a: 1 for a, _ in crowd(5)})
    first, second = handler.messages()
    assert set(second.rcpt_tos) == later
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert first.message["To"] == second.message["To"]  # the same message, to the rest of its envelope
    # And the send is recorded sent at its first delivery, with nobody left refused
    sent = engine.ledger.send(thanks)
    assert sent is not None and sent.status is Status.SENT, sent
    assert sent.sent_at == t0 and sent.refused == {}
    assert sent.attempts == 2


def test_a_recipient_put_off_until_the_deadline_is_given_up_on_and_the_send_recorded_sent(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given a thank-you to two customers, and a server that puts off the second every time
    calls = Calls()
    thanks = calls.lost("initech-lost", t0, crowd(2))
    handler = LimitedHandler(put_off={"guest1@initech.example"})
    with serving(handler) as server:
        engine = start(tmp_path, server.port, calls, engines)

        # When passes run whenever the send is due again, until it is settled
        report = engine.tick(t0).dispatch
        for _ in range(60):
            send = engine.ledger.send(thanks)
            assert send is not None
            if send.status is not Status.PLANNED:
                break
            assert send.next_attempt is not None
            report = engine.dispatcher.dispatch_due(send.next_attempt)

    # Then after its deadline the send is recorded sent, naming who never got it and why
    assert send.status is Status.SENT, send
    assert send.reason is not None and send.reason.startswith(
        "sent to the others; not to guest1@initech.example (put off: 452 4.2.2 Mailbox full, try later): "
        "gave up after"
    ), send.reason
    assert send.refused == {"guest1@initech.example": "452 4.2.2 Mailbox full, try later"}
    assert send.expires is not None and send.updated_at > send.expires - timedelta(hours=6)
    # And the last pass reports it as a failure, while the first customer got one copy only
    assert [s.key for s, _ in report.failed] == [thanks]
    assert handler.copies() == Counter({"guest0@initech.example": 1})


LEAD_ADDRESS = "ivy@acme.example"
# The implementation lead, copied on the introduction; the handoff brief to them is left out, so that
# the introduction is the only mail they get.
LEAD = (
    f'[team]\nimplementation = ["Ivy Chen <{LEAD_ADDRESS}>"]\n'
    '[[rules]]\nname = "handoff-brief"\nenabled = false\n'
)
GUEST0, GUEST1 = "guest0@initech.example", "guest1@initech.example"
PUT_OFF = f"not to {GUEST1} (put off: 452 4.2.2 Mailbox full, try later)"


@dataclass
class RelayHandler(LimitedHandler):
    """Postfix with reject_unauth_destination, and no login for us: it takes mail for its own domain
    and refuses every other recipient with 554 5.7.1 Relay access denied, until it relays for us.
    Mailboxes in `refuse` are unknown (550 5.1.1) whatever it relays."""

    relays: bool = False

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        local = address.lower().endswith("@acme.example")
        if not (self.relays or local or address.lower() in self.refuse):
            return f"554 5.7.1 <{address}>: Relay access denied"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def won(calls: Calls, uid: str, t0: datetime, customers: list[tuple[str, str]]) -> str:
    """A closing call tagged #won that ended an hour ago: the introduction to the customers, with the
    implementation lead copied (with LEAD in the config), is due half an hour after the outcome is seen."""
    calls.events.append(
        vevent(uid, t0 - 2 * H, t0 - H, f"{uid} terms #closing #won", attendees=tuple(customers))
    )
    return f"implementation-intro:{uid}"


def shown(directory: Path, *args: str) -> Any:
    """What `followthrough ARGS --json` prints, run in this process on the test's config."""
    result = CliRunner().invoke(cli, ["--config", str(directory / "followthrough.toml"), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_recipients_refused_by_the_servers_policy_get_the_message_once_it_relays(
    tmp_path: Path, t0: datetime, engines: list[Engine]
) -> None:
    # Given a won deal: the introduction to its two customers, the implementation lead copied, comes due
    calls = Calls()
    intro = won(calls, "initech-won", t0, crowd(2))
    # And a mail server that, without a login, takes mail for acme.example only; one customer's
    # mailbox does not exist anyway
    handler = RelayHandler(refuse={GUEST0})
    with serving(handler) as server:
        engine = start(tmp_path, server.port, calls, engines, extra=LEAD)
        engine.tick(t0)
        planned = engine.ledger.send(intro)
        assert planned is not None and planned.status is Status.PLANNED, planned

        # When the introduction is sent
        report = engine.dispatcher.dispatch_due(planned.due)

        # Then only the lead got it, and it is not recorded as delivered: it waits for the customer the
        # policy refused, while the unknown mailbox is recorded as refused for good
        assert handler.copies() == Counter({LEAD_ADDRESS: 1})
        send = engine.ledger.send(intro)
        assert send is not None and send.status is Status.PLANNED, send
        assert send.reason is not None and send.reason.startswith(
            f"will retry at {(planned.due + MINUTE).isoformat()}"
        ), send.reason
        assert f"554 5.7.1 <{GUEST1}>: Relay access denied" in send.reason
        assert send.refused == {
            GUEST0: "550 5.1.1 no such user",
            GUEST1: f"554 5.7.1 <{GUEST1}>: Relay access denied",
        }
        assert send.sent_at == planned.due
        # And the pass reports it as retrying, which makes tick exit 1
        assert [s.key for s, _ in report.retrying] == [intro]
        assert report.trouble and not report.sent

        # When the next pass comes while the server still refuses to relay for us
        assert send.next_attempt is not None
        report = engine.dispatcher.dispatch_due(send.next_attempt)

        # Then the send waits for a person's fix, saying so, and the lead did not get it twice
        held = engine.ledger.send(intro)
        assert held is not None and held.status is Status.PLANNED, held
        assert held.reason is not None and held.reason.startswith("held: "), held.reason
        assert "Relay access denied" in held.reason and held.sent_at == planned.due
        assert [s.key for s, _ in report.held] == [intro] and report.trouble
        assert handler.copies() == Counter({LEAD_ADDRESS: 1})

        # When the server relays for us, and the next pass runs
        handler.relays = True
        assert held.next_attempt is not None
        engine.dispatcher.dispatch_due(held.next_attempt)

    # Then the customer refused by policy got the same message, alone; nobody got it twice, and the
    # unknown mailbox was not tried again
    assert handler.copies() == Counter({LEAD_ADDRESS: 1, GUEST1: 1})
    first, second = handler.messages()
    assert second.rcpt_tos == (GUEST1,)
    assert first.message["Message-ID"] == second.message["Message-ID"]
    # And the send is sent, at its first delivery, with the unknown mailbox left refused
    sent = engine.ledger.send(intro)
    assert sent is not None and sent.status is Status.SENT, sent
    assert sent.sent_at == planned.due
    assert sent.refused == {GUEST0: "550 5.1.1 no such user"}


# What ends the retry to a recipient put off, and what the note then says after "gave up".
ENDINGS = {
    "event deleted": "gave up, event deleted from every calendar",
    "event cancelled": "gave up, event cancelled",
    "event moved": "gave up, the event changed (moved to ",
    "downtime past its deadline": "gave up, too late: due ",
    "recipient suppressed": f"gave up, suppressed: {GUEST1} asked not to be written to",
    "customer suppressed": f"gave up, suppressed: {GUEST0}, {GUEST1} asked not to be written to",
    "customer re-engaged": "gave up, customer re-engaged: new event 'Initech demo'",
    "template broken": "gave up after ",
}


@pytest.mark.parametrize("how", list(ENDINGS))
def test_a_send_that_went_to_some_recipients_ends_sent_when_their_retry_stops(
    tmp_path: Path, t0: datetime, engines: list[Engine], how: str
) -> None:
    # Given a thank-you to two customers of a lost deal, due now, with templates of our own
    calls = Calls()
    thanks = calls.lost("initech-lost", t0, crowd(2))
    shutil.copytree(TEMPLATES_DIR, tmp_path / "templates")
    templates = '\n[templates]\ndir = "templates"\n'
    # And a server that takes the first customer and puts off the second
    handler = LimitedHandler(put_off={GUEST1})
    with serving(handler) as server:
        engine = start(tmp_path, server.port, calls, engines, extra=templates)
        engine.tick(t0)
        first = engine.ledger.send(thanks)
        assert first is not None and first.status is Status.PLANNED and first.sent_at == t0, first
        assert first.next_attempt is not None and first.expires is not None

        # When the retry to the second customer can no longer happen, or must not
        later = t0 + 30 * timedelta(seconds=1)  # before the retry is due: the change comes first
        passes: list[DispatchReport] = []  # the dispatcher's, when it is the one to give up
        if how == "event deleted":
            (tmp_path / "calendar.ics").write_text(calendar(), encoding="utf-8")
            engine.tick(later)
        elif how == "event cancelled":
            cancelled = calls.events[0].replace("END:VEVENT", "STATUS:CANCELLED\r\nEND:VEVENT")
            (tmp_path / "calendar.ics").write_text(calendar(cancelled), encoding="utf-8")
            engine.tick(later)
        elif how == "event moved":
            title = "initech-lost decision #closing #lost"
            moved = vevent("initech-lost", t0 - 24 * H, t0 - 23 * H, title, attendees=tuple(crowd(2)))
            (tmp_path / "calendar.ics").write_text(calendar(moved), encoding="utf-8")
            engine.tick(later)
        elif how == "downtime past its deadline":
            passes.append(engine.dispatcher.dispatch_due(first.expires + H))
        elif how == "recipient suppressed":
            engine.ledger.suppress(GUEST1, later, "asked to stop")
            passes.append(engine.dispatcher.dispatch_due(first.next_attempt))
        elif how == "customer suppressed":
            engine.ledger.suppress("initech.example", later, "asked to stop")
            passes.append(engine.dispatcher.dispatch_due(first.next_attempt))
        elif how == "customer re-engaged":
            demo = vevent("initech-demo", t0 + 48 * H, t0 + 49 * H, "Initech demo", attendees=(crowd(1)[0],))
            (tmp_path / "calendar.ics").write_text(calendar(*calls.events, demo), encoding="utf-8")
            engine.tick(later)
        else:  # the template: broken by an edit, and never fixed
            path = tmp_path / "templates" / "lost-thank-you.md"
            broken = path.read_text(encoding="utf-8") + "{{ oops }}\n"
            path.write_text(broken, encoding="utf-8")
            engine = start(tmp_path, server.port, calls, engines, extra=templates)  # restarted
            for _ in range(60):  # passes whenever it is due again, until it is settled
                send = engine.ledger.send(thanks)
                assert send is not None
                if send.status is not Status.PLANNED:
                    break
                assert send.next_attempt is not None
                passes.append(engine.dispatcher.dispatch_due(send.next_attempt))

    # Then the send is recorded sent at its first delivery, saying who never got it, and why
    send = engine.ledger.send(thanks)
    assert send is not None and send.status is Status.SENT, send
    assert send.sent_at == t0
    assert send.reason is not None, send
    assert send.reason.startswith(f"sent to the others; {PUT_OFF}: {ENDINGS[how]}"), send.reason
    assert send.refused == {GUEST1: "452 4.2.2 Mailbox full, try later"}
    # And the first customer got it once, the second never
    assert handler.copies() == Counter({GUEST0: 1})
    # And a pass that gave up on it reports it as a failure too, which makes tick exit 1
    assert not passes or [s.key for s, _ in passes[-1].failed] == [thanks]
    # And `plan` and `history` say so
    [planned] = [s for s in shown(tmp_path, "plan") if s["key"] == thanks]
    assert (planned["status"], planned["reason"], planned["refused"]) == ("sent", send.reason, send.refused)
    assert thanks in [s["key"] for s in shown(tmp_path, "history")]
    assert shown(tmp_path, "history", "--key", thanks)[-1]["to"] == "sent"
