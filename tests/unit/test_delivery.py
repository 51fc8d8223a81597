"""What the dispatcher decides about one send: too late, held, put off, retried, given up, resent.

Pure decisions: a send, a moment and the server's answers in, a decision out; no ledger, no server.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from daemon import delivery
from daemon.delivery import Delivery
from daemon.errors import PermanentDeliveryError, TransientDeliveryError
from daemon.model import Audience, Person, SendRecord, Status
from daemon.playbook import Policy

T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
POLICY = Policy(company_domains=frozenset({"acme.example"}), company_timezone="Europe/Berlin")
REP = Person("alice@acme.example", "Alice")
DANA = Person("dana@globex.example", "Dana")
LEE = Person("lee@globex.example", "Lee")
PUT_OFF = "452 4.2.2 mailbox full"
POLICY_REFUSAL = "554 5.7.1 <lee@globex.example>: Relay access denied"
NO_SUCH_USER = "550 5.1.1 no such user"


def send(**changes: object) -> SendRecord:
    base = SendRecord(
        key="deal-1/recap/call-1",
        rule="recap",
        event_id="call-1",
        deal="globex.example",
        due=T,
        expires=T + timedelta(hours=2),
        sender=REP,
        reply_to=None,
        to=(DANA,),
        cc=(LEE,),
        audience=Audience.CUSTOMER,
        template="recap",
        status=Status.CLAIMED,
        attempts=1,
        updated_at=T,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def people(n: int, domain: str) -> tuple[Person, ...]:
    return tuple(Person(f"p{i}@{domain}") for i in range(n))


def test_a_send_may_go_until_its_deadline_and_then_is_too_late() -> None:
    # Given a recap allowed until two hours after it was due, and a prompt before a call
    recap = send()
    prompt = send(expires=T)

    # When the dispatcher looks at them at and after their deadline
    # Then the recap says when it was allowed until, and the prompt that the call has started
    assert delivery.too_late(recap, T + timedelta(hours=2), before_call=False) is None
    assert delivery.too_late(recap, T + timedelta(hours=3), before_call=False) == (
        "too late: due 2026-12-02T15:00:00+00:00, allowed until 2026-12-02T17:00:00+00:00"
    )
    assert delivery.too_late(prompt, T + timedelta(minutes=1), before_call=True) == (
        "too late: the call started at 2026-12-02T15:00:00+00:00"
    )
    assert delivery.too_late(send(expires=None), T + timedelta(days=30), before_call=False) is None


def test_customer_mail_to_more_than_the_limit_is_held_for_a_person_and_internal_mail_is_not() -> None:
    # Given the limit is 50 addresses, To and Cc together
    crowd = people(51, "globex.example")
    colleagues = people(51, "acme.example")

    # When a send goes to 51 customers, to 51 colleagues, or to exactly 50 customers
    held = delivery.too_many(send(to=crowd, cc=()), crowd, (), POLICY, 50)
    internal = delivery.too_many(
        send(to=colleagues, cc=(), audience=Audience.REP), colleagues, (), POLICY, 50
    )
    at_limit = delivery.too_many(send(to=crowd[:50], cc=()), crowd[:50], (), POLICY, 50)

    # Then only the customer mail over the limit waits, and the reason says how to let it go
    assert held is not None
    assert held.startswith("51 recipients, more than [mail] max_recipients = 50")
    assert "raise the limit" in held
    assert (internal, at_limit) == (None, None)


def test_internal_mail_that_copies_one_outsider_counts_as_customer_mail() -> None:
    # Given an internal note to 50 colleagues with one customer in Cc
    colleagues = people(50, "acme.example")

    # When the limit is checked
    held = delivery.too_many(send(audience=Audience.REP), colleagues, (DANA,), POLICY, 50)

    # Then it is held: the customer would see every colleague's address
    assert held is not None


def test_temporary_and_policy_answers_put_recipients_off_while_others_are_refused_for_good() -> None:
    # Given a first try the server took for Dana but answered with a 4xx, a 5.7.x and a 5.1.1 for others
    refused = {
        "a@globex.example": PUT_OFF,
        "b@globex.example": POLICY_REFUSAL,
        "c@globex.example": NO_SUCH_USER,
    }

    # When the dispatcher reads the answers
    later, final = delivery.after_delivery(send(), refused)

    # Then the 4xx and the policy refusal are tried again later, and the unknown user never
    assert later == {"a@globex.example": PUT_OFF, "b@globex.example": POLICY_REFUSAL}
    assert final == {"c@globex.example": NO_SUCH_USER}


def test_a_retry_to_those_put_off_keeps_the_earlier_final_refusals() -> None:
    # Given a send that went out, with Lee put off and Cy refused for good at that first try
    first = send(sent_at=T, refused={LEE.email: PUT_OFF, "cy@globex.example": NO_SUCH_USER})

    # When the retry to Lee is accepted
    later, final = delivery.after_delivery(first, {})

    # Then nobody is left to try, and Cy's refusal is still the one to report
    assert later == {}
    assert final == {"cy@globex.example": NO_SUCH_USER}


def test_a_retry_goes_only_to_those_put_off_and_gives_up_when_they_all_opted_out() -> None:
    # Given Lee was put off at the first try
    later = {LEE.email}
    recipients = [DANA.email, "Lee@Globex.example"]

    # When the retry's recipients are chosen, before and after Lee asked not to be written to
    chosen, why = delivery.retry_recipients(recipients, later, blocked=set())
    none, gone = delivery.retry_recipients([DANA.email], later, blocked={LEE.email})

    # Then only Lee gets it, whatever the case of the address; once suppressed, the send gives up on Lee
    assert (chosen, why) == (["Lee@Globex.example"], None)
    assert (none, gone) == ([], f"suppressed: {LEE.email} asked not to be written to")
    assert delivery.retry_recipients([DANA.email], later, blocked=set())[1] == (
        "those put off are no longer among its recipients"
    )


def test_a_refused_retry_gives_up_on_those_put_off_only_when_the_answer_is_final() -> None:
    # Given a send that went to Dana, with Lee put off and Cy refused for good
    first = send(sent_at=T, refused={LEE.email: PUT_OFF, "cy@globex.example": NO_SUCH_USER})

    # When the retry to Lee fails for now, or for good
    later, final = delivery.after_refusal(first, TransientDeliveryError("421 try later"))
    given_up, _ = delivery.after_refusal(first, PermanentDeliveryError("550 5.1.1 gone"))

    # Then a temporary failure keeps Lee's first answer; a final one replaces it with the new answer
    assert (later, final) == ({LEE.email: PUT_OFF}, {"cy@globex.example": NO_SUCH_USER})
    assert given_up == {LEE.email: "550 5.1.1 gone"}


def test_the_note_of_a_sent_mail_names_who_was_refused_and_who_was_left_out() -> None:
    # When a send went out with one refusal and one suppressed address, or cleanly
    note = delivery.sent_note({"cy@globex.example": NO_SUCH_USER}, {"zed@globex.example"})

    # Then the note names both, and a clean send has none
    assert note == (
        f"refused by the server: cy@globex.example: {NO_SUCH_USER}; left out (suppressed): zed@globex.example"
    )
    assert delivery.sent_note({}, set()) is None


def test_retries_back_off_and_give_up_when_the_next_would_pass_the_deadline() -> None:
    # Given the first retry waits a minute, and a send allowed until 10 minutes after it was due
    config = Delivery(retry_base=timedelta(minutes=1))
    tight = send(expires=T + timedelta(minutes=10))

    # When its tries fail one after another
    # Then the waits double: 1, 2, 4 minutes; the fourth try's 8-minute wait would pass the deadline
    assert delivery.next_try(replace(tight, attempts=1), T, config) == T + timedelta(minutes=1)
    assert delivery.next_try(replace(tight, attempts=3), T, config) == T + timedelta(minutes=4)
    assert delivery.next_try(replace(tight, attempts=4), T + timedelta(minutes=3), config) is None


def test_a_send_without_a_deadline_is_retried_for_the_configured_window() -> None:
    # Given a send with no deadline and a one-day retry window
    config = Delivery(retry_window=timedelta(days=1))
    open_ended = send(expires=None, attempts=2)

    # When it fails just inside, and past, the window
    # Then it is tried again inside the window, and given up past it
    assert delivery.next_try(open_ended, T + timedelta(hours=23), config) is not None
    assert delivery.next_try(open_ended, T + timedelta(days=1), config) is None


def test_a_refused_account_waits_longer_each_pass_up_to_an_hour() -> None:
    # Given the first retry waits a minute
    config = Delivery(retry_base=timedelta(minutes=1))

    # When the server refuses our account pass after pass
    waits = [delivery.hold_wait(n, config) for n in (1, 2, 3, 10)]

    # Then the wait grows, and never past an hour
    assert waits == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4), timedelta(hours=1)]


def test_an_unknown_outcome_is_resent_only_when_a_second_copy_does_no_harm_or_it_never_went() -> None:
    # Given a customer recap and a prompt to our own rep, whose delivery a crash left unknown
    recap = send()
    prompt = send(audience=Audience.REP)
    config = Delivery(resend_unknown_prompts=True)

    # When the dispatcher decides whether to send them again
    # Then the customer mail waits for a person unless the transport is idempotent or the mail was not found
    assert not delivery.may_resend(recap, config, idempotent=False, found=None)
    assert delivery.may_resend(recap, config, idempotent=True, found=None)
    assert delivery.may_resend(recap, config, idempotent=False, found=False)
    # And the rep's prompt goes again, unless the config says to ask first
    assert delivery.may_resend(prompt, config, idempotent=False, found=None)
    ask_first = Delivery(resend_unknown_prompts=False)
    assert not delivery.may_resend(prompt, ask_first, idempotent=False, found=None)
    # And a resend backs off like any retry, from the first try on
    assert delivery.resend_at(send(attempts=0), T, config) == T + timedelta(minutes=1)
