"""Our own account, login and TLS settings against a real aiosmtpd server with AUTH and STARTTLS.

A mistake in the settings (no username, a wrong password, STARTTLS off, a private CA) is not the
message's fault: every send stays pending with the reason naming the fix, a pass makes one login at
most, and once the settings are fixed everything goes out, once. In process, as in test_smtp_faults:
T0 lies an hour ahead of the real clock, and later passes are `dispatch_due(T0 + ...)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult

from daemon.engine import Engine
from daemon.errors import AccountDeliveryError
from daemon.mail.smtp import SmtpTransport
from daemon.model import Person, Status
from tests.support.engine import Calls, start_engine
from tests.support.private_ca import PrivateCa, make_private_ca
from tests.support.smtp import PASSWORD, AccountHandler, plain_message, serving

pytestmark = [
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
    pytest.mark.usefixtures("either_pipelining"),  # each test against both kinds of server
]

H = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def ca(tmp_path: Path) -> PrivateCa:
    return make_private_ca(tmp_path / "tls")


def six_due(t0: datetime) -> Calls:
    """Six sends due at T0: three prompts to the rep (from the service sender) and three thank-yous
    to lost customers (from the rep)."""
    calls = Calls()
    calls.many(t0, closing=3, lost=3)
    return calls


def start(directory: Path, port: int, calls: Calls, smtp: str, engines: list[Engine]) -> Engine:
    """A new followthrough process, as after a restart: the config and calendar are (re)written."""
    return start_engine(directory, port, calls, engines=engines, timeout=10, starttls=None, smtp=smtp)


def due(engine: Engine, calls: Calls) -> dict[str, Any]:
    found = {s.key: s for s in engine.ledger.sends() if s.key in calls.keys}
    assert set(found) == calls.keys
    return found


# -- points 4 and 5: a wrong password --------------------------------------------------------------


def test_a_wrong_password_costs_one_login_a_pass_and_every_send_waits_for_the_fix(
    tmp_path: Path, t0: datetime, engines: list[Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given six sends due now, and a mail server that takes mail only after a login
    calls = six_due(t0)
    handler = AccountHandler()
    with serving(handler, **handler.requiring_login(auth_require_tls=False)) as server:
        # And followthrough configured with the right username but a wrong password
        monkeypatch.setenv("FOLLOWTHROUGH_SMTP_PASSWORD", "Tr0ub4dor&3")
        smtp = 'starttls = false\nusername = "ft@acme.example"'
        engine = start(tmp_path, server.port, calls, smtp, engines)

        # When a pass runs
        report = engine.tick(t0)

        # Then the server saw one connection and one failed login: not one per send, not two per login
        assert len(handler.sessions) == 1, handler.sessions
        assert [ok for _, ok in handler.logins] == [False], handler.logins
        assert handler.tries == 0 and handler.messages() == []
        # And the pass reports sending stopped, naming the setting to fix, which makes tick exit 1
        assert report.dispatch.halted is not None
        assert "refused the login for 'ft@acme.example'" in report.dispatch.halted
        assert "FOLLOWTHROUGH_SMTP_PASSWORD" in report.dispatch.halted
        assert report.failed
        # And every due send is pending, unclaimed, with that reason, not counted as a failed try
        for key, send in due(engine, calls).items():
            assert send.status is Status.PLANNED, (key, send.status, send.reason)
            assert send.attempts == 0, (key, send.attempts)
            assert send.reason is not None and send.reason.startswith("held: SMTP server"), send.reason
            assert "535" in send.reason
            assert send.next_attempt == t0 + MINUTE

        # When passes run before the wait is over, then nobody logs in again
        engine.dispatcher.dispatch_due(t0 + 30 * timedelta(seconds=1))
        assert len(handler.logins) == 1
        # And after it, one login again, then the wait doubles
        engine.dispatcher.dispatch_due(t0 + MINUTE)
        assert len(handler.logins) == 2
        assert {s.next_attempt for s in due(engine, calls).values()} == {t0 + 3 * MINUTE}
        assert {s.status for s in due(engine, calls).values()} == {Status.PLANNED}

        # When the password is fixed and followthrough starts again, before that wait is over
        monkeypatch.setenv("FOLLOWTHROUGH_SMTP_PASSWORD", PASSWORD)
        fixed = start(tmp_path, server.port, calls, smtp, engines)
        report = fixed.dispatcher.dispatch_due(t0 + 2 * MINUTE)

    # Then every send arrived exactly once, over one connection with one login
    assert report.halted is None and not report.failed
    assert handler.arrivals() == dict.fromkeys(calls.keys, 1)
    assert len(handler.sessions) == 3
    assert [ok for _, ok in handler.logins] == [False, False, True]
    assert {s.status for s in due(fixed, calls).values()} == {Status.SENT}


def test_a_pass_reuses_one_connection_and_login_even_after_a_refused_mailbox(
    tmp_path: Path, t0: datetime, engines: list[Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given seven sends due now, early among them one to a mailbox the server does not know
    calls = Calls()
    nobody = calls.lost("initech-lost", t0, [("nobody@initech.example", "No Body")])
    calls.many(t0, closing=3, lost=3)
    handler = AccountHandler(refuse={"nobody@initech.example"})
    with serving(handler, **handler.requiring_login(auth_require_tls=False)) as server:
        monkeypatch.setenv("FOLLOWTHROUGH_SMTP_PASSWORD", PASSWORD)
        smtp = 'starttls = false\nusername = "ft@acme.example"'
        engine = start(tmp_path, server.port, calls, smtp, engines)

        # When a pass runs
        engine.tick(t0)

    # Then it used one connection and one login for all seven
    assert len(handler.sessions) == 1, len(handler.sessions)
    assert handler.logins == [("PLAIN", True)]
    # And the six went out, the unknown mailbox failed with the server's answer
    assert handler.arrivals() == dict.fromkeys(calls.keys - {nobody}, 1)
    assert due(engine, calls)[nobody].status is Status.FAILED


# -- point 4: refusals of our account or sender ------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "answer"),
    [
        ("MAIL", "554 5.7.1 Access denied"),  # Postfix, no login, at MAIL FROM
        ("RCPT", "554 5.7.1 <buyer@example.com>: Relay access denied"),  # Postfix, no login, at RCPT
    ],
)
def test_a_server_refusing_our_account_keeps_every_send_pending_until_fixed(
    tmp_path: Path, t0: datetime, engines: list[Engine], stage: str, answer: str
) -> None:
    # Given six sends due now, customer thank-yous among them, and followthrough without a username
    calls = six_due(t0)
    # And a server that refuses to relay for us
    handler = AccountHandler(trouble={stage: answer})
    with serving(handler) as server:
        engine = start(tmp_path, server.port, calls, "starttls = false", engines)

        # When a pass runs, and another two hours later
        first = engine.tick(t0)
        engine.dispatcher.dispatch_due(t0 + 2 * H)

        # Then nothing failed: every send is pending with the server's answer and the fix
        assert not first.dispatch.failed
        assert first.failed  # tick exits 1
        for key, send in due(engine, calls).items():
            assert send.status is Status.PLANNED, (key, send.status, send.reason)
            assert send.reason is not None and send.reason.startswith("held: "), send.reason
            assert answer.split(" <")[0] in send.reason
            assert "set [mail.smtp] username" in send.reason
        if stage == "MAIL":
            # And the server was asked once per sender and pass (the service sender and the rep)
            assert handler.tries == 2 * 2

        # When the server lets us send, and followthrough starts again
        handler.trouble = {}
        fixed = start(tmp_path, server.port, calls, "starttls = false", engines)
        fixed.dispatcher.dispatch_due(t0 + 3 * H)

    # Then everything goes out, once
    assert handler.arrivals() == dict.fromkeys(calls.keys, 1)
    assert {s.status for s in due(fixed, calls).values()} == {Status.SENT}


def test_a_server_that_wants_starttls_first_holds_the_sends_and_they_go_out_with_a_private_ca(
    tmp_path: Path, t0: datetime, engines: list[Engine], ca: PrivateCa
) -> None:
    # Given six sends due now, and a server that takes mail only after STARTTLS, with a certificate
    # from a private CA
    calls = six_due(t0)
    handler = AccountHandler()
    with serving(handler, tls_context=ca.server_context(), require_starttls=True) as server:
        # And followthrough with STARTTLS off
        engine = start(tmp_path, server.port, calls, "starttls = false", engines)

        # When a pass runs
        report = engine.tick(t0)

        # Then sending stopped after one refusal, saying to turn STARTTLS on, and nothing failed
        assert report.dispatch.halted is not None
        assert "530" in report.dispatch.halted and "starttls = true" in report.dispatch.halted
        assert len(handler.sessions) == 1
        assert {s.status for s in due(engine, calls).values()} == {Status.PLANNED}
        assert {s.attempts for s in due(engine, calls).values()} == {0}

        # When STARTTLS is on but the private CA is not configured
        fixed = start(tmp_path, server.port, calls, "starttls = true", engines)
        report = fixed.dispatcher.dispatch_due(t0 + MINUTE)

        # Then the certificate is not trusted, and the reason names ca_file
        assert report.halted is not None and "[mail.smtp] ca_file" in report.halted, report.halted
        assert handler.messages() == []

        # When ca_file names the CA (relative to the config file)
        smtp = f'starttls = true\nca_file = "{ca.ca_file.relative_to(tmp_path)}"'
        fixed = start(tmp_path, server.port, calls, smtp, engines)
        report = fixed.dispatcher.dispatch_due(t0 + 2 * MINUTE)

    # Then every send went out once, over TLS
    assert report.halted is None, report.halted
    assert handler.arrivals() == dict.fromkeys(calls.keys, 1)


# -- point 6: the STARTTLS and AUTH errors say what happened ----------------------------------------


def letter() -> Any:
    return plain_message(
        "letter:1", Person("ft@acme.example", "Followthrough"), [Person("dana@globex.example", "Dana Fox")]
    )


def deliver(transport: SmtpTransport) -> str:
    """Deliver one letter; the AccountDeliveryError's words."""
    with pytest.raises(AccountDeliveryError) as raised:
        transport.deliver(letter(), "ft@acme.example", ["dana@globex.example"])
    transport.close()
    return str(raised.value)


def test_auth_only_after_starttls_is_named_as_such_not_as_a_missing_starttls(ca: PrivateCa) -> None:
    # Given a server that offers STARTTLS, and AUTH only once TLS is on (Postfix's smtpd_tls_auth_only)
    handler = AccountHandler()
    options = handler.requiring_login(tls_context=ca.server_context(), auth_require_tls=True)
    with serving(handler, **options) as server:
        # When followthrough logs in with STARTTLS off
        words = deliver(
            SmtpTransport(
                server.host, server.port, starttls=False, username="ft@acme.example", password=PASSWORD
            )
        )

    # Then the error says AUTH needs TLS, which the server offers, and what to set
    assert "offers AUTH only over TLS" in words and "set [mail.smtp] starttls = true" in words, words
    assert "does not offer STARTTLS" not in words
    assert handler.logins == []


@dataclass
class HashedPasswords(AccountHandler):
    """Offers CRAM-MD5 too, and refuses it always, as servers that keep only password hashes do."""

    async def auth_CRAM__MD5(self, server: Any, args: list[str]) -> AuthResult:  # aiosmtpd: "__" is "-"
        await server.challenge_auth("<1.2@example>", encode_to_b64=True)
        self.logins.append(("CRAM-MD5", False))
        return AuthResult(success=False, handled=False)


def test_over_tls_the_login_is_plain_even_when_the_server_also_offers_cram_md5(ca: PrivateCa) -> None:
    # Given a server with STARTTLS that offers CRAM-MD5 but can only check PLAIN and LOGIN
    handler = HashedPasswords()
    with serving(handler, **handler.requiring_login(tls_context=ca.server_context())) as server:
        # When followthrough logs in over STARTTLS and delivers a letter
        transport = SmtpTransport(
            server.host, server.port, username="ft@acme.example", password=PASSWORD, ca_file=ca.ca_file
        )
        assert transport.deliver(letter(), "ft@acme.example", ["dana@globex.example"]) == {}
        transport.close()

    # Then one login was made, with PLAIN, and the letter arrived
    assert handler.logins == [("PLAIN", True)]
    assert handler.arrivals() == {"letter:1": 1}


def test_a_server_without_starttls_is_named_as_such() -> None:
    # Given a server that offers no STARTTLS
    handler = AccountHandler()
    with serving(handler) as server:
        # When followthrough connects with STARTTLS on
        words = deliver(SmtpTransport(server.host, server.port, starttls=True))

    # Then the error says so, listing what it does offer
    assert re.search(r"does not offer STARTTLS \(its EHLO offers: .*8BITMIME", words), words
    assert handler.tries == 0


def test_a_server_without_auth_is_named_as_such(ca: PrivateCa) -> None:
    # Given a server that speaks TLS and offers no AUTH mechanism at all
    handler = AccountHandler()
    options = {"tls_context": ca.server_context(), "auth_exclude_mechanism": ["LOGIN", "PLAIN"]}
    with serving(handler, **options) as server:
        # When followthrough logs in over STARTTLS, trusting the server's CA
        words = deliver(
            SmtpTransport(
                server.host,
                server.port,
                starttls=True,
                username="ft@acme.example",
                password=PASSWORD,
                ca_file=ca.ca_file,
            )
        )

    # Then the error says AUTH is not offered, even over TLS, and what to change
    assert "does not offer AUTH even over TLS" in words, words
    assert "remove [mail.smtp] username" in words


# -- point 17: ca_file, for implicit TLS too -------------------------------------------------------


def test_implicit_tls_trusts_the_private_ca_in_ca_file_and_only_then(ca: PrivateCa) -> None:
    # Given a server that speaks TLS from the first byte (port 465 style), with a private CA's cert
    handler = AccountHandler()
    with serving(handler, ssl_context=ca.server_context()) as server:
        # When followthrough connects without ca_file, then the certificate is not trusted
        words = deliver(SmtpTransport(server.host, server.port, use_ssl=True))
        assert "certificate is not trusted" in words and "[mail.smtp] ca_file" in words, words

        # When it connects with ca_file naming the CA, then the letter arrives
        transport = SmtpTransport(server.host, server.port, use_ssl=True, ca_file=ca.ca_file)
        assert transport.deliver(letter(), "ft@acme.example", ["dana@globex.example"]) == {}
        transport.close()
    assert handler.arrivals() == {"letter:1": 1}
