"""The playbook's classification and planning: pure functions, no clock, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.model import (
    Attendee,
    Audience,
    CalendarEvent,
    EventStatus,
    Kind,
    Outcome,
    Person,
)
from daemon.playbook import (
    BusinessHours,
    DealCalls,
    OutcomeRecord,
    Policy,
    Tags,
    acts_on,
    classify,
    deal_name,
    event_kind,
    next_business_time,
    plan,
    related,
    tagged_outcome,
)

REP = Person("alice@acme.example", "Alice Moreno")
IVY = Person("ivy@acme.example", "Ivy Chen")
DANA = Person("dana@globex.com", "Dana Fox")
LEE = Person("lee@globex.com", "Lee Park")
POLICY = Policy(
    company_domains=frozenset({"acme.example"}),
    company_timezone="Europe/Berlin",
    implementation=(IVY,),
)
# Wednesday 2 December 2026, 15:00 UTC
START = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def event(title: str = "Globex terms #closing", **kw: object) -> CalendarEvent:
    values: dict[str, object] = {
        "uid": "evt-1",
        "start": START,
        "end": START + timedelta(hours=1),
        "title": title,
        "organizer": REP,
        "attendees": (Attendee(REP), Attendee(DANA), Attendee(LEE)),
        "timezone": "America/New_York",
    }
    values.update(kw)
    return CalendarEvent(**values)  # type: ignore[arg-type]


def planned(ev: CalendarEvent, outcome: OutcomeRecord | None = None, policy: Policy = POLICY) -> dict:
    result = plan(ev, classify(ev, policy), outcome, policy)
    return {s.rule: s for s in result.sends}


# -- classification -----------------------------------------------------------------------
def test_tags_are_found_case_insensitively_in_title_or_description() -> None:
    assert classify(event("Globex #CLOSING"), POLICY).kind is Kind.CLOSING
    assert classify(event("Globex", description="agenda\n#Kickoff"), POLICY).kind is Kind.KICKOFF
    assert classify(event("Globex call"), POLICY).kind is None


def test_a_tag_inside_a_longer_word_is_not_a_tag() -> None:
    assert classify(event("#closingtime party"), POLICY).kind is None
    assert tagged_outcome(event("#closing #wonderful"), Tags()) is None


def test_outcomes_from_tags_including_signed_and_contradictions() -> None:
    assert tagged_outcome(event("#closing #won"), Tags()) is Outcome.WON
    assert tagged_outcome(event("#closing", description="#Signed today"), Tags()) is Outcome.WON
    assert tagged_outcome(event("#closing #lost"), Tags()) is Outcome.LOST
    # Both tags: no outcome until the rep settles it.
    assert tagged_outcome(event("#closing #won #lost"), Tags()) is None


def test_configured_tags_replace_the_defaults() -> None:
    policy = Policy(company_domains=POLICY.company_domains, tags=Tags(closing=("[close]",)))
    assert classify(event("Globex [close]"), policy).kind is Kind.CLOSING
    assert classify(event("Globex #closing"), policy).kind is None


# A sync looks for all the tags at once and only then for each kind: the answers must be those of looking
# for each kind of tag on its own, whatever the words (the same word for two kinds, words with blanks).
TAG_SETS = [
    Tags(),
    Tags(closing=("#done",), won=("#done", "#won"), lost=("call lost",), kickoff=("call",)),
    Tags(closing=("closing call",), kickoff=(), won=("call won",), lost=("#Lost",)),
]
fragments = st.sampled_from(
    ["#closing", "#CLOSING", "#kickoff", "#won", "#signed", "#lost", "#done", "closing call", "call won",
     "call", "lost", "#closingtime", "x#won", "#won-", "#deal:globex", "Globex", " ", "\n", "-", "é"]
)  # fmt: skip


@given(
    tags=st.sampled_from(TAG_SETS),
    title=st.lists(fragments, max_size=6).map("".join),
    description=st.lists(fragments, max_size=6).map("".join),
    categories=st.lists(st.sampled_from(["Closing", "won", "#lost", "done", "Call", "other"]), max_size=2),
)
def test_looking_for_all_tags_at_once_finds_what_looking_for_each_finds(
    tags: Tags, title: str, description: str, categories: list[str]
) -> None:
    # Given an event with any mix of tag words, in its text or its categories
    ev = event(title, description=description, categories=tuple(categories))
    # Then its kind and outcome are those each kind of tag on its own says
    kind = (
        Kind.CLOSING
        if tags.marks(tags.closing, ev)
        else Kind.KICKOFF
        if tags.marks(tags.kickoff, ev)
        else None
    )
    won, lost = tags.marks(tags.won, ev), tags.marks(tags.lost, ev)
    outcome = None if won == lost else Outcome.WON if won else Outcome.LOST
    assert event_kind(ev, tags) is kind
    assert tagged_outcome(ev, tags) is outcome
    assert acts_on(ev, tags) is bool(kind or outcome)
    # And the deal a sync files it under is the one classify finds
    policy = Policy(company_domains=POLICY.company_domains, tags=tags)
    assert deal_name(ev, policy) == classify(ev, policy).deal.name


def test_an_event_the_company_did_not_organize_is_filed_under_no_deal() -> None:
    assert deal_name(event(organizer=DANA), POLICY) is None
    assert deal_name(event(organizer=None), POLICY) is None


def test_who_is_who_rep_customer_internal_and_deal_from_domain() -> None:
    ev = event(attendees=(Attendee(REP), Attendee(DANA), Attendee(IVY), Attendee(LEE)))
    c = classify(ev, POLICY)
    assert c.rep == REP
    assert c.deal.people == (DANA, LEE)
    assert c.internal == (IVY,)
    assert c.deal.name == "globex.com"
    assert c.deal.company == "Globex"


def test_deal_tag_overrides_the_domain() -> None:
    c = classify(event("Globex #closing #deal:Globex-EU"), POLICY)
    assert c.deal.name == "globex-eu"
    assert "#deal" not in c.notes


def test_subdomains_of_the_company_are_internal() -> None:
    eu = Person("max@eu.acme.example", "Max")
    c = classify(event(attendees=(Attendee(eu), Attendee(DANA))), POLICY)
    assert c.internal == (eu,)
    assert c.deal.people == (DANA,)


def test_rooms_and_resources_are_not_customers() -> None:
    room = Attendee(Person("room@globex.com", "Room 1"), kind="ROOM")
    c = classify(event(attendees=(Attendee(DANA), room)), POLICY)
    assert c.deal.people == (DANA,)


def test_an_event_organized_outside_the_company_triggers_nothing() -> None:
    ev = event("Sign now #closing #won", organizer=DANA)
    assert classify(ev, POLICY) is None
    assert plan(ev, None, None, POLICY).sends == ()


def test_an_event_with_no_organizer_triggers_nothing() -> None:
    assert classify(event(organizer=None), POLICY) is None


# -- planning: the default playbook -------------------------------------------------------
def test_closing_call_plans_prep_final_and_outcome_nudge_for_the_rep() -> None:
    sends = planned(event())
    assert set(sends) == {"closing-prep", "closing-final", "outcome-nudge"}
    assert sends["closing-prep"].due == START - timedelta(hours=24)
    assert sends["closing-final"].due == START - timedelta(hours=1)
    assert sends["outcome-nudge"].due == START + timedelta(hours=3)  # 2 h after the end
    for rule in ("closing-prep", "closing-final", "outcome-nudge"):
        assert sends[rule].to == (REP,)
        assert sends[rule].sender is None  # the configured service sender
    # A prompt before the call is worthless once the call has started.
    assert sends["closing-prep"].expires == START
    assert sends["closing-final"].expires == START


def test_keys_are_rule_and_event_id_so_a_replan_finds_the_same_send() -> None:
    first = planned(event())
    moved = planned(event(start=START + timedelta(days=2), end=START + timedelta(days=2, hours=1)))
    assert {s.key for s in first.values()} == {s.key for s in moved.values()}
    assert first["closing-prep"].key == "closing-prep:evt-1"


def test_won_deal_plans_intro_to_customer_and_handoff_brief_no_nudge() -> None:
    seen = START + timedelta(hours=2)
    sends = planned(event(), OutcomeRecord(Outcome.WON, seen))
    assert "outcome-nudge" not in sends
    intro = sends["implementation-intro"]
    assert intro.to == (DANA, LEE)
    assert intro.cc == (IVY,)  # the rep sends it: not copied on their own email
    assert intro.sender == REP and intro.reply_to == REP
    assert intro.audience is Audience.CUSTOMER
    # 17:00 UTC on a Wednesday is 12:00 in New York: inside business hours, 30 minutes after seen.
    assert intro.due == seen + timedelta(minutes=30)
    brief = sends["handoff-brief"]
    assert brief.to == (IVY,) and brief.cc == (REP,)
    assert brief.due == seen
    assert brief.audience is Audience.IMPLEMENTATION


def test_mail_sent_as_the_rep_never_copies_the_rep_even_when_a_rule_says_so() -> None:
    # Given a rule, as a config could write it, that copies the rep on customer mail sent as the rep
    rules = tuple(
        replace(r, cc=(Audience.REP, Audience.IMPLEMENTATION)) if r.name == "implementation-intro" else r
        for r in POLICY.rules
    )
    policy = replace(POLICY, rules=rules)

    # When a won deal is planned
    intro = planned(event(), OutcomeRecord(Outcome.WON, START + timedelta(hours=2)), policy)[
        "implementation-intro"
    ]

    # Then the rep is its sender and not on its Cc line; the implementation staff still are
    assert intro.sender == REP and intro.cc == (IVY,)


def test_won_outcome_seen_before_the_call_ends_acts_after_the_end() -> None:
    sends = planned(event(), OutcomeRecord(Outcome.WON, START - timedelta(hours=5)))
    assert sends["handoff-brief"].due == START + timedelta(hours=1)


def test_customer_mail_waits_for_business_hours_in_the_events_time_zone() -> None:
    # Outcome seen Wednesday 23:00 UTC = 18:00 in New York, after hours: Thursday 09:00 New York.
    seen = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)
    intro = planned(event(), OutcomeRecord(Outcome.WON, seen))["implementation-intro"]
    assert intro.due == datetime(2026, 12, 3, 9, 0, tzinfo=ZoneInfo("America/New_York"))


def test_lost_deal_plans_thank_you_check_in_and_next_year_to_the_customer_only() -> None:
    sends = planned(event(), OutcomeRecord(Outcome.LOST, START + timedelta(hours=2)))
    assert {"lost-thank-you", "lost-check-in", "lost-next-year"} <= set(sends)
    assert "implementation-intro" not in sends and "outcome-nudge" not in sends
    thanks = sends["lost-thank-you"]
    assert thanks.to == (DANA, LEE) and thanks.cc == ()
    assert thanks.sender == REP
    assert thanks.stop_on_reengagement
    # Thursday 16:00 UTC = 11:00 New York: in hours.
    assert thanks.due == START + timedelta(days=1, hours=1)
    assert sends["lost-check-in"].due.date() >= (START + timedelta(days=90)).date()
    assert timedelta(days=320) < sends["lost-next-year"].due - START < timedelta(days=350)
    assert thanks.expires == thanks.due + timedelta(days=3)  # not sent more than max_late_days late


def test_kickoff_plans_prep_for_rep_and_implementation_staff() -> None:
    sends = planned(event("Globex kickoff #kickoff"))
    assert set(sends) == {"kickoff-prep"}
    assert sends["kickoff-prep"].to == (REP, IVY)
    assert sends["kickoff-prep"].due == START - timedelta(hours=24)


def test_implementation_staff_per_rep() -> None:
    raj = Person("raj@acme.example", "Raj")
    policy = Policy(
        company_domains=POLICY.company_domains,
        implementation=(IVY,),
        implementation_by_rep={REP.email: (raj,)},
    )
    assert planned(event("#kickoff"), policy=policy)["kickoff-prep"].to == (REP, raj)


def test_cancelled_event_plans_nothing_and_says_why() -> None:
    ev = event(status=EventStatus.CANCELLED)
    result = plan(ev, classify(ev, POLICY), None, POLICY)
    assert result.sends == ()
    assert result.dropped["closing-prep:evt-1"] == "event cancelled"


def test_customer_mail_with_no_customer_on_the_invite_is_dropped_with_reason() -> None:
    ev = event(attendees=(Attendee(REP),))
    result = plan(ev, classify(ev, POLICY), OutcomeRecord(Outcome.LOST, START), POLICY)
    assert "lost-thank-you" not in {s.rule for s in result.sends}
    assert "nobody to send to" in result.dropped["lost-thank-you:evt-1"]


def test_recorded_outcome_drops_the_nudge_with_reason() -> None:
    ev = event()
    result = plan(ev, classify(ev, POLICY), OutcomeRecord(Outcome.WON, START), POLICY)
    assert result.dropped["outcome-nudge:evt-1"] == "outcome recorded: won"


# -- business hours -----------------------------------------------------------------------
HOURS = BusinessHours(start=time(9), end=time(17), days=frozenset(range(5)))
NY = ZoneInfo("America/New_York")


def test_business_time_inside_hours_is_unchanged() -> None:
    moment = datetime(2026, 12, 2, 10, 30, tzinfo=NY)
    assert next_business_time(moment, NY, HOURS) == moment


def test_business_time_friday_evening_moves_to_monday_morning() -> None:
    friday = datetime(2026, 12, 4, 18, 0, tzinfo=NY)
    assert next_business_time(friday, NY, HOURS) == datetime(2026, 12, 7, 9, 0, tzinfo=NY)


def test_business_time_across_the_dst_change_keeps_nine_local() -> None:
    # Saturday 31 October 2026 evening in New York; clocks go back on Sunday 1 November.
    saturday = datetime(2026, 10, 31, 20, 0, tzinfo=NY)
    monday = next_business_time(saturday, NY, HOURS)
    assert monday.astimezone(NY).hour == 9
    assert monday == datetime(2026, 11, 2, 14, 0, tzinfo=UTC)  # EST: UTC-5


def test_business_hours_until_midnight() -> None:
    hours = BusinessHours(start=time(0), end=time.max, days=frozenset(range(7)))
    late = datetime(2026, 12, 5, 23, 59, tzinfo=NY)
    assert next_business_time(late, NY, hours) == late


# -- invariants (Hypothesis) --------------------------------------------------------------
moments = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))
zones = st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", None])


@given(
    start=moments,
    minutes=st.integers(min_value=0, max_value=600),
    outcome=st.sampled_from([None, Outcome.WON, Outcome.LOST]),
    seen_after=st.integers(min_value=-600, max_value=60 * 24 * 30),
    zone=zones,
    kind=st.sampled_from(["#closing", "#kickoff"]),
)
def test_planner_invariants(
    start: datetime, minutes: int, outcome: Outcome | None, seen_after: int, zone: str | None, kind: str
) -> None:
    ev = event(kind, start=start, end=start + timedelta(minutes=minutes), timezone=zone)
    record = OutcomeRecord(outcome, start + timedelta(minutes=seen_after)) if outcome else None
    result = plan(ev, classify(ev, POLICY), record, POLICY)
    keys = [s.key for s in result.sends]
    # No send twice: one per rule and event.
    assert len(keys) == len(set(keys))
    assert not set(keys) & set(result.dropped)
    for send in result.sends:
        rule = POLICY.rule(send.rule)
        assert rule is not None
        # No prompt after the call starts.
        if rule.before_call:
            assert send.due <= send.expires == ev.start
        # Never act on an outcome before it was known.
        if record is not None and rule.condition.value in ("won", "lost"):
            assert send.due >= record.seen_at
        # Customer mail always lands in business hours, in the reader's zone.
        if rule.business_hours:
            local = send.due.astimezone(ZoneInfo(zone or POLICY.company_timezone))
            assert local.weekday() < 5 and time(9) <= local.time() < time(17)
        assert send.to, "a send always has someone to go to"
        assert all(p.domain != "acme.example" for p in send.to) or send.audience is not Audience.CUSTOMER


@given(start=moments, outcome=st.sampled_from([None, Outcome.WON, Outcome.LOST]))
def test_cancellation_cancels_everything(start: datetime, outcome: Outcome | None) -> None:
    ev = event(start=start, end=start + timedelta(hours=1), status=EventStatus.CANCELLED)
    record = OutcomeRecord(outcome, start) if outcome else None
    result = plan(ev, classify(ev, POLICY), record, POLICY)
    assert result.sends == ()
    assert result.dropped and all(why == "event cancelled" for why in result.dropped.values())


@pytest.mark.parametrize("disabled", ["closing-prep", "lost-next-year"])
def test_a_disabled_rule_plans_nothing(disabled: str) -> None:
    from dataclasses import replace

    rules = tuple(replace(r, enabled=False) if r.name == disabled else r for r in POLICY.rules)
    policy = Policy(**{**POLICY.__dict__, "rules": rules})
    sends = planned(event(), OutcomeRecord(Outcome.LOST, START), policy=policy)
    assert disabled not in sends


# -- a deal's calls ------------------------------------------------------------------------
def related_by_search(
    ev: CalendarEvent, deal_events: list[CalendarEvent], policy: Policy
) -> tuple[CalendarEvent | None, CalendarEvent | None]:
    """`related` as first written, a search of every event: the oracle for the bisection."""

    def calls(kind: Kind) -> list[CalendarEvent]:
        return [
            e
            for e in deal_events
            if e.id != ev.id and e.status is not EventStatus.CANCELLED and event_kind(e, policy.tags) is kind
        ]

    kickoff = min((e for e in calls(Kind.KICKOFF) if e.start > ev.start), key=lambda e: e.start, default=None)
    closing = max((e for e in calls(Kind.CLOSING) if e.start < ev.start), key=lambda e: e.start, default=None)
    return kickoff, closing


deal_calls = st.lists(
    st.tuples(
        st.integers(min_value=-4, max_value=4),  # hours from START: ties are frequent
        st.sampled_from(["#closing", "#kickoff", "catch-up"]),
        st.booleans(),  # cancelled
    ),
    max_size=12,
)


@given(
    calls=deal_calls, at=st.integers(min_value=-5, max_value=5), own=st.integers(min_value=0, max_value=11)
)
def test_the_kickoff_after_and_the_closing_before_are_found_as_a_search_of_the_deal_finds_them(
    calls: list[tuple[int, str, bool]], at: int, own: int
) -> None:
    # Given a deal's events, some at the same time, some cancelled, the planned event among them or not
    deal = [
        event(
            title,
            uid=f"evt-{i}",
            start=START + timedelta(hours=h),
            end=START + timedelta(hours=h + 1),
            status=EventStatus.CANCELLED if off else EventStatus.CONFIRMED,
        )
        for i, (h, title, off) in enumerate(calls)
    ]
    planned_event = deal[own] if own < len(deal) else event(uid="evt-x", start=START + timedelta(hours=at))
    # Then the deal's calls, classified once, give the same kickoff and closing as a search of them all
    assert DealCalls.of(deal, POLICY).related(planned_event) == related_by_search(planned_event, deal, POLICY)
    assert related(planned_event, deal, POLICY) == related_by_search(planned_event, deal, POLICY)
