"""`followthrough doctor` as a new user runs it: against a set-up that works, then against each kind of
broken one. Real components throughout: an aiosmtpd server with STARTTLS (a private CA) and AUTH, an ICS
file and an HTTP feed on 127.0.0.1, the bundled templates, a SQLite ledger. Nothing is ever sent.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.ledger import open_ledger
from tests.support import TEMPLATES_DIR
from tests.support.cli import Result, clean_env, run_cli
from tests.support.config import config_toml, smtp_table
from tests.support.feed import CalendarFeed, serving_feed
from tests.support.ics import calendar, now_utc, vevent
from tests.support.ports import free_port
from tests.support.private_ca import make_private_ca
from tests.support.smtp import PASSWORD, AccountHandler, SmtpServer, serving

SECRET_PATH = "/private/4f9c2e7d1b/basic.ics"  # a private feed's secret is in its path
USER = "ft@acme.example"
H = timedelta(hours=1)


@dataclass(frozen=True)
class Line:
    verdict: str  # ok, warn, FAIL, skip
    name: str
    text: str  # the line and the lines indented below it (its problems, its fix)


@dataclass
class SetUp:
    """A followthrough set up in a folder, its mail server and its team's feed running."""

    root: Path
    server: SmtpServer
    feed: CalendarFeed
    ca_file: Path

    @property
    def handler(self) -> AccountHandler:
        handler = self.server.handler
        assert isinstance(handler, AccountHandler)
        return handler

    @property
    def ledger(self) -> Path:
        return self.root / "followthrough.db"

    def configure(
        self,
        *,
        feed_url: str | None = None,
        alice: str = "alice.ics",
        store: str = "sqlite:///followthrough.db",
        more: str = "",
    ) -> Path:
        """Alice's calendar from a file, the team's from the feed, mail over STARTTLS with a login."""
        team = feed_url or self.feed.url(SECRET_PATH)
        smtp = smtp_table(
            self.server.port, starttls=True, more=f'username = "{USER}"\nca_file = "{self.ca_file}"'
        )
        extra = (
            '[[calendars]]\nname = "team"\nsource = "ics"\n'
            f'url = "{team}"\nowner = "alice@acme.example"\n{more}'
        )
        text = config_toml(calendars=[("alice", alice)], smtp=smtp, store=store, extra=extra)
        path = self.root / "followthrough.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def doctor(self, config: Path, password: str = PASSWORD) -> Result:
        return run_cli("doctor", config=config, env=clean_env(FOLLOWTHROUGH_SMTP_PASSWORD=password))


def lines(result: Result) -> list[Line]:
    """The report's checks, each with the lines indented below it; the summary left out."""
    found: list[Line] = []
    for line in result.stdout.splitlines():
        if line.startswith(" ") and found:
            last = found[-1]
            found[-1] = Line(last.verdict, last.name, f"{last.text}\n{line}")
        elif ": " in line and line.split(" ", 1)[0] in ("ok", "warn", "FAIL", "skip"):
            verdict, rest = line.split(None, 1)
            name, _ = rest.split(": ", 1)
            found.append(Line(verdict, name, line))
    return found


def verdicts(result: Result) -> dict[str, str]:
    return {line.name: line.verdict for line in lines(result)}


def line(result: Result, name: str) -> Line:
    [found] = [entry for entry in lines(result) if entry.name == name]
    return found


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[SetUp]:
    """Alice's file with a closing call, the team's feed with a kickoff, a mail server that takes mail
    only over STARTTLS after a login, and a ledger that has been used."""
    start = now_utc() + 30 * H
    (tmp_path / "alice.ics").write_text(
        calendar(vevent("call-1", start, start + H), vevent("lunch", start + 3 * H, start + 4 * H, "Lunch")),
        encoding="utf-8",
        newline="",
    )
    ca = make_private_ca(tmp_path / "tls")
    handler = AccountHandler()
    options = handler.requiring_login(tls_context=ca.server_context(), require_starttls=True)
    open_ledger(f"sqlite:///{tmp_path / 'followthrough.db'}").close()
    with serving(handler, **options) as server, serving_feed() as feed:
        kickoff = vevent("kickoff-1", start + 48 * H, start + 49 * H, "Globex kickoff #kickoff")
        feed.publish(calendar(kickoff).encode(), etag='"v1"')
        yield SetUp(tmp_path, server, feed, ca.ca_file)


def assert_nothing_sent_or_stored(setup: SetUp) -> None:
    # Nothing reached DATA on the server, and the ledger holds no event, send or sync cursor
    assert setup.handler.messages() == []
    ledger = open_ledger(f"sqlite:///{setup.ledger}")
    try:
        assert ledger.sends() == []
        assert ledger.cursor("alice") is None and ledger.cursor("team") is None
        assert ledger.get_meta("doctor-probe") is None
    finally:
        ledger.close()


def test_a_good_set_up_passes_every_check_and_sends_nothing(setup: SetUp) -> None:
    # Given a set-up that works
    config = setup.configure()

    # When the doctor runs
    result = setup.doctor(config)

    # Then every check is ok, one line each, and it exits 0
    assert result.code == 0, result.output
    assert verdicts(result) == {
        "config": "ok",
        "calendar alice": "ok",
        "calendar team": "ok",
        "mail": "ok",
        "templates": "ok",
        "ledger": "ok",
        "time zones": "ok",
    }, result.stdout
    assert result.stdout.rstrip().endswith("All 7 checks passed. Nothing was sent.")
    # And each line says what it found: events read and how long it took, the mail dialogue, the schema
    alice = line(result, "calendar alice").text
    assert re.search(
        r"alice\.ics: read in \d+ ms, 2 events in the window \(1 closing or kickoff call ", alice
    )
    assert "1 event in the window" in line(result, "calendar team").text
    mail = line(result, "mail").text
    assert f"smtp 127.0.0.1:{setup.server.port}: connected, STARTTLS, logged in as '{USER}'" in mail
    assert "MAIL FROM taken for ft@acme.example, alice@acme.example (then RSET), QUIT; nothing sent" in mail
    assert "render cleanly" in line(result, "templates").text
    assert "schema version 6, writable" in line(result, "ledger").text
    assert "Europe/Berlin" in line(result, "time zones").text and "tzdata " in line(result, "time zones").text
    # And the server saw one login, which it accepted, and no message
    assert [ok for _, ok in setup.handler.logins] == [True]
    assert_nothing_sent_or_stored(setup)
    # And no secret is printed: not the password, not the feed's private path
    assert PASSWORD not in result.output and "4f9c2e7d1b" not in result.output


def test_a_wrong_smtp_password_fails_the_mail_check_with_the_fix_and_the_rest_still_runs(
    setup: SetUp,
) -> None:
    # Given a set-up whose SMTP password is wrong on the real server
    config = setup.configure()

    # When the doctor runs
    result = setup.doctor(config, password="Tr0ub4dor&3")

    # Then the mail line fails, naming the server's answer and the setting to fix
    assert result.code == 1, result.output
    mail = line(result, "mail")
    assert mail.verdict == "FAIL"
    assert f"refused the login for '{USER}'" in mail.text and "535" in mail.text
    assert "FOLLOWTHROUGH_SMTP_PASSWORD" in mail.text
    # And every other check ran and passed
    assert {name: v for name, v in verdicts(result).items() if name != "mail"} == dict.fromkeys(
        ["config", "calendar alice", "calendar team", "templates", "ledger", "time zones"], "ok"
    )
    assert "1 of 7 checks failed" in result.stdout
    # And the server saw one failed login and nothing else; neither password is printed
    assert [ok for _, ok in setup.handler.logins] == [False] and setup.handler.tries == 0
    assert "Tr0ub4dor&3" not in result.output and PASSWORD not in result.output
    assert_nothing_sent_or_stored(setup)


def test_unreachable_calendars_fail_each_with_the_fix_and_the_rest_still_runs(setup: SetUp) -> None:
    # Given a feed on a port where nothing listens and a calendar file that does not exist
    config = setup.configure(feed_url=f"http://127.0.0.1:{free_port()}{SECRET_PATH}", alice="gone.ics")

    # When the doctor runs
    result = setup.doctor(config)

    # Then both calendars fail, each saying why and what to check
    assert result.code == 1, result.output
    team, alice = line(result, "calendar team"), line(result, "calendar alice")
    assert team.verdict == "FAIL" and "cannot fetch" in team.text and "refused" in team.text.lower()
    assert "fix: check the url of calendar 'team', and that this machine can reach it" in team.text
    assert alice.verdict == "FAIL" and "gone.ics" in alice.text and "No such file" in alice.text
    assert "fix: check the path of calendar 'alice'" in alice.text
    assert "4f9c2e7d1b" not in result.output
    # And the other checks still ran and passed
    assert [verdicts(result)[name] for name in ("config", "mail", "templates", "ledger", "time zones")] == [
        "ok"
    ] * 5
    assert "2 of 7 checks failed" in result.stdout


def test_a_broken_template_fails_naming_the_file_and_line(setup: SetUp) -> None:
    # Given a copy of the templates in which one uses a name that does not exist, on its line 9
    copy = setup.root / "templates"
    shutil.copytree(TEMPLATES_DIR, copy)
    prep = copy / "closing-prep.md"
    text = prep.read_text(encoding="utf-8").split("\n")
    text.insert(8, "Remember {{ deal.budget_owner }}.")
    prep.write_text("\n".join(text), encoding="utf-8")
    config = setup.configure(more='[templates]\ndir = "templates"\n')

    # When the doctor runs
    result = setup.doctor(config)

    # Then the templates line fails, its error naming the file, the line and the name, with the fix
    assert result.code == 1, result.output
    templates = line(result, "templates")
    assert templates.verdict == "FAIL" and "1 error(s)" in templates.text
    assert "- closing-prep.md, line 9:" in templates.text and "budget_owner" in templates.text
    assert "fix: correct each file at the line named" in templates.text
    # And the other checks still ran and passed
    assert {name: v for name, v in verdicts(result).items() if name != "templates"} == dict.fromkeys(
        ["config", "calendar alice", "calendar team", "mail", "ledger", "time zones"], "ok"
    )


def test_a_read_only_ledger_fails_and_is_left_as_it_was(setup: SetUp) -> None:
    # Given the ledger opened read-only (root writes to any file, but not to one opened so)
    config = setup.configure(store=f"sqlite:///file:{setup.ledger}?mode=ro&uri=true")

    # When the doctor runs
    result = setup.doctor(config)

    # Then the ledger line fails, saying it cannot be written, with the fix
    assert result.code == 1, result.output
    ledger = line(result, "ledger")
    assert ledger.verdict == "FAIL" and "readonly" in ledger.text
    assert "fix: " in ledger.text and "writable" in ledger.text
    # And the other checks still ran and passed, and nothing was written
    assert {name: v for name, v in verdicts(result).items() if name != "ledger"} == dict.fromkeys(
        ["config", "calendar alice", "calendar team", "mail", "templates", "time zones"], "ok"
    )
    assert_nothing_sent_or_stored(setup)


def test_an_invalid_config_lists_every_problem_and_says_which_checks_it_skipped(setup: SetUp) -> None:
    # Given a config with three mistakes: an unknown key, a zone that is none, a duration that is none
    config = setup.configure()
    text = config.read_text(encoding="utf-8")
    text = text.replace('timezone = "Europe/Berlin"', 'timezone = "Europe/Berlni"')
    text = text.replace("[schedule]\n", '[schedule]\nretry_base = "soon"\npol_interval = "5m"\n')
    config.write_text(text, encoding="utf-8")

    # When the doctor runs
    result = setup.doctor(config)

    # Then the config line fails listing all three, each naming its key
    assert result.code == 1, result.output
    check = line(result, "config")
    assert check.verdict == "FAIL" and "3 problem(s)" in check.text
    assert "- company.timezone: unknown time zone 'Europe/Berlni'" in check.text
    assert "- schedule.retry_base:" in check.text and "- schedule.pol_interval: unknown key" in check.text
    assert "fix: correct each key named" in check.text
    # And the checks that need a config say they were skipped; the time-zone data is still checked
    assert verdicts(result) == {
        "config": "FAIL",
        "calendars": "skip",
        "mail": "skip",
        "templates": "skip",
        "ledger": "skip",
        "time zones": "ok",
    }
    assert "not checked: it needs the config to load" in line(result, "mail").text
    assert "Traceback" not in result.output
