"""The doctor's checks one by one, in process, against real servers: Gmail's grants (its local fake, and
a service account's delegation on the Google fake), SMTP answers about our settings, ledgers that cannot
be written (SQLite and a PostgreSQL role without write rights), a calendar with an event it cannot read.

The CLI around them, and the usual broken set-ups, are in tests/e2e/test_doctor.py.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from daemon import doctor
from daemon.config import load
from daemon.config.sections import GoogleConfig
from daemon.doctor import Check, Verdict, diagnose
from daemon.google.access import GMAIL_READ_SCOPE, GMAIL_SEND_SCOPE, GoogleAccess
from daemon.ledger import SCHEMA_VERSION, open_ledger
from daemon.ledger.health import check_ledger
from daemon.mail.gmail import GmailTransport
from daemon.mail.smtp import SmtpTransport
from daemon.model import Person
from tests.support.config import config_toml, smtp_table
from tests.support.gmail_fake import FakeGmail, access_for
from tests.support.google_fake import FakeGoogle
from tests.support.ics import calendar, vevent
from tests.support.ports import free_port
from tests.support.smtp import AccountHandler, TroubledHandler, serving

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

ALICE = Person("alice@acme.example", "Alice Moreno")
SERVICE = Person("ft@acme.example", "Followthrough")
NOW = datetime.now(UTC).replace(microsecond=0)
H = timedelta(hours=1)


def by_name(checks: list[Check]) -> dict[str, list[Check]]:
    found: dict[str, list[Check]] = {}
    for check in checks:
        found.setdefault(check.name, []).append(check)
    return found


# -- Gmail: each sender's grant, renewed at the token endpoint -----------------------------------


def test_gmail_is_ready_for_a_sender_with_both_grants_and_nothing_is_sent(
    gmail: FakeGmail, tmp_path: Path
) -> None:
    # Given a sender who granted gmail.send and gmail.readonly
    gmail.grant(ALICE.email, GMAIL_SEND_SCOPE, GMAIL_READ_SCOPE)
    transport = GmailTransport(access_for(gmail, tmp_path, ALICE))

    # When the transport is checked for that sender
    [ready] = transport.check([ALICE.email])

    # Then it is ready, with both scopes, and the token endpoint was all it asked: nothing was sent
    assert ready.problem is None and ready.warning is None, ready
    assert ready.subject == f"gmail {ALICE.email}"
    assert "gmail.send granted" in ready.found and "gmail.readonly" in ready.found
    assert gmail.sends() == [] and {r.path for r in gmail.requests} == {"/token"}


def test_gmail_without_the_lookup_grant_is_ready_with_a_warning(gmail: FakeGmail, tmp_path: Path) -> None:
    # Given a sender who granted gmail.send only
    gmail.grant(ALICE.email, GMAIL_SEND_SCOPE)
    # When checked, then mail can go out, with a warning saying what the missing scope costs and the fix
    [ready] = GmailTransport(access_for(gmail, tmp_path, ALICE)).check([ALICE.email])
    assert ready.problem is None
    assert ready.warning is not None and GMAIL_READ_SCOPE in ready.warning
    assert "followthrough auth google --account alice@acme.example" in ready.warning


@pytest.mark.parametrize("trouble", ["no gmail.send", "revoked", "no token"])
def test_gmail_not_ready_names_the_account_and_the_fix(
    gmail: FakeGmail, tmp_path: Path, trouble: str
) -> None:
    # Given a sender whose grant lacks gmail.send, was revoked, or was never made
    gmail.grant(ALICE.email, GMAIL_SEND_SCOPE if trouble != "no gmail.send" else GMAIL_READ_SCOPE)
    access = access_for(gmail, tmp_path, ALICE)
    if trouble == "revoked":
        gmail.revoked.add(ALICE.email)
    if trouble == "no token":
        (tmp_path / f"{ALICE.email}.json").unlink()

    # When checked
    [ready] = GmailTransport(access).check([ALICE.email])

    # Then it is not ready, and the problem names the account, what is wrong and what to run
    assert ready.problem is not None, ready
    assert f"Gmail account {ALICE.email}" in ready.problem
    expected = {
        "no gmail.send": f"the grant lacks {GMAIL_SEND_SCOPE}",
        "revoked": "revoked or has expired",
        "no token": "no OAuth token at",
    }[trouble]
    assert expected in ready.problem
    assert f"followthrough auth google --account {ALICE.email}" in ready.problem
    assert gmail.sends() == []


def test_gmail_through_a_service_account_without_delegation_names_the_admin_console(tmp_path: Path) -> None:
    # Given a service account that may act as Alice but not as the service sender
    with FakeGoogle() as google:
        key = tmp_path / "service-account.json"
        key.write_text(json.dumps(google.service_account_key()), encoding="utf-8")
        google.deny_delegation(SERVICE.email)
        access = GoogleAccess(GoogleConfig(service_account_file=key, api_endpoint=google.url, timeout=10))

        # When both senders are checked
        alice, service = GmailTransport(access, lookup=False).check([ALICE.email, SERVICE.email])

    # Then Alice is ready and the service sender's line says where delegation is set up
    assert alice.problem is None, alice
    assert service.problem is not None and "domain-wide delegation" in service.problem
    assert GMAIL_SEND_SCOPE in service.problem


def test_doctor_checks_gmail_for_the_service_sender_and_each_rep(
    gmail: FakeGmail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given mail through Gmail, Alice's calendar with her closing call, and a token for Alice only
    monkeypatch.delenv("FOLLOWTHROUGH_SMTP_PASSWORD", raising=False)
    gmail.grant(ALICE.email, GMAIL_SEND_SCOPE, GMAIL_READ_SCOPE)
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    access_for(gmail, tokens, ALICE)
    (tmp_path / "calendar.ics").write_text(calendar(vevent("call-1", NOW + 30 * H, NOW + 31 * H)))
    google = f'[google]\ntoken_dir = "tokens"\napi_endpoint = "{gmail.url}"\n'
    config = tmp_path / "followthrough.toml"
    config.write_text(config_toml(transport="gmail", extra=google), encoding="utf-8")

    # When the doctor runs
    mail = by_name(list(diagnose(config, NOW)))["mail"]

    # Then there is one line a sender: the service sender fails without a token, Alice is ready
    assert [(c.verdict, c.found.split(":")[0]) for c in mail] == [
        (Verdict.FAIL, "gmail ft@acme.example"),
        (Verdict.OK, "gmail alice@acme.example"),
    ]
    assert "followthrough auth google --account ft@acme.example" in mail[0].found
    assert gmail.sends() == []


# -- SMTP: what the server says about our own settings ------------------------------------------


def test_smtp_without_a_username_on_a_server_that_wants_a_login_says_to_set_one() -> None:
    # Given a server that takes mail only after a login, and no username configured
    handler = AccountHandler()
    with serving(handler, **handler.requiring_login(auth_require_tls=False)) as server:
        # When the transport is checked for the service sender
        [ready] = SmtpTransport(server.host, server.port, starttls=False, timeout=5).check([SERVICE.email])

    # Then the server's answer to MAIL FROM shows it, with the settings to set; nothing was sent
    assert ready.problem is not None and "530" in ready.problem, ready
    assert "set [mail.smtp] username and FOLLOWTHROUGH_SMTP_PASSWORD" in ready.problem
    assert handler.messages() == []


def test_smtp_that_refuses_a_sender_names_that_sender() -> None:
    # Given a server that refuses every envelope sender
    handler = TroubledHandler(trouble={"MAIL": "553 5.7.1 Sender address rejected: not owned by user"})
    with serving(handler) as server:
        # When checked for the service sender and a rep
        transport = SmtpTransport(server.host, server.port, starttls=False, timeout=5)
        [ready] = transport.check([SERVICE.email, ALICE.email])

    # Then both refusals are named, with what to check
    assert ready.problem is not None, ready
    assert f"refused the sender {SERVICE.email}" in ready.problem
    assert f"refused the sender {ALICE.email}" in ready.problem
    assert handler.messages() == []


def test_smtp_nobody_listening_says_to_check_host_and_port() -> None:
    [ready] = SmtpTransport("127.0.0.1", free_port(), starttls=False, timeout=5).check([SERVICE.email])
    assert ready.problem is not None and ready.problem.startswith("cannot connect to SMTP server")
    assert "check [mail.smtp] host and port" in ready.problem


# -- the ledger: reachable, writable, its schema, left as it was --------------------------------


def test_a_ledger_not_created_yet_is_fine_and_is_not_created(tmp_path: Path) -> None:
    health = check_ledger(f"sqlite:///{tmp_path / 'followthrough.db'}")
    assert health.problem is None and "not created yet" in health.note
    assert not (tmp_path / "followthrough.db").exists()


def test_a_ledger_under_a_file_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("a file where the folder should be")
    health = check_ledger(f"sqlite:///{tmp_path / 'var' / 'followthrough.db'}")
    assert health.problem is not None and "is not a folder" in health.problem


def test_an_older_ledger_is_fine_and_left_at_its_version(tmp_path: Path) -> None:
    # Given a ledger at the version before this one's
    db = tmp_path / "followthrough.db"
    open_ledger(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION - 1),))
    # When checked, then it is writable and will be upgraded at the next start, not now
    health = check_ledger(f"sqlite:///{db}")
    assert health.problem is None and health.version == SCHEMA_VERSION - 1
    assert f"upgraded to schema version {SCHEMA_VERSION} at the next start" in health.note
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION - 1),
        )
        assert conn.execute("SELECT count(*) FROM meta").fetchone() == (1,)


def test_a_newer_ledger_says_to_upgrade_followthrough(tmp_path: Path) -> None:
    db = tmp_path / "followthrough.db"
    open_ledger(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    health = check_ledger(f"sqlite:///{db}")
    assert health.problem is not None and "upgrade followthrough" in health.problem


def test_a_locked_ledger_says_another_process_holds_it(tmp_path: Path) -> None:
    # Given another process holding the ledger's write lock
    db = tmp_path / "followthrough.db"
    open_ledger(f"sqlite:///{db}").close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        # When checked, then it says the ledger is locked, and by whom
        health = check_ledger(f"sqlite:///{db}", timedelta(seconds=0.3))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert health.problem is not None and "locked" in health.problem and "another process" in health.problem


@pytest.fixture
def reader_url(fresh_postgres_url: str) -> Iterator[str]:
    """The fresh database's ledger, and a role that may read it but not write: its url."""
    open_ledger(fresh_postgres_url).close()
    owner = fresh_postgres_url.replace("postgresql+psycopg://", "postgresql://")
    role = f"reader_{fresh_postgres_url.rsplit('/', 1)[1]}"
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')  # type: ignore[call-overload]  # our own names
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')  # type: ignore[call-overload]
    yield fresh_postgres_url.replace("postgres@", f"{role}:s3cret-pw@")
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{role}"')  # type: ignore[call-overload]
        conn.execute(f'DROP ROLE "{role}"')  # type: ignore[call-overload]


def test_a_postgresql_role_without_write_rights_cannot_use_the_ledger(
    fresh_postgres_url: str, reader_url: str
) -> None:
    # Given the owner's url and a role that may only read
    # When each is checked
    owner, reader = check_ledger(fresh_postgres_url), check_ledger(reader_url)
    # Then the owner's ledger is writable, the reader's is refused, and no password is shown
    assert owner.problem is None and owner.version == SCHEMA_VERSION and owner.note == "writable"
    assert reader.version is None and reader.problem is not None
    assert "permission denied" in reader.problem
    assert "s3cret-pw" not in reader.where and "s3cret-pw" not in reader.problem


def test_an_empty_postgresql_database_is_fine_and_left_empty(fresh_postgres_url: str) -> None:
    health = check_ledger(fresh_postgres_url)
    assert health.problem is None and health.version is None and "created at the first start" in health.note
    with psycopg.connect(fresh_postgres_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert tables == (0,)


# -- calendars and time zones -------------------------------------------------------------------


def test_an_event_it_cannot_read_fails_its_calendar_naming_the_event(tmp_path: Path) -> None:
    # Given a calendar with one good call and one event whose start is no date
    broken = vevent("broken-1", NOW + 30 * H, NOW + 31 * H).replace("DTSTART:", "DTSTART:tomorrow-ish")
    (tmp_path / "calendar.ics").write_text(calendar(vevent("call-1", NOW + 30 * H, NOW + 31 * H), broken))
    config = tmp_path / "followthrough.toml"
    config.write_text(config_toml(transport="outbox"), encoding="utf-8")

    # When the doctor runs
    [check] = by_name(list(diagnose(config, NOW)))["calendar sales"]

    # Then the calendar fails: the good event counted, the broken one named with the fix
    assert check.verdict is Verdict.FAIL
    assert "1 event in the window" in check.found and "1 event it could not read" in check.found
    assert any(detail.startswith("event broken-1:") for detail in check.details), check.details
    assert check.fix is not None and "correct those events in the calendar" in check.fix


def test_a_google_calendar_with_a_revoked_grant_fails_with_the_fix(tmp_path: Path) -> None:
    with FakeGoogle() as google:
        (tmp_path / "tokens").mkdir()
        token = google.authorized_user(ALICE.email)
        (tmp_path / "tokens" / f"{ALICE.email}.json").write_text(json.dumps(token))
        google.revoke(ALICE.email)
        config = tmp_path / "followthrough.toml"
        config.write_text(
            config_toml(calendars=(), transport="outbox")
            + f'[[calendars]]\nsource = "google"\naccount = "{ALICE.email}"\n'
            + f'[google]\ntoken_dir = "tokens"\napi_endpoint = "{google.url}"\n',
            encoding="utf-8",
        )
        [check] = by_name(list(diagnose(config, NOW)))[f"calendar {ALICE.email}"]
    assert check.verdict is Verdict.FAIL
    assert "revoked" in check.found and f"followthrough auth google --account {ALICE.email}" in check.found


def test_the_time_zones_named_in_the_config_load_and_the_database_is_named(tmp_path: Path) -> None:
    (tmp_path / "calendar.ics").write_text(calendar())
    extra = '[customers."globex.com"]\ntimezone = "America/New_York"\n'
    config = tmp_path / "followthrough.toml"
    config.write_text(config_toml(transport="outbox", extra=extra), encoding="utf-8")
    check = doctor.check_zones(load(config))
    assert check.verdict is Verdict.OK
    assert "UTC, Europe/Berlin, America/New_York load" in check.found
    assert check.found.startswith("tzdata 20")


def test_smtp_config_without_its_password_fails_the_mail_check_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given SMTP with a username and no password in the environment
    monkeypatch.delenv("FOLLOWTHROUGH_SMTP_PASSWORD", raising=False)
    (tmp_path / "calendar.ics").write_text(calendar())
    smtp = smtp_table(free_port(), more='username = "ft"')
    config = tmp_path / "followthrough.toml"
    config.write_text(config_toml(smtp=smtp), encoding="utf-8")
    # When the doctor runs, then the mail line fails naming the variable, and the rest still ran
    checks = by_name(list(diagnose(config, NOW)))
    [mail] = checks["mail"]
    assert mail.verdict is Verdict.FAIL and "FOLLOWTHROUGH_SMTP_PASSWORD" in mail.found
    assert [c.verdict for c in checks["templates"] + checks["ledger"]] == [Verdict.OK, Verdict.OK]
