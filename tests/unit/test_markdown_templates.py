"""Markdown templates: one body makes both parts; event text stays text; overrides; errors with file and
line; an edit is taken only once it passes the check."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.config.sections import BUNDLED_TEMPLATES
from daemon.errors import Problem, TemplateError
from daemon.templates import Templates

EMAIL = """---
subject: Prep for {{ event.title }}
description: to the rep, the day before
---
Hi {{ rep.first_name }},

"{{ event.title }}" is on **{{ event.start|when }}**. It's short.

## The acid test

Would you buy this?

{{ event.homework|bullets }}

On the invite:

{{ event.customer|contacts }}

{{ event.notes|quote }}
"""

EVIL = "**Big** <script>alert(1)</script> [click](http://evil.example) # not a heading"


def context(**event: Any) -> dict[str, Any]:
    values = {
        "title": "Globex final terms",
        "start": datetime(2026, 12, 2, 10, tzinfo=UTC),
        "homework": ["Send the SSO metadata", "Name an admin"],
        "customer": [{"name": "Dana Fox", "first_name": "Dana", "email": "dana@globex.example"}],
        "notes": "Dana owns the budget.\nLee runs ops.",
        **event,
    }
    return {"rep": {"first_name": "Sam", "email": "sam@acme.example"}, "event": values}


def folder(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def templates(tmp_path: Path, files: dict[str, str]) -> Templates:
    return Templates(folder(tmp_path, files), defaults=BUNDLED_TEMPLATES)


def test_one_body_makes_the_html_and_the_text_part(tmp_path: Path) -> None:
    rendered = templates(tmp_path, {"prep.md": EMAIL}).render("prep", context())
    assert rendered.subject == "Prep for Globex final terms"
    # The text part: headings in capitals, lists as "- ", quotes indented, addresses in angle brackets.
    assert "THE ACID TEST" in rendered.text
    assert "- Send the SSO metadata\n- Name an admin" in rendered.text
    assert "- Dana Fox <dana@globex.example>" in rendered.text
    assert "    Dana owns the budget.\n    Lee runs ops." in rendered.text
    assert "**" not in rendered.text and "##" not in rendered.text
    # The HTML part: the same words, as markup in the shared layout, the CSS on each element.
    html = rendered.html
    assert "<h2" in html and "The acid test</h2>" in html
    assert "<strong" in html and '<a href="mailto:dana@globex.example"' in html
    assert 'style="' in html and "@media" in html  # inlined, and the phone rules kept
    # Typography is the same in both parts: curly quotes and apostrophes.
    assert "“Globex final terms”" in rendered.text and "It’s short" in rendered.text
    assert "“Globex final terms”" in html and "It’s short" in html


@pytest.mark.parametrize("field", ["title", "notes", "homework", "customer"])
def test_markdown_and_html_in_event_text_stay_literal_text(tmp_path: Path, field: str) -> None:
    values: dict[str, Any] = {
        "title": EVIL,
        "notes": EVIL + "\n# also not a heading\n    not code\n- not a list\n===",
        "homework": [EVIL],
        "customer": [{"name": EVIL, "first_name": "x", "email": "dana@globex.example"}],
    }
    rendered = templates(tmp_path, {"prep.md": EMAIL}).render("prep", context(**{field: values[field]}))
    assert "<script" not in rendered.html and 'evil.example"' not in rendered.html
    assert 'href="http://evil' not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    # Word for word in both parts, but for an invisible word joiner that keeps mail clients from making
    # a link of the address
    assert "**Big**" in rendered.html and "[click](http://\u2060evil.example)" in rendered.html
    assert EVIL in rendered.text.replace("\n    ", "\n").replace("\u2060", "")
    assert "http://evil" not in rendered.text
    assert "<code" not in rendered.html and "<h1" not in rendered.html
    if field == "notes":
        assert "# also not a heading" in rendered.text and "- not a list" in rendered.text


def test_undefined_name_names_the_file_and_its_line(tmp_path: Path) -> None:
    broken = EMAIL.replace("Would you buy this?", "Would {{ customr }} buy this?")
    with pytest.raises(TemplateError) as exc:
        templates(tmp_path, {"prep.md": broken}).render("prep", context())
    assert exc.value.problem == Problem("prep.md", 11, "'customr' is undefined")


def test_syntax_error_in_the_subject_names_the_subject_line(tmp_path: Path) -> None:
    broken = EMAIL.replace("subject: Prep for {{ event.title }}", "subject: Prep for {{ event.title }")
    with pytest.raises(TemplateError) as exc:
        templates(tmp_path, {"prep.md": broken}).render("prep", context())
    assert exc.value.problem.file == "prep.md" and exc.value.problem.line == 2


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("Hi\n", 1, "must start with front matter"),
        ("---\nsubject: x\n", 1, "no closing '---'"),
        ("---\ndescription: x\n---\nHi\n", 1, "needs a 'subject:' line"),
        ("---\nsubject: x\nto: boss@acme.example\n---\nHi\n", 3, "unknown front matter line"),
    ],
)
def test_front_matter_mistakes_name_their_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    with pytest.raises(TemplateError) as exc:
        templates(tmp_path, {"prep.md": text}).render("prep", context())
    assert exc.value.problem.line == line and words in exc.value.problem.message


def test_a_rep_override_replaces_the_default_for_that_reps_deals_only(tmp_path: Path) -> None:
    t = templates(
        tmp_path,
        {
            "prep.md": EMAIL,
            "reps/Sam@Acme.example/prep.md": "---\nsubject: Sam's own\n---\nShort, {{ rep.first_name }}.\n",
        },
    )
    assert t.find("prep", rep="sam@acme.example") == "reps/Sam@Acme.example/prep.md"
    assert t.render("prep", context(), rep="sam@acme.example").text == "Short, Sam.\n"
    assert t.render("prep", context(), rep="ann@acme.example").subject == "Prep for Globex final terms"
    assert t.overrides() == [("Sam@Acme.example", "prep")]


def test_two_files_for_one_rule_is_an_error(tmp_path: Path) -> None:
    jinja = "{% block subject %}x{% endblock %}{% block text %}x{% endblock %}{% block html %}x{% endblock %}"
    t = templates(tmp_path, {"prep.md": EMAIL, "prep.jinja": jinja})
    assert [p.file for p in t.conflicts()] == ["prep.jinja"]
    with pytest.raises(TemplateError, match="two templates for prep"):
        t.render("prep", context())


def test_a_folder_without_its_own_layout_uses_the_bundled_one(tmp_path: Path) -> None:
    html = templates(tmp_path, {"prep.md": EMAIL}).render("prep", context()).html
    assert html.lstrip().lower().startswith("<!doctype html>") and "max-width" in html


def save(path: Path, text: str, seconds_ago: float = 10) -> None:
    """Write a template as an editor would have, some seconds ago: its file has settled."""
    path.write_text(text, encoding="utf-8")
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def check_all(t: Templates) -> list[Problem]:
    problems = []
    for name in t.names():
        try:
            t.render(name, context())
        except TemplateError as exc:
            problems.append(exc.problem)
    return problems


def test_reload_takes_a_good_edit_and_refuses_a_broken_one(tmp_path: Path, caplog: Any) -> None:
    t = templates(tmp_path, {"prep.md": EMAIL})
    assert t.reload(check_all) == []
    # When a good edit is saved, the next reload takes it.
    save(tmp_path / "prep.md", EMAIL.replace("It's short.", "Ten minutes."))
    assert t.reload(check_all) == []
    assert "Ten minutes." in t.render("prep", context()).text
    # When a broken edit is saved, it is refused with one log line naming file and line ...
    save(tmp_path / "prep.md", EMAIL.replace("Would you", "Would {{ nobody }}"))
    with caplog.at_level(logging.ERROR):
        refused = t.reload(check_all)
        t.reload(check_all)  # ... once, not at every poll
    assert refused == [Problem("prep.md", 11, "'nobody' is undefined")]
    assert [r.getMessage() for r in caplog.records] == [
        "template prep.md refused, the last good version stays in use: "
        "prep.md, line 11: 'nobody' is undefined"
    ]
    # ... and the last good version keeps rendering, said to be stale.
    assert "Ten minutes." in t.render("prep", context()).text
    assert t.stale() == {"prep.md": Problem("prep.md", 11, "'nobody' is undefined")}
    # When it is fixed, the fix is taken and nothing is stale any more.
    save(tmp_path / "prep.md", EMAIL.replace("It's short.", "Fixed."))
    assert t.reload(check_all) == []
    assert "Fixed." in t.render("prep", context()).text and t.stale() == {}


def test_reload_refuses_a_deletion_that_leaves_a_rule_without_template(tmp_path: Path) -> None:
    t = templates(tmp_path, {"prep.md": EMAIL})
    t.problems = None
    (tmp_path / "prep.md").unlink()
    uses = ["prep"]

    def check(candidate: Templates) -> list[Problem]:
        problems = []
        for name in uses:
            try:
                candidate.render(name, context())
            except TemplateError as exc:
                problems.append(exc.problem)
        return problems

    assert [p.file for p in t.reload(check)] == ["prep.md"]
    assert t.render("prep", context()).subject == "Prep for Globex final terms"


def test_editor_swap_and_backup_files_are_not_templates(tmp_path: Path) -> None:
    t = templates(tmp_path, {"prep.md": EMAIL, ".prep.md.swp": "x", "prep.md~": "x", "#prep.md#": "x"})
    assert t.names() == ["prep"] and sorted(t.files) == ["prep.md"]


def test_a_shared_piece_is_included_and_a_one_line_value_keeps_its_spaces(tmp_path: Path) -> None:
    # Given a `_signature.md` piece (no front matter) included by an email that prints a separator
    t = templates(
        tmp_path,
        {
            "_signature.md": "Best,\n\n{{ rep.first_name }}{{ ', ' }}{{ company }}\n",
            "note.md": "---\nsubject: Hello\n---\nThanks for your time.\n\n{% include '_signature.md' %}\n",
        },
    )
    # When it renders, the piece is there, escaped like the rest, and ", " prints as written
    rendered = t.render("note", {**context(), "company": "Acme *Analytics*"})
    assert rendered.text.endswith("Best,\n\nSam, Acme *Analytics*\n")
    assert "<em>" not in rendered.html
    # and the piece is not a rule's template of its own
    assert t.names() == ["note"]


def test_a_file_saved_this_moment_waits_for_the_next_poll(tmp_path: Path) -> None:
    # Given a template, when an editor is still writing it (its file saved this very moment, cut short)
    t = templates(tmp_path, {"prep.md": EMAIL})
    save(tmp_path / "prep.md", EMAIL[: EMAIL.index("## The acid")], seconds_ago=0)
    # Then a reload leaves it for later, refusing nothing
    assert t.reload(check_all) == [] and "The acid test" in t.render("prep", context()).html
    # and once it has settled, whole, the next reload takes it
    save(tmp_path / "prep.md", EMAIL.replace("It's short.", "Whole now."))
    assert t.reload(check_all) == [] and "Whole now." in t.render("prep", context()).text


def test_an_edit_that_spans_two_files_is_taken_together(tmp_path: Path) -> None:
    # Given an email that includes a shared piece
    t = templates(
        tmp_path, {"_sign.md": "Best, {{ rep.first_name }}\n", "note.md": NOTE.format(piece="_sign.md")}
    )
    assert t.reload(check_all) == []
    # When the piece is renamed and the email changed to include the new name, both saved
    (tmp_path / "_sign.md").unlink()
    save(tmp_path / "_signature.md", "Cheers, {{ rep.first_name }}\n")
    save(tmp_path / "note.md", NOTE.format(piece="_signature.md"))
    # Then the reload takes both: neither works without the other
    assert t.reload(check_all) == []
    assert "Cheers, Sam" in t.render("note", context()).text and t.stale() == {}


NOTE = "---\nsubject: Hello\n---\nThanks.\n\n{{% include '{piece}' %}}\n"
