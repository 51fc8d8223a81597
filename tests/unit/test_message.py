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
