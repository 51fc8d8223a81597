"""Templates: sandboxed, strict, HTML escaped; errors name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import email_parts
from daemon.errors import TemplateError
from daemon.templates import Templates

TEMPLATE = """{% block subject %}Hello {{ name }}{% endblock %}
{% block text %}Dear {{ name }},
notes: {{ notes }}{% endblock %}
{% block html %}<p>Dear {{ name }}</p><p>{{ notes }}</p>{% endblock %}
"""


def make(tmp_path: Path, name: str, body: str) -> Templates:
    (tmp_path / f"{name}.jinja").write_text(body, encoding="utf-8")
    return Templates(tmp_path)


def test_html_part_is_escaped_text_part_is_not(tmp_path: Path) -> None:
    rendered = make(tmp_path, "t", TEMPLATE).render("t", {"name": "Ann", "notes": "<script>x</script> & co"})
    assert rendered.subject == "Hello Ann"
    assert "<script>x</script> & co" in rendered.text
    assert "&lt;script&gt;" in rendered.html and "<script>" not in rendered.html


def test_subject_is_one_line_whatever_the_data(tmp_path: Path) -> None:
    rendered = make(tmp_path, "t", TEMPLATE).render("t", {"name": "Ann\r\nBcc: evil@x.example", "notes": ""})
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


def test_undefined_name_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    body = TEMPLATE.replace("notes: {{ notes }}", "notes: {{ notse }}")
    with pytest.raises(TemplateError) as exc:
        make(tmp_path, "t", body).render("t", {"name": "Ann", "notes": ""})
    assert "t.jinja, line 3" in str(exc.value) and "notse" in str(exc.value)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    body = TEMPLATE.replace("{% endblock %}\n{% block html", "{% endblok %}\n{% block html")
    with pytest.raises(TemplateError) as exc:
        make(tmp_path, "t", body).render("t", {"name": "Ann", "notes": ""})
    assert "t.jinja, line" in str(exc.value)


def test_sandbox_refuses_unsafe_attribute_access(tmp_path: Path) -> None:
    body = TEMPLATE.replace("Hello {{ name }}", "{{ name.__class__.__mro__ }}")
    with pytest.raises(TemplateError):
        make(tmp_path, "t", body).render("t", {"name": "Ann", "notes": ""})


def test_missing_block_and_missing_file(tmp_path: Path) -> None:
    templates = make(tmp_path, "t", "{% block subject %}x{% endblock %}{% block text %}y{% endblock %}")
    with pytest.raises(TemplateError, match="has no"):
        templates.render("t", {})
    with pytest.raises(TemplateError, match="not found"):
        templates.render("nope", {})


def test_a_list_inside_an_item_of_a_tight_list_keeps_the_text_part_tight() -> None:
    # Given a tight list whose middle item has a list of its own
    markdown = "- one:\n    - a\n    - b\n- two\n\nAfter."

    # When the text part is written
    text = email_parts.plain_text(email_parts.parse(markdown))

    # Then the next item follows the inner list without a blank line, as in the HTML
    assert text == "- one:\n  - a\n  - b\n- two\n\nAfter.\n"
