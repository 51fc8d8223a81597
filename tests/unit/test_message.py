"""The message builder's own defence: whatever slips past cleaning, no header line is added."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import daemon.model
from daemon.errors import UnsafeMessageError
from daemon.mail.message import build
from daemon.model import Person, clean_line
from daemon.templates import Rendered

INJECTION = "=?utf-8?q?Dan=0D=0ABcc:_attacker@evil.example?="


def letter(name: str) -> object:
    return build(
        key="deal/rule",
        rendered=Rendered("Next steps", "text\n", "<p>html</p>"),
        sender=Person("alice@acme.example", "Alice"),
        to=(Person("dan@globex.example", name),),
        date=datetime(2026, 12, 1, tzinfo=UTC),
    )


def test_encoded_words_are_decoded_before_cleaning_so_they_stay_text() -> None:
    # Given untrusted text with encoded words, one of them hiding a CR LF, one nested in another
    # When it is cleaned into one line
    # Then it reads as the words it encodes, on one line, with no encoded word left for a folder to decode
    assert clean_line(INJECTION) == "Dan Bcc: attacker@evil.example"
    assert clean_line("Zo=?utf-8?b?w6s=?= M=?iso-8859-1?q?=FC?=ller") == "Zoë Müller"
    assert "=?" not in clean_line("=?utf-8?q?=3D=3Futf-8=3Fq=3FA=3D0AB=3F=3D?=")
    assert "=?" not in clean_line("=?no-such-charset?q?A=0AB?= =?utf-8?x?bad?=")


def test_a_value_that_would_still_fold_into_a_header_line_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given cleaning that misses encoded words (as it did before; as a future gap might)
    monkeypatch.setattr(daemon.model, "decode_words", lambda text: text)

    # When a message is built for a recipient whose name hides a Bcc line
    # Then the builder refuses it rather than handing over a message with a header of its own
    with pytest.raises(UnsafeMessageError, match="header lines"):
        letter(INJECTION)


def test_an_ordinary_name_with_a_comma_and_quotes_builds_unchanged() -> None:
    message = letter('Belson, Gavin "G"')
    assert [a.addr_spec for a in message["To"].addresses] == ["dan@globex.example"]  # type: ignore[index]


def test_the_message_is_byte_for_byte_what_the_stock_policy_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a message with everything a header can hold: names needing encoded words and quotes,
    # a long subject, Cc, Reply-To, List-Unsubscribe
    from email.policy import SMTP

    import daemon.mail.message as message_module

    def written() -> bytes:
        message = build(
            key="closing-prep:deal-7",
            rendered=Rendered("Zoë's kickoff – " + "déjà vu, " * 30, "Grüße\n", "<p>Grüße</p>\n"),
            sender=Person("alice@acme.example", "Alice Moreno"),
            to=(Person("dan@globex.example", 'Belson, Gavin "G"'), Person("zoe@globex.example", "Zoë Ünal")),
            cc=(Person("ivy@acme.example", "Ivy Chen"),),
            reply_to=Person("alice@acme.example", "Alice Moreno"),
            date=datetime(2026, 12, 1, tzinfo=UTC),
            unsubscribe="https://ft.acme.example/u/abc",
        )
        # A fixed boundary: the only part that differs between two builds
        message.set_boundary("b")
        return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))

    # When it is written with followthrough's policy (header classes made once) and with the stock one
    ours = written(), written()
    monkeypatch.setattr(message_module, "POLICY", SMTP.clone(max_line_length=998))
    stock = written()

    # Then the bytes are the same, the second time too
    assert ours[0] == ours[1] == stock
    assert b"Reply-To: Alice Moreno <alice@acme.example>" in stock


def test_both_parts_read_back_whole_whatever_the_text_holds() -> None:
    # Given bodies that hold lines looking like MIME boundaries
    from email import message_from_bytes
    from email.policy import default

    text = "--=_ft_\n--==============\n-- \nend\n"
    html = "<p>--=_ft_--</p>\n"
    message = build(
        key="k",
        rendered=Rendered("Next steps", text, html),
        sender=Person("alice@acme.example", "Alice"),
        to=(Person("dan@globex.example", "Dan"),),
        date=datetime(2026, 12, 1, tzinfo=UTC),
    )
    # When the message is written and read back as a mail client would
    read = message_from_bytes(message.as_bytes(), policy=default)
    # Then it has the two parts, each exactly as written, and a boundary of its own
    parts = [part.get_content().replace("\r\n", "\n") for part in read.iter_parts()]  # type: ignore[attr-defined]
    assert parts == [text, html]
    assert (read.get_boundary() or "").startswith("=_ft_")
