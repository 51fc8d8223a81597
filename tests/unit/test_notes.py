"""The rep's notes: labelled lines read as the rep meant them, and nothing guessed from free text."""

from __future__ import annotations

from daemon.model import Person
from daemon.notes import (
    Named,
    also_involved,
    follow_up,
    homework,
    not_invited,
    other_notes,
    promised,
    push_back,
)

NOTES = """Dana owns the budget; Lee runs the ops team.
Promised: SSO in the first week; weekly check-ins.
push back: the shift leads
Also involved: Ravi Shah (security, EMEA), Dana Fox (CFO); Lee
Follow-up: You mentioned the spring review; I can send our checklist.
Homework:
- send SSO metadata
* name an admin
1. share volumes

Omar Haddad (procurement) signs off."""

DANA = Person("dana.fox@globex.example", "Fox, Dana")
LEE = Person("lee.park@globex.example", "Lee Park")


def test_homework_from_a_line_or_a_list() -> None:
    # Given homework on one line, split at semicolons, or as a list of any bullet style under the label
    # When it is read, then each task is one item, as written, without a sentence's full stop
    assert homework("Homework: export reports; name an admin.") == ("export reports", "name an admin")
    notes = "Budget ok.\nHOMEWORK:\n- send SSO metadata\n* name an admin\n1. share volumes\n\nOther"
    assert homework(notes) == ("send SSO metadata", "name an admin", "share volumes")
    assert homework("no tasks here") == ()


def test_every_line_with_a_label_counts_and_labels_are_read_whatever_their_case_or_hyphen() -> None:
    # Given two Promised: lines and the push-back written as "push back", "Pushback" or "PUSH-BACK"
    notes = "Promised: SSO\nsome text\nPROMISED: weekly check-ins\nPushback: finance\nPUSH-BACK: ops"

    # When the notes are read
    # Then both promises and both push-backs are there, in order
    assert promised(notes) == ("SSO", "weekly check-ins")
    assert push_back(notes) == ("finance", "ops")
    assert push_back(NOTES) == ("the shift leads",)


def test_a_label_counts_only_at_the_start_of_a_line() -> None:
    # Given "promised:" in the middle of a sentence
    notes = "We never said it was promised: just discussed.\nHomework - none agreed"

    # When the notes are read, then nothing is taken for a label
    assert promised(notes) == () and homework(notes) == ()
    assert other_notes(notes) == notes


def test_the_follow_up_is_the_first_follow_up_line_as_written() -> None:
    # Given a Follow-up: line with semicolons and a full stop, and a second one
    notes = NOTES + "\nFollow up: a second one"

    # When it is read, then it is the first line's text, whole: it is a sentence for the customer
    assert follow_up(notes) == "You mentioned the spring review; I can send our checklist."
    assert follow_up("Followup:\n- a list\n- of two") == "a list of two"
    assert follow_up("Follow-up:") == "" and follow_up("nothing") == ""


def test_people_also_involved_with_their_roles() -> None:
    # Given an "Also involved:" line with roles in parentheses (one with a comma), split at , and ;
    # When it is read
    # Then each person has a name and a role, the comma inside the parentheses kept
    assert also_involved(NOTES) == (
        Named("Ravi Shah", "security, EMEA"),
        Named("Dana Fox", "CFO"),
        Named("Lee", ""),
    )
    assert also_involved("Also involved:\n- Mia Lopez (finance)\n- Ops team") == (
        Named("Mia Lopez", "finance"),
        Named("Ops team", ""),
    )


def test_not_invited_leaves_out_whoever_is_on_the_invite_by_name_address_or_first_name() -> None:
    # Given notes naming Ravi (not invited), Dana Fox (invited as "Fox, Dana") and Lee (by first name),
    # and Omar Haddad (procurement) in free text, not on the "Also involved:" line
    # When the people not on the invite are asked for
    missing = not_invited(NOTES, (DANA, LEE))

    # Then only Ravi is: free text is never read for names, and invited people are recognised
    assert missing == (Named("Ravi Shah", "security, EMEA"),)
    by_address = not_invited("Also involved: lee.park@globex.example; Jo Kim", (LEE,))
    assert by_address == (Named("Jo Kim", ""),)


def test_ordinary_capitalised_words_are_never_taken_for_people() -> None:
    # Given notes full of capitalised words and parentheses, with no "Also involved:" line
    notes = "Sales Team (EMEA) met Google Cloud (GCP) on Monday.\nQ2 Review (board) is next."

    # When the people not on the invite are asked for, then there are none
    assert not_invited(notes, ()) == ()


def test_other_notes_are_the_notes_without_labelled_lines_and_their_lists() -> None:
    # Given notes with free text around every kind of labelled line
    # When the rest of the notes is asked for
    rest = other_notes(NOTES)

    # Then only the free text remains, in order, once
    assert rest == "Dana owns the budget; Lee runs the ops team.\n\nOmar Haddad (procurement) signs off."
    assert other_notes("") == ""
