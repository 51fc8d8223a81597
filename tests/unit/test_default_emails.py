"""The bundled emails as their readers get them: the sample deal and a bare event, both parts of each."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

import pytest

from daemon.context import variables
from daemon.model import Attendee, Audience, CalendarEvent, Condition, Kind, Outcome, Person
from daemon.playbook import OutcomeRecord, Policy, classify, plan
from daemon.preview import SAMPLE_NOW, sample_events
from daemon.render import Facts, Renderer
from daemon.rules import DEFAULT_RULES
from daemon.templates import Rendered, Templates
from tests.support import TEMPLATES_DIR

IVY = Person("ivy@acme.example", "Ivy Chen")
RAJ = Person("raj@acme.example", "Raj Patel")
POLICY = Policy(
    company_domains=frozenset({"acme.example"}),
    company_timezone="Europe/Berlin",
    implementation=(IVY, RAJ),
    roles={"raj@acme.example": "data engineer"},
)
COMPANY = "Acme Analytics"
TEMPLATES = Templates(TEMPLATES_DIR)
RULES = [rule.name for rule in DEFAULT_RULES]
CLOSING, KICKOFF = sample_events(POLICY)
CUSTOMER_RULES = [r.name for r in DEFAULT_RULES if Audience.CUSTOMER in r.to]


def outcome_for(rule: str) -> OutcomeRecord | None:
    condition = next(r for r in DEFAULT_RULES if r.name == rule).condition
    outcome = {Condition.WON: Outcome.WON, Condition.LOST: Outcome.LOST}.get(condition)
    return OutcomeRecord(outcome, SAMPLE_NOW) if outcome else None


def email(
    rule: str,
    closing: CalendarEvent = CLOSING,
    deal: Sequence[CalendarEvent] = (CLOSING, KICKOFF),
    policy: Policy = POLICY,
) -> Rendered:
    """The rule's email for the deal as the daemon would send it; a bare event, which plans no customer
    mail (nobody to send to), is rendered as if it had a reader."""
    definition = next(r for r in DEFAULT_RULES if r.name == rule)
    event = (
        next((e for e in deal if "kickoff" in e.title), closing)
        if definition.kind is Kind.KICKOFF
        else closing
    )
    outcome = outcome_for(rule)
    send = next(
        (s for s in plan(event, classify(event, policy), outcome, policy, deal).sends if s.rule == rule), None
    )
    if send is not None:
        return Renderer(TEMPLATES, policy, COMPANY).email(send, Facts(event, deal, outcome), send.due)
    c = classify(event, policy)
    assert c is not None
    context = variables(
        rule=rule,
        event=event,
        policy=policy,
        company=COMPANY,
        audience=definition.to[0],
        to=(c.rep,),
        deal_events=deal,
        outcome=outcome.outcome if outcome else None,
        sent_at=SAMPLE_NOW,
    ).pick()
    return TEMPLATES.render(rule, context)


def words(text: str) -> int:
    return len(text.split())


BARE = CalendarEvent(
    uid="bare@acme.example",
    start=CLOSING.start,
    end=CLOSING.end,
    title="#closing",
    organizer=CLOSING.organizer,
)


# -- every email, both parts ------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", RULES)
def test_every_default_email_renders_both_parts_for_the_sample_deal_and_a_bare_event(rule: str) -> None:
    # Given the sample deal, with everything the notes can say, and a bare event with nothing at all
    situations = [
        email(rule),
        email(rule, BARE, (BARE,)),
        email(rule, BARE, (BARE,), replace(POLICY, implementation=())),  # no staff configured
    ]

    # When each email is rendered, then it has a subject, a text part and an HTML part in the layout,
    # and no Markdown leaks into the text part as syntax
    for rendered in situations:
        assert rendered.subject.strip()
        assert words(rendered.text) > 15, rendered.text
        assert "<html" in rendered.html and "</p>" in rendered.html
        assert "**" not in rendered.text and "\\" not in rendered.text, rendered.text
        assert not re.search(r"^#+ ", rendered.text, re.MULTILINE), rendered.text
        # And no list item is glued to the line before it (a block tag eating a line break)
        assert not re.search(r"[.?!:)]- ", rendered.text), rendered.text


def test_the_default_templates_are_all_markdown() -> None:
    # Given the bundled folder, then every rule has its Markdown file and there is no Jinja one left
    assert sorted(TEMPLATES.names()) == sorted(RULES)
    assert [f for f in TEMPLATES.files if f.endswith(".jinja")] == []


# -- closing-prep -----------------------------------------------------------------------------------------
def test_closing_prep_is_short_and_puts_this_deal_first() -> None:
    # Given the sample deal, with notes, answers to the invite, a promise, push-back and homework
    # When the prep is rendered
    text = email("closing-prep").text

    # Then it is about 300 words, as a short prep should be
    assert words(text) <= 350, words(text)
    # And what only this deal has comes before the general playbook
    deal_first = [
        "Dana owns the budget",
        "Lee Park: tentative",
        "Omar Haddad: declined",
        "Ravi Shah (security)",
        "The shift leads",
        "SSO in the first week: “",
        "Send the SSO metadata",
        "Acid test",
    ]
    positions = [text.find(phrase) for phrase in deal_first]
    assert -1 not in positions, text
    assert positions == sorted(positions), text
    # And people on the invite are not reported as missing from it
    assert "Dana Fox (" not in text


def test_without_promises_the_time_travel_questions_are_the_general_ones() -> None:
    # Given a closing call whose notes promise nothing
    closing = replace(CLOSING, description="Dana owns the budget.")

    # When the prep is rendered
    text = email("closing-prep", closing, (closing, KICKOFF)).text

    # Then it still asks about kickoff day and a year out, and teaches the "Also involved:" line
    assert "It’s kickoff day, Tuesday 10 March" in text, text
    assert "A year from now" in text
    assert "“Also involved:”" in text


@pytest.mark.parametrize("rule", ["closing-prep", "handoff-brief"])
def test_the_homework_appears_once(rule: str) -> None:
    # Given the sample deal with three homework items under a "Homework:" list
    # When the email is rendered
    rendered = email(rule)

    # Then each item is shown once in each part, and the notes' own "Homework:" line is not repeated
    for part in (rendered.text, rendered.html):
        assert part.count("Send the SSO metadata") == 1, part
        assert "Homework:" not in part


def test_closing_final_asks_the_acid_test_as_a_question() -> None:
    text = email("closing-final").text
    assert "Would you buy this?" in text
    assert re.search(r"Globex’s shoes[^.?]*\?", text), text


# -- handoff-brief ----------------------------------------------------------------------------------------
def test_handoff_brief_tells_the_lead_they_are_named_to_the_customer_and_uses_the_push_back_line() -> None:
    # Given a won deal with a "Push-back:" line, two implementation people, the second with a role
    # When the brief is rendered
    text = email("handoff-brief").text

    # Then the lead learns they are the lead the customer is told about, and who works with them
    assert "Ivy, you are the lead" in text
    assert "names you to Globex as their implementation lead" in text
    assert "Raj Patel (data engineer)" in text
    # And the push-back the rep expects is there, not only the general advice
    assert "Sam expects push-back from:\n\n- The shift leads, who lose their own spreadsheets" in text
    # And what was promised
    assert "- SSO in the first week\n" in text


# -- implementation-intro ---------------------------------------------------------------------------------
def test_implementation_intro_reads_like_the_reps_own_letter() -> None:
    # Given a won deal with a kickoff on the calendar
    # When the introduction is planned and rendered
    outcome = outcome_for("implementation-intro")
    send = next(
        s
        for s in plan(CLOSING, classify(CLOSING, POLICY), outcome, POLICY).sends
        if s.rule == "implementation-intro"
    )
    rendered = email("implementation-intro")
    body = rendered.text

    # Then it comes from the rep, copies implementation, and does not copy the rep on their own email
    assert send.sender is not None and send.sender.email == "sam.rivera@acme.example"
    assert [p.email for p in send.cc] == ["ivy@acme.example", "raj@acme.example"]
    assert "I’ve copied Ivy and Raj here." in body
    # And it names the kickoff as a person would, without its title or a year
    assert "Our kickoff is on Tuesday 10 March at 11:00 EDT." in body
    assert not re.search(r"\b20\d\d\b", body), body
    for title in ("Globex: final terms", "Globex kickoff", "final terms"):
        assert title not in body and title not in rendered.html
    # And the homework items start with a capital, and the second person has a role
    assert "- Send the SSO metadata\n- Name an internal admin\n" in body
    assert "Raj Patel, our data engineer, works with Ivy" in body
    # And none of the rep's internal notes reach the customer
    for internal in ("Dana owns the budget", "shift leads", "Ravi Shah", "spring peak"):
        assert internal not in body and internal not in rendered.html
    # And it signs off with the rep's name and the company
    assert body.rstrip().endswith("Sam Rivera\nAcme Analytics")


# -- lost-check-in ----------------------------------------------------------------------------------------
def test_lost_check_in_carries_the_reps_follow_up_line() -> None:
    # Given a lost deal whose closing call has a "Follow-up:" line
    # When the check-in is rendered
    rendered = email("lost-check-in")

    # Then the line is in it, and nothing else from the notes; the subject is a person's, not a sequence's
    assert "I can send the checklist two ops teams used to move off spreadsheets" in rendered.text
    assert "Dana owns the budget" not in rendered.text and "shift leads" not in rendered.text
    assert rendered.subject == "Since we spoke in March"
    assert rendered.text.rstrip().endswith("Sam Rivera\nAcme Analytics")


def test_lost_check_in_without_a_follow_up_line_is_a_short_honest_note() -> None:
    # Given a lost deal whose notes have no "Follow-up:" line
    closing = replace(CLOSING, description="They went with a competitor. Price.")

    # When the check-in is rendered
    text = email("lost-check-in", closing, (closing,)).text

    # Then it is a few lines with something in it, never "just checking in", and no internal note
    assert words(text) < 110, text
    assert "checking in" not in text.lower() and "quick hello" not in text.lower()
    assert "how it turned out" in text
    assert "competitor" not in text and "Price" not in text
    assert text.rstrip().endswith("Sam Rivera\nAcme Analytics")


# -- customer mail ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", CUSTOMER_RULES)
def test_customer_mail_has_no_title_no_year_and_no_internal_notes(rule: str) -> None:
    rendered = email(rule)
    for part in (rendered.text, rendered.html):
        assert "final terms" not in part and "Globex kickoff" not in part
        assert "Dana owns the budget" not in part and "shift leads" not in part
    assert not re.search(r"\b20\d\d\b", rendered.text), rendered.text
    assert not re.search(r"\d|#|:", rendered.subject), rendered.subject


# -- event text is text -----------------------------------------------------------------------------------
def hostile(where: str) -> str:
    return f"{where} **bold** <script>alert(1)</script> [click](http://evil.example/{where.lower()})"


def test_markup_in_event_text_shows_literally_in_both_parts_of_every_email() -> None:
    # Given a deal whose title, notes (every labelled line too) and attendee names carry Markdown and HTML
    rep = Person("sam.rivera@acme.example", "Sam Rivera")
    dana = Person("dana@globex.example", hostile("Dana"))
    notes = "\n".join(
        [
            hostile("notes"),
            f"Promised: {hostile('promised')}",
            f"Push-back: {hostile('pushback')}",
            f"Also involved: Mo Ng ({hostile('role')})",
            f"Follow-up: {hostile('followup')}",
            f"Homework:\n- {hostile('homework')}",
        ]
    )
    closing = replace(
        CLOSING,
        title=hostile("title") + " #closing",
        description=notes,
        attendees=(Attendee(rep), Attendee(dana, status="TENTATIVE")),
    )
    kickoff = replace(
        KICKOFF, title=hostile("kickoff") + " #kickoff", attendees=(Attendee(rep), Attendee(dana))
    )
    shown = 0
    for rule in RULES:
        # When each email is rendered
        rendered = email(rule, closing, (closing, kickoff))

        # Then no event text became markup, a script or a link, in either part
        html = rendered.html
        assert "<script" not in html, rule
        assert 'href="http://evil' not in html and "<strong>bold" not in html and "<em>" not in html, rule
        for part in (rendered.text, html):
            for where in re.findall(r"(\w+) \*\*bold\*\*", part):
                literal = f"{where} **bold** " + (
                    "&lt;script&gt;alert(1)&lt;/script&gt;" if part is html else "<script>alert(1)</script>"
                )
                # (a word joiner after :// keeps mail clients from making a link of the address)
                assert literal + f" [click](http://\u2060evil.example/{where.lower()})" in part, (rule, part)
                shown += 1
            # And every piece of event text in it is whole, with its markup as literal characters
            assert part.count("evil.example") == len(re.findall(r"\*\*bold\*\*", part)), (rule, part)
    assert shown > 2 * len(RULES), "the hostile text should show up in every email"
