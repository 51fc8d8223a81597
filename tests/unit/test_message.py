"""The message builder's own defence: whatever slips past cleaning, no header line is added."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import daemon.model
from daemon.errors import UnsafeMessageError
from daemon.mail.message import build
from daemon.model import Person, clean_id, clean_line, parse_address
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


def test_names_are_read_as_spoken_and_never_guessed_from_an_address() -> None:
    # Given names as directories, clients and people write them
    # Then "Last, First" reads "First Last"; an address in the name, or none, leaves nothing to greet
    assert Person("g@h.example", "Belson, Gavin").display_name == "Gavin Belson"
    assert Person("g@h.example", "Belson, Gavin").first_name == "Gavin"
    assert Person("m@h.example", "Smith, Jr.").display_name == "Smith, Jr."
    assert Person("tom.reed@h.example").display_name == "tom.reed@h.example"
    assert Person("tom.reed@h.example").first_name == ""
    assert Person("tom.reed@h.example", "tom.reed@h.example").first_name == ""
    assert Person("d@h.example", "Dana Fox").first_name == "Dana"


def test_an_address_holding_an_encoded_word_is_no_address() -> None:
    # Given a local part the standard library would decode into a header line while parsing it
    hostile = "=?utf-8?q?x=0d=0abcc=3a=20x=40evil.example?=@globex.example"
    # Then it is not taken as an address at all (the attendee is left out and reported)
    assert parse_address(hostile) is None
    assert parse_address("mailto:dana.fox+deals@globex.example") == "dana.fox+deals@globex.example"


def test_uids_are_kept_as_written_but_on_one_line() -> None:
    # An id must not change meaning between versions: encoded words in it stay as they are
    assert clean_id("abc=?utf-8?q?x?=\r\n@host") == "abc=?utf-8?q?x?= @host"
