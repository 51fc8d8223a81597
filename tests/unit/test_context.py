"""What a template sees: pure values from an event, its deal's other events and the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.context import variables
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
        return variables(
            rule="r",
            event=CLOSING,
            policy=POLICY,
            company="Acme",
            audience=audience,
            to=(DANA,),
            deal_events=(CLOSING, KICKOFF),
            sent_at=T,
        ).pick()

    # When the context is built for the customer, then every time is in New York
    customer = context(Audience.CUSTOMER)
    assert customer["zone"] == "America/New_York"
    assert customer["kickoff"]["start"].tzinfo.key == "America/New_York"  # type: ignore[index]
    assert customer["event"]["start"].hour == 10  # 15:00 UTC  # type: ignore[index]
    # And for the rep, in the company's zone
    rep = context(Audience.REP)
    assert rep["zone"] == "Europe/Berlin" and rep["event"]["start"].hour == 16  # type: ignore[index]


def test_people_tags_notes_and_homework_come_through_as_a_reader_expects() -> None:
    ctx = variables(
        rule="r", event=CLOSING, policy=POLICY, company="Acme", audience=Audience.REP, to=(ALICE,)
    ).pick()
    # The rep and the lead by name; customers named as spoken, the nameless by address, rooms left out
    assert ctx["rep"] == {"name": "Alice Moreno", "first_name": "Alice", "email": "alice@acme.example"}
    assert ctx["lead"]["first_name"] == "Ivy"  # type: ignore[index]
    assert [(p["name"], p["first_name"]) for p in ctx["customer"]] == [  # type: ignore[attr-defined]
        ("Dana Fox", "Dana"),
        ("tom.reed@globex.example", ""),
    ]
    # The title without its tags; the homework as written, each item with a capital as a list shows it
    view = ctx["event"]
    assert view["title"] == "Globex terms"  # type: ignore[index]
    assert view["homework"] == ["Send the user list", "Book the room"]  # type: ignore[index]
    assert ctx["deal"]["company"] == "Globex"  # type: ignore[index]
    assert ctx["kickoff"] is None and ctx["closing"] is None


def test_answers_to_the_invite_times_without_a_year_and_roles_come_through() -> None:
    # Given a closing call where Dana declined and Tom never answered, and a lead with a role
    declined = CalendarEvent(
        uid="call-2",
        start=T,
        end=T + timedelta(hours=1),
        title="Globex #closing",
        description=(
            "Promised: SSO; reports\nFollow-up: you asked about the spring.\n"
            "Also involved: Ravi Shah (security)"
        ),
        organizer=ALICE,
        attendees=(Attendee(ALICE), Attendee(DANA, status="DECLINED"), Attendee(TOM)),
    )
    policy = Policy(**{**POLICY.__dict__, "roles": {"ivy@acme.example": "onboarding lead"}})

    # When the context is built
    ctx = variables(
        rule="r", event=declined, policy=policy, company="Acme", audience=Audience.REP, to=(ALICE,)
    ).pick()

    # Then each customer carries their answer, the lead their role, and the notes' labelled lines are read
    view = ctx["event"]
    assert [(p["name"], p["response"]) for p in view["customer"]] == [  # type: ignore[index]
        ("Dana Fox", "declined"),
        ("tom.reed@globex.example", "no reply"),
    ]
    assert ctx["customer"] == view["customer"]  # type: ignore[index]
    assert ctx["lead"]["role"] == "onboarding lead"  # type: ignore[index]
    assert view["promised"] == ["SSO", "Reports"]  # type: ignore[index]
    assert view["follow_up"] == "You asked about the spring."  # type: ignore[index]
    assert view["not_invited"] == [{"name": "Ravi Shah", "role": "security"}]  # type: ignore[index]
    # And the time reads as a sentence does, without a year: 15:00 UTC is 16:00 in Berlin
    assert view["at"] == "Wednesday 2 December at 16:00 CET"  # type: ignore[index]
