"""The Microsoft 365 transport over real HTTPS: MSAL and httpx against the local fake of Graph.

One-shot sendMail (202, a lost answer is unknown and never re-posted), the Sent Items lookup by
Message-ID, Exchange's limits and throttling waiting in the ledger, RBAC refusals, `check`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
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
from daemon.mail.graph import GraphTransport
from daemon.mail.message import build
from daemon.model import Person
from daemon.templates import Rendered
from tests.support.graph_fake import FakeGraph
from tests.support.ics import vevent
from tests.support.microsoft import access_for
from tests.support.world import World

REP = Person("rita.rep@seller.example", "Rita Rep")
CUSTOMER = Person("carl@customer.example", "Carl Customer")

pytestmark = pytest.mark.usefixtures("microsoft_secret")


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[FakeGraph]:
    with FakeGraph(directory=tmp_path / "ca") as fake:
        yield fake


def letter(key: str = "deal-7/recap/carl", to: tuple[Person, ...] = (CUSTOMER,)) -> EmailMessage:
    return build(
        key=key,
        rendered=Rendered("Next steps", "Hello Carl,\n", "<p>Hello Carl,</p>"),
        sender=REP,
        to=to,
        reply_to=REP,
        date=datetime(2026, 3, 3, 9, 30, tzinfo=UTC),
    )


def send(transport: GraphTransport, message: EmailMessage) -> dict[str, str]:
    return transport.deliver(message, REP.email, [a.addr_spec for a in message["To"].addresses])


def test_a_message_is_posted_once_as_base64_mime_from_the_senders_mailbox(graph: FakeGraph) -> None:
    # Given the transport, when a letter is delivered as the rep
    message = letter()
    assert send(GraphTransport(access_for(graph)), message) == {}
    # Then one POST to the rep's sendMail carried the very bytes we built, base64, as text/plain
    [post] = graph.sends()
    assert post.path == f"/v1.0/users/{REP.email}/sendMail"
    assert post.headers["Content-Type"] == "text/plain" and post.status == 202
    assert base64.b64decode(post.body) == message.as_bytes()
    assert [str(m["Message-ID"]) for m in graph.mailbox(REP.email).sent] == [str(message["Message-ID"])]


def test_a_lost_answer_is_unknown_and_never_posted_again(graph: FakeGraph) -> None:
    # Given Graph takes the message, then the connection drops before it answers
    graph.answers.append(None)
    transport = GraphTransport(access_for(graph))
    # When it is delivered, then the outcome is unknown, and there was exactly one POST
    with pytest.raises(UnknownDeliveryError):
        send(transport, letter())
    assert len(graph.sends()) == 1
    # And the Sent Items lookup by our Message-ID finds it went, so nothing is re-sent
    assert transport.find(str(letter()["Message-ID"]), REP.email) is True
    assert transport.find("<other@seller.example>", REP.email) is False


def test_find_without_a_mail_read_permission_says_which_permission_is_missing(graph: FakeGraph) -> None:
    # Given an app that may send but not read mail
    graph.roles = {"Mail.Send"}
    # When a send is looked up, then the search's refusal names the permission to grant
    with pytest.raises(PermanentDeliveryError, match=r"Mail\.ReadBasic\.All .*Application Mail\.ReadBasic"):
        GraphTransport(access_for(graph)).find("<a@b>", REP.email)


def test_an_unknown_outcome_that_cannot_be_looked_up_waits_for_a_person_naming_the_permission(
    graph: FakeGraph, tmp_path: Path
) -> None:
    # Given the Microsoft transport for an app without Mail.ReadBasic.All, and a lost deal whose
    # thank-you Graph takes from the rep's mailbox, then the answer is lost on the way back
    from daemon.engine import Engine
    from daemon.model import Status

    graph.roles = {"Calendars.Read", "Mail.Send"}
    extra = (
        '[schedule]\nbusiness_hours = "00:00-24:00"\nclaim_lease = "2m"\n'
        'business_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\n' + graph.toml()
    )
    world = World(tmp_path, extra=extra)
    config = tmp_path / "followthrough.toml"
    config.write_text(config.read_text().replace('transport = "outbox"', 'transport = "microsoft"'))
    now = datetime.now(UTC)
    world.write(vevent("lost", now - timedelta(hours=26), now - timedelta(hours=25), "Globex #closing #lost"))
    graph.answers.append(None)
    engine = Engine(load(config))
    try:
        engine.tick(now)
        # When its lease has run out and the dispatcher looks it up
        engine.dispatcher.dispatch_due(now + timedelta(minutes=3))
        done = engine.ledger.send("lost-thank-you:lost")
    finally:
        engine.close()
    # Then it is not sent again: it waits for a person, the reason naming the missing permission
    assert done is not None and done.status is Status.UNKNOWN, done
    reason = done.reason or ""
    assert "Mail.ReadBasic.All" in reason and "followthrough resolve lost-thank-you:lost" in reason
    assert len(graph.sends()) == 1


def test_a_429_with_retry_after_keeps_the_send_waiting_and_pauses_the_sender(graph: FakeGraph) -> None:
    graph.fail(429, path="/sendMail", retry_after="120", code="ApplicationThrottled")
    transport = GraphTransport(access_for(graph))
    with pytest.raises(TransientDeliveryError, match="waits in the ledger"):
        send(transport, letter())
    # The next send of that sender waits too, without asking Graph
    with pytest.raises(TransientDeliveryError, match="paused until"):
        send(transport, letter("deal-7/other/carl"))
    assert len(graph.sends()) == 1


def test_the_per_minute_limit_keeps_the_send_waiting(graph: FakeGraph) -> None:
    transport = GraphTransport(access_for(graph), messages_per_minute=2)
    send(transport, letter("a"))
    send(transport, letter("b"))
    with pytest.raises(TransientDeliveryError, match="last minute"):
        send(transport, letter("c"))
    assert len(graph.sends()) == 2


def test_the_daily_recipient_limit_counts_the_ledgers_history(graph: FakeGraph) -> None:
    transport = GraphTransport(access_for(graph), recipients_per_day=10, history=lambda sender, since: 10)
    with pytest.raises(TransientDeliveryError, match="daily limit"):
        send(transport, letter())
    assert graph.sends() == []


def test_more_than_500_recipients_are_held_without_calling_graph(graph: FakeGraph) -> None:
    crowd = tuple(Person(f"p{i}@customer.example", "") for i in range(501))
    with pytest.raises(HeldDeliveryError):
        send(GraphTransport(access_for(graph)), letter(to=crowd))
    assert graph.sends() == []


def test_a_mailbox_outside_the_apps_rbac_scope_waits_naming_the_fix(graph: FakeGraph) -> None:
    graph.scope = {"someone.else@seller.example"}
    with pytest.raises(TransientDeliveryError, match="RBAC"):
        send(GraphTransport(access_for(graph)), letter())


def test_a_message_graph_refuses_is_a_permanent_failure_with_its_words(graph: FakeGraph) -> None:
    graph.answers.append((400, {"error": {"code": "ErrorMimeContentInvalid", "message": "bad MIME"}}))
    with pytest.raises(PermanentDeliveryError, match="ErrorMimeContentInvalid"):
        send(GraphTransport(access_for(graph)), letter())


def test_a_wrong_client_secret_keeps_the_send_waiting(graph: FakeGraph) -> None:
    graph.secret = "another"
    with pytest.raises(TransientDeliveryError, match="invalid_client"):
        send(GraphTransport(access_for(graph)), letter())
    assert graph.sends() == []


def test_check_names_a_missing_permission_and_a_mailbox_outside_the_scope(graph: FakeGraph) -> None:
    # Given an app with every permission, then the app and each mailbox are ready
    ready = GraphTransport(access_for(graph)).check([REP.email])
    assert all(r.problem is None and r.warning is None for r in ready) and len(ready) == 2, ready
    # Given a mailbox outside the RBAC scope, then it is named with the fix
    graph.scope = set()
    [_, outside] = GraphTransport(access_for(graph)).check([REP.email])
    assert outside.problem and "New-ManagementScope" in outside.problem
    # Given no permission to read mail, then the mailbox's line names it
    graph.scope, graph.roles = None, {"Calendars.Read", "Mail.Send"}
    [_, unread] = GraphTransport(access_for(graph)).check([REP.email])
    assert unread.problem and "Mail.ReadBasic.All" in unread.problem
    # Given no Mail.Send in the token, then that is said, not failed: an RBAC role would not show
    graph.roles = {"Calendars.Read", "Mail.ReadBasic.All"}
    [app, mailbox] = GraphTransport(access_for(graph)).check([REP.email])
    assert app.problem is None and app.warning and "Application Mail.Send" in app.warning
    assert mailbox.problem is None
    assert graph.sends() == []


def test_check_of_an_app_granted_only_through_exchange_rbac_finds_it_ready(graph: FakeGraph) -> None:
    # Given an app whose permissions are Exchange RBAC role assignments only: its token carries none
    graph.roles, graph.rbac_roles = set(), {"Mail.Send", "Mail.ReadBasic"}
    # Then the mailbox is reached and its Sent Items read; only Mail.Send is left unproven
    [app, mailbox] = GraphTransport(access_for(graph)).check([REP.email])
    assert app.problem is None and app.warning is not None
    assert mailbox.problem is None and "Sent Items readable" in mailbox.found
