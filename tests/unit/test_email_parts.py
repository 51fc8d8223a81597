"""Markdown parsed once per distinct run of text reads exactly as markdown-it's own full parse."""

from __future__ import annotations

from markdown_it import MarkdownIt

from daemon import email_parts

# The same runs in different places and documents: a heading and a paragraph, inside a quote and a
# list, with smart quotes and replacements, and once with a link reference that changes what a run means.
DOCUMENTS = [
    '# "Acid test" -- would you buy?\n\n"Acid test" -- would you buy?\n\n- "Acid test" -- would you buy?\n',
    '> "Acid test" -- would you buy?\\\n> It\'s *not* [a link](https://acme.example/x) (c) 2026...\n',
    "It's *not* [a link](https://acme.example/x) (c) 2026...\n\n1. one\n2. [ref] and `code`\n",
    "1. one\n2. [ref] and `code`\n\n[ref]: https://acme.example/ref\n",
    "1. one\n2. [ref] and `code`\n",
    'Buyer \\*one\\* \\<b\\> ~~gone~~ \'quoted "inner" words\'\n\n    code block "kept"\n',
]


def test_each_document_reads_as_markdown_it_parses_it_alone() -> None:
    # Given markdown-it as the email parts configure it, parsing every document from scratch
    full = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": True}).enable(
        ["replacements", "smartquotes", "strikethrough"]
    )
    # When the documents go through the email parts twice, runs repeating across them
    for _ in range(2):
        for document in DOCUMENTS:
            tokens = email_parts.parse(document)
            # Then the HTML and the text part are what the full parse makes of that document
            expected = full.parse(document)
            assert email_parts.html_body(tokens) == full.renderer.render(expected, full.options, {})
            assert email_parts.plain_text(tokens) == email_parts.plain_text(expected)
    # And a link reference is a link in its own document only
    assert 'href="https://acme.example/ref"' in email_parts.html_body(email_parts.parse(DOCUMENTS[3]))
    assert "href" not in email_parts.html_body(email_parts.parse(DOCUMENTS[4]))


def test_a_long_run_of_event_text_is_read_right_and_not_kept() -> None:
    # Given a rep's long note, quoted in an email, with Markdown-looking text in it
    note = 'Said "yes" -- *if* legal agrees (c) ' * 20
    # When it is parsed, twice
    first = email_parts.html_body(email_parts.parse(f"> {note}\n"))
    again = email_parts.html_body(email_parts.parse(f"> {note}\n"))
    # Then it reads as markdown-it reads it, and the memo of runs does not hold it
    assert first == again and "<em>if</em>" in first and "“yes”" in first and "©" in first
    assert not any(len(run) > 400 for run in email_parts._runs.parsed)
