"""The pure parts of a test send: who it may go to, its key, the send it makes, when it falls back.

What goes over the wire and into the ledger: tests/integration/test_send_test.py and the e2e tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.errors import (
    AccountDeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownDeliveryError,
    UnsafeMessageError,
    UserError,
)
from daemon.model import Audience, Person, PlannedSend
from daemon.playbook import Policy
from daemon.testsend import KEY_LIMIT, addressed, falls_back, key_for, recipient

NOW = datetime(2026, 12, 2, 9, 30, 15, tzinfo=UTC)
POLICY = Policy(company_domains=frozenset({"acme.example"}))
REP = Person("sam@acme.example", "Sam Rivera")
SERVICE = Person("ft@acme.example", "Followthrough")
DANA = Person("dana@globex.example", "Dana Fox")
LEE = Person("lee@globex.example", "Lee Park")


def customer_mail() -> PlannedSend:
    """An introduction to the customer, from the rep, copying the implementation lead."""
    return PlannedSend(
        key="implementation-intro:call-1",
        rule="implementation-intro",
        event_id="call-1",
        deal="globex.example",
        due=NOW - timedelta(days=2),
        expires=NOW + timedelta(days=1),
        sender=REP,
        reply_to=REP,
        to=(DANA, LEE),
        cc=(Person("ivy@acme.example", "Ivy Chen"),),
        audience=Audience.CUSTOMER,
        template="implementation-intro",
        stop_on_reengagement=True,
    )


# -- who a test may go to -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ann@acme.example", Person("ann@acme.example", "")),
        ("Ann Lee <Ann@Acme.Example>", Person("ann@acme.example", "Ann Lee")),
        ("ops@eu.acme.example", Person("ops@eu.acme.example", "")),  # a subdomain is the company's
    ],
)
def test_one_address_in_the_company_is_the_recipient(text: str, expected: Person) -> None:
    # Given an address in the company's domain, bare or with a name
    # When it is checked as a test's recipient
    # Then it is that one person
    assert recipient(text, POLICY) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ann",
        "ann@",
        "ann@acme.example, bob@acme.example",
        "Ann <ann@acme.example>, <bob@acme.example>",
        "ann@acme.example\r\nBcc: dana@globex.example",
        "=?utf-8?q?ann?=@acme.example",
    ],
)
def test_anything_but_one_address_is_refused_naming_it(text: str) -> None:
    # Given text that is not one email address (none, several, a header smuggled in)
    # When it is checked as a test's recipient
    # Then it is refused, and the message names it
    with pytest.raises(UserError) as refused:
        recipient(text, POLICY)
    assert repr(text) in str(refused.value)


@pytest.mark.parametrize(
    "text", ["dana@globex.example", "ann@acme.example.evil.example", "x@notacme.example"]
)
def test_an_address_outside_the_company_is_refused(text: str) -> None:
    # Given a valid address outside the company's domains (a customer, a look-alike domain)
    # When it is checked as a test's recipient
    # Then it is refused, naming the address and the company's domains
    with pytest.raises(UserError) as refused:
        recipient(text, POLICY)
    assert text in str(refused.value) and "acme.example" in str(refused.value)


# -- its key ----------------------------------------------------------------------------------------
def test_a_test_key_names_the_rule_the_event_or_sample_and_the_time() -> None:
    # Given a rule, an event and a moment
    # When test keys are made for it twice, and once for sample data
    first, second = key_for("closing-prep", "call-1", NOW), key_for("closing-prep", "call-1", NOW)
    sample = key_for("closing-prep", None, NOW)

    # Then each starts with test:, the rule, the event (or "sample") and the UTC time, and no two are equal
    assert first.startswith("test:closing-prep:call-1:20261202T093015Z:")
    assert sample.startswith("test:closing-prep:sample:20261202T093015Z:")
    assert first != second


def test_a_test_key_fits_the_ledger_whatever_the_event_id() -> None:
    # Given an event id as long as the ledger allows
    # When a test key is made for it
    key = key_for("r" * 100, "e" * 600, NOW)

    # Then the key fits the ledger's key column, and keeps its time
    assert len(key) <= KEY_LIMIT and ":20261202T093015Z:" in key


# -- the send it makes ---------------------------------------------------------------------------
def test_a_test_goes_to_the_one_address_and_keeps_the_real_sends_sender() -> None:
    # Given customer mail from the rep to two customers, copying the implementation lead
    real = customer_mail()
    admin = Person("ann@acme.example", "Ann Lee")

    # When it is made into a test for Ann
    test = addressed(real, "test:implementation-intro:call-1:x", admin, NOW)

    # Then it goes to Ann alone, now, with no deadline, and stops no sequence
    assert (test.key, test.to, test.cc, test.due, test.expires) == (
        "test:implementation-intro:call-1:x",
        (admin,),
        (),
        NOW,
        None,
    )
    assert not test.stop_on_reengagement
    # And it is written as the real one: from the rep, replies to the rep, read as the customer reads it
    assert (test.sender, test.reply_to, test.audience, test.template, test.rule) == (
        REP,
        REP,
        Audience.CUSTOMER,
        "implementation-intro",
        "implementation-intro",
    )


# -- falling back to the service sender -------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (AccountDeliveryError("553 5.7.1 not yours", sender="sam@acme.example"), True),
        (TransientDeliveryError("Gmail account sam@acme.example: no token"), True),
        (AccountDeliveryError("535 wrong password"), False),  # our whole account: the same from anyone
        (AccountDeliveryError("553 not yours", sender="other@acme.example"), False),
        (PermanentDeliveryError("550 5.1.1 no such user"), False),  # the recipient: the same from anyone
        (UnsafeMessageError("refused"), False),
        (UnknownDeliveryError("answer lost"), False),  # it may have arrived
    ],
)
def test_a_test_from_the_rep_falls_back_only_when_the_rep_could_not_send_it(
    error: AccountDeliveryError, expected: bool
) -> None:
    # Given a test from the rep that the transport refused with `error`
    # When it is decided whether the service sender sends it instead
    # Then only a refusal of the rep as sender, or of their account for now, falls back
    assert falls_back(error, REP, SERVICE) is expected


def test_a_test_from_the_service_sender_never_falls_back() -> None:
    # Given a test already from the service sender, refused for now
    # When it is decided whether to fall back
    # Then there is nothing to fall back to
    assert not falls_back(TransientDeliveryError("421 busy"), SERVICE, SERVICE)
