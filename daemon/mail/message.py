"""Builds the one RFC 5322 message of a send, the same for every transport.

Headers come only from the ledger's validated people and cleaned text: nothing an event says can
add a header or a recipient. The built message is then read back as a mail server would, and
refused if its header lines or addresses differ from what was set, whatever the Python version.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP
from email.utils import format_datetime, getaddresses

from daemon.errors import UnsafeMessageError
from daemon.model import Person, clean_line
from daemon.templates import Rendered


class _Registry(HeaderRegistry):
    """The standard registry, with each header's class made once: the stock one builds a new class every
    time a header is set or read, a third of the cost of building a message."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        super().map_to_type(name, cls)
        self._made.pop(name.lower(), None)


# SMTP's policy, lines up to RFC 5322's limit: folding at 78 would encode List-Unsubscribe, which
# clients then ignore.
POLICY = SMTP.clone(max_line_length=998, header_factory=_Registry())


def message_id(key: str, domain: str) -> str:
    """Deterministic per send: a resend after a crash is recognisably the same message."""
    digest = hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
    return f"<ft.{digest}@{domain}>"


def mailto_unsubscribe(address: str) -> str:
    """The List-Unsubscribe of a company without a web address: mail to a person, who suppresses the
    sender. The subject says nothing of the deal: the customer keeps a copy in their Sent folder."""
    return f"mailto:{address}?subject=unsubscribe"


def build(
    *,
    key: str,
    rendered: Rendered,
    sender: Person,
    to: Sequence[Person],
    cc: Sequence[Person] = (),
    reply_to: Person | None = None,
    date: datetime,
    unsubscribe: str | None = None,
    automated: bool = False,
) -> EmailMessage:
    """`unsubscribe`: the List-Unsubscribe URI, an https one-click link (RFC 8058) or a mailto;
    `automated`: a machine prompt, not a letter."""
    message = EmailMessage(policy=POLICY)
    message["From"] = sender.header()
    message["To"] = [p.header() for p in to]
    if cc:
        message["Cc"] = [p.header() for p in cc]
    if reply_to is not None:
        message["Reply-To"] = reply_to.header()
    message["Subject"] = clean_line(rendered.subject, 250)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id(key, sender.domain)
    message["X-Followthrough-Key"] = clean_line(key, 700)
    if automated:
        message["Auto-Submitted"] = "auto-generated"
    if unsubscribe:
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        if unsubscribe.startswith("https://"):
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text, subtype="plain", charset="utf-8")
    message.make_alternative(boundary=_boundary(rendered))
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    expected = {"from": [sender], "to": list(to), "cc": list(cc), "reply-to": [reply_to] if reply_to else []}
    _check(message, {field: {p.email for p in people} for field, people in expected.items()}, key)
    return message


def _boundary(rendered: Rendered) -> str:
    """A boundary no part contains. Random, so no event text can guess it; set here, because the
    generator would otherwise compile a regular expression for each message to look for its own."""
    while True:
        boundary = f"=_ft_{secrets.token_hex(16)}"
        if boundary not in rendered.text and boundary not in rendered.html:
            return boundary


def _check(message: EmailMessage, addresses: dict[str, set[str]], key: str) -> None:
    """Read the serialized headers back and compare: the last line of defence against a value that
    the standard library's folding turns into a header line of its own (CVE-2024-6923 and kin)."""
    # The header block exactly as the generator writes it (each header folded by the message's policy),
    # without serializing the body: the transport does that once, when it sends.
    policy = message.policy
    head = b"".join(policy.fold_binary(name, value) for name, value in message.raw_items()) + b"\r\n"
    parsed = BytesHeaderParser().parsebytes(head)
    wanted = [name.lower() for name in message]
    found = [name.lower() for name in parsed]
    if found != wanted:
        extra = sorted(set(found) - set(wanted)) or found
        raise UnsafeMessageError(
            f"send {key}: refused: event text would add header lines ({', '.join(extra)})"
        )
    for field, emails in addresses.items():
        got = {a.lower() for _, a in getaddresses(parsed.get_all(field, [])) if a}
        if got != emails:
            raise UnsafeMessageError(f"send {key}: refused: the {field} header would not be what was planned")
