"""What a template sees: pure values from an event, its deal's other events and the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.context import build
from daemon.model import Attendee, Audience, CalendarEvent, Person
from daemon.playbook import Policy

ALICE = Person("alice@acme.example", "Alice Moreno")
IVY = Person("ivy@acme.example", "Ivy Chen")
DANA = Person("dana@globex.example", "Fox, Dana")
TOM = Person("tom.reed@globex.example")
POLICY = Policy(
    company_domains=frozenset({"acme.example"}), company_timezone="Europe/Berlin", implementation=(IVY,)
)
T = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def event(uid: str, title: str, start: datetime, zone: str | None = None) -> CalendarEvent:
    return CalendarEvent(
        uid=uid,
        start=start,
        end=start + timedelta(hours=1),
        title=title,
        description="Notes for the team.\nHomework: send the user list; book the room",
        timezone=zone,
        organizer=ALICE,
        attendees=(
            Attendee(ALICE),
            Attendee(DANA),
            Attendee(TOM),
            Attendee(Person("room@acme.example"), kind="ROOM"),
        ),
    )


CLOSING = event("call-1", "Globex terms #closing #won", T)  # written in UTC
KICKOFF = event("kick-1", "Globex kickoff #kickoff", T + timedelta(days=5), "America/New_York")


def test_customer_mail_shows_times_in_the_customers_zone_and_internal_mail_in_the_companys() -> None:
    # Given a won closing call in UTC and the deal's kickoff in New York
    def context(audience: Audience) -> dict[str, object]:
        return build(
            rule="r",
            event=CLOSING,
            policy=POLICY,
            company="Acme",
            audience=audience,
            to=(DANA,),
            deal_events=(CLOSING, KICKOFF),
            sent_at=T,
        )

    # When the context is built for the customer, then every time is in New York
    customer = context(Audience.CUSTOMER)
    assert customer["zone"] == "America/New_York"
    assert customer["kickoff"]["start"].tzinfo.key == "America/New_York"  # type: ignore[index]
    assert customer["event"]["start"].hour == 10  # 15:00 UTC  # type: ignore[index]
    # And for the rep, in the company's zone
    rep = context(Audience.REP)
    assert rep["zone"] == "Europe/Berlin" and rep["event"]["start"].hour == 16  # type: ignore[index]


def test_people_tags_notes_and_homework_come_through_as_a_reader_expects() -> None:
    ctx = build(rule="r", event=CLOSING, policy=POLICY, company="Acme", audience=Audience.REP, to=(ALICE,))
    # The rep and the lead by name; customers named as spoken, the nameless by address, rooms left out
    assert ctx["rep"] == {"name": "Alice Moreno", "first_name": "Alice", "email": "alice@acme.example"}
    assert ctx["lead"]["first_name"] == "Ivy"  # type: ignore[index]
    assert [(p["name"], p["first_name"]) for p in ctx["customer"]] == [  # type: ignore[attr-defined]
        ("Dana Fox", "Dana"),
        ("tom.reed@globex.example", ""),
    ]
    # The title without its tags; the notes and the homework as written
    view = ctx["event"]
    assert view["title"] == "Globex terms"  # type: ignore[index]
    assert view["homework"] == ["send the user list", "book the room"]  # type: ignore[index]
    assert ctx["deal"]["company"] == "Globex"  # type: ignore[index]
    assert ctx["kickoff"] is None and ctx["closing"] is None
