"""Config: every error names the key and the file; env overrides; secrets never from the file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from daemon.config import load, parse_duration
from daemon.errors import ConfigError
from daemon.model import Anchor, Audience, Kind
from tests.support.config import config_error, write_toml

BASE = """
[company]
name = "Acme"
domains = ["acme.example"]
timezone = "Europe/Berlin"

[[calendars]]
source = "ics"
path = "cal.ics"
owner = "alice@acme.example"

[mail]
from = "Followthrough <ft@acme.example>"
"""


def write(tmp_path: Path, extra: str = "", base: str = BASE) -> Path:
    return write_toml(tmp_path, base + extra)


def test_defaults_and_relative_paths_resolve_next_to_the_file(tmp_path: Path) -> None:
    settings = load(write(tmp_path))
    assert settings.store_url == f"sqlite:///{tmp_path / 'followthrough.db'}"
    assert settings.resolve(settings.calendars[0].path) == tmp_path / "cal.ics"
    assert settings.schedule.poll_interval == timedelta(minutes=5)
    assert [r.name for r in settings.policy().rules][:3] == ["closing-prep", "closing-final", "outcome-nudge"]


def test_unknown_key_is_an_error_naming_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "\n[schedule]\npoll_intervall = '1m'\n")
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert str(path) in str(exc.value)
    assert "schedule.poll_intervall: unknown key" in str(exc.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "\n[schedule]\nbusiness_hours = '9-5'\nmax_late_days = -1\n")
    message = config_error(path)
    assert "schedule.business_hours" in message and "schedule.max_late_days" in message


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("\n[schedule]\nbusiness_days = ['mon', 'funday']\n", "schedule.business_days"),
        ("\n[schedule]\npoll_interval = 'soon'\n", "schedule.poll_interval"),
        ("\n[team]\nimplementation = ['not an address']\n", "team.implementation"),
        ("\n[[rules]]\nname = 'closing-prep'\noffset = 'yesterday'\n", "rules.0.offset"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, extra: str, key: str) -> None:
    message = config_error(write(tmp_path, extra))
    assert key in message


def test_implementation_roles_reach_the_policy_by_address(tmp_path: Path) -> None:
    # Given two implementation people, one of them per rep, each with a role
    extra = (
        '\n[team]\nimplementation = ["Ivy Chen <ivy@acme.example>"]\n'
        '[team.per_rep]\n"bob@acme.example" = ["Raj Patel <raj@acme.example>"]\n'
        '[team.roles]\n"Ivy Chen <IVY@acme.example>" = "onboarding lead"\n'
        '"raj@acme.example" = "data  engineer"\n'
    )

    # When the config is read
    policy = load(write(tmp_path, extra)).policy()

    # Then each role is known by the person's address, on one line
    assert policy.roles == {"ivy@acme.example": "onboarding lead", "raj@acme.example": "data engineer"}


@pytest.mark.parametrize(
    ("roles", "said"),
    [
        (
            '"raj@acme.example" = "data engineer"',
            "team.roles: 'raj@acme.example' is not in team.implementation",
        ),
        ('"not an address" = "data engineer"', "team.roles.not an address: not an email address"),
        ('"ivy@acme.example" = ""', "team.roles: the role of 'ivy@acme.example' must be one line"),
        ('"ivy@acme.example" = "a\\nb"', "team.roles: the role of 'ivy@acme.example' must be one line"),
    ],
)
def test_a_role_for_someone_not_on_the_team_or_a_bad_role_names_the_key(
    tmp_path: Path, roles: str, said: str
) -> None:
    # Given a role for someone who is not implementation staff, under a key that is no address, or empty
    extra = f'\n[team]\nimplementation = ["Ivy Chen <ivy@acme.example>"]\n[team.roles]\n{roles}\n'

    # When the config is read, then the error names team.roles and what is wrong
    assert said in config_error(write(tmp_path, extra))


def test_bad_timezone_and_missing_section(tmp_path: Path) -> None:
    bad_zone = BASE.replace('"Europe/Berlin"', '"Mars/Olympus"')
    assert "company.timezone" in config_error(write(tmp_path, base=bad_zone))
    no_mail = BASE.split("[mail]")[0]
    assert "mail: required key is missing" in config_error(write(tmp_path, base=no_mail))


def test_calendar_needs_exactly_one_of_path_or_url(tmp_path: Path) -> None:
    both = BASE.replace('path = "cal.ics"', 'path = "cal.ics"\nurl = "https://x.example/c.ics"')
    message = config_error(write(tmp_path, base=both))
    assert "calendars.0" in message and "exactly one of 'path' or 'url'" in message


def test_secrets_in_the_file_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '\n[mail.smtp]\nusername = "ft"\npassword = "hunter2"\n')
    message = config_error(path)
    assert "mail.smtp.password" in message and "environment" in message
    assert "hunter2" not in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "\n[schedule\n")
    assert str(path) in config_error(path)


def test_missing_file_points_to_init(tmp_path: Path) -> None:
    assert "followthrough init" in config_error(tmp_path / "nope.toml")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOLLOWTHROUGH_SCHEDULE__MAX_LATE_DAYS", "7")
    monkeypatch.setenv("FOLLOWTHROUGH_MAIL__SMTP__HOST", "mail.internal")
    settings = load(write(tmp_path))
    assert settings.schedule.max_late_days == 7
    assert settings.mail.smtp.host == "mail.internal"


def test_rules_override_defaults_and_add_new_ones(tmp_path: Path) -> None:
    extra = """
[[rules]]
name = "closing-prep"
offset = "-48h"

[[rules]]
name = "lost-next-year"
enabled = false

[[rules]]
name = "after-kickoff-check"
kind = "kickoff"
anchor = "end"
offset = "14d"
to = ["rep"]
"""
    policy = load(write(tmp_path, extra)).policy()
    assert policy.rule("closing-prep").offset == timedelta(hours=-48)
    assert policy.rule("lost-next-year").enabled is False
    custom = policy.rule("after-kickoff-check")
    assert custom.kind is Kind.KICKOFF and custom.anchor is Anchor.END and custom.to == (Audience.REP,)


def test_a_new_rule_without_its_essentials_is_an_error_reported_with_the_others(tmp_path: Path) -> None:
    # Given a new rule without its essentials, and a mistake elsewhere
    message = config_error(write(tmp_path, "\n[schedule]\nmax_late_days = -1\n\n[[rules]]\nname = 'mine'\n"))
    # Then both are reported at once, each naming its key the same way
    assert "rules.0: 'mine' is not a default rule, so it needs kind, anchor, offset, to" in message
    assert "schedule.max_late_days" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("-1h", timedelta(hours=-1)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("30m", timedelta(minutes=30)),
        ("90d", timedelta(days=90)),
        (45, timedelta(seconds=45)),
    ],
)
def test_durations(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


GOOGLE = """
[company]
name = "Acme"
domains = ["acme.example"]

[[calendars]]
source = "google"
{calendar}

[mail]
transport = "gmail"
from = "ft@acme.example"
{google}
"""


def test_google_calendars_one_entry_for_many_reps(tmp_path: Path) -> None:
    text = GOOGLE.format(
        calendar='name = "sales"\naccounts = ["alice@acme.example", "bob@acme.example"]',
        google='[google]\ntoken_dir = "tokens"\napi_endpoint = "http://127.0.0.1:9/"',
    )
    settings = load(write(tmp_path, base=text))
    calendar = settings.calendars[0]
    assert calendar.owners == ["alice@acme.example", "bob@acme.example"]
    assert calendar.calendar_id == "primary"
    assert calendar.label_for("bob@acme.example") == "sales:bob@acme.example"
    assert settings.google is not None and settings.google.api_endpoint == "http://127.0.0.1:9/"


@pytest.mark.parametrize(
    ("calendar", "google", "message"),
    [
        ('account = "alice@acme.example"', "", "google: Google calendars or mail need [google]"),
        (
            'account = "a@acme.example"\naccounts = ["b@acme.example"]',
            '[google]\ntoken_dir = "t"',
            "exactly one of 'account' or 'accounts'",
        ),
        (
            'account = "alice@acme.example"\npath = "x.ics"',
            '[google]\ntoken_dir = "t"',
            "'path' and 'url' are for source",
        ),
        (
            'account = "alice@acme.example"',
            '[google]\ntoken_dir = "t"\nservice_account_file = "k.json"',
            "not both",
        ),
        ('account = "not an address"', '[google]\ntoken_dir = "t"', "not an email address"),
    ],
)
def test_google_config_mistakes_are_named(tmp_path: Path, calendar: str, google: str, message: str) -> None:
    assert message in config_error(write(tmp_path, base=GOOGLE.format(calendar=calendar, google=google)))


def test_a_mistyped_environment_variable_is_an_error_naming_it_with_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a typo in a section name, one in a nested key, and a correct variable
    monkeypatch.setenv("FOLLOWTHROUGH_SCHEDUAL__POLL_INTERVAL", "2m")
    monkeypatch.setenv("FOLLOWTHROUGH_MAIL__SMTP__HOTS", "smtp.acme.example")
    monkeypatch.setenv("FOLLOWTHROUGH_SCHEDULE__MAX_LATE_DAYS", "2")
    monkeypatch.setenv("FOLLOWTHROUGH_SMTP_PASSWORD", "not a setting, a secret")

    # When the config is loaded
    message = config_error(write(tmp_path))

    # Then both typos are named as environment variables, each with what was meant, once
    assert (
        "FOLLOWTHROUGH_SCHEDUAL__POLL_INTERVAL (environment): unknown setting; "
        "did you mean FOLLOWTHROUGH_SCHEDULE__POLL_INTERVAL?"
    ) in message
    assert "did you mean FOLLOWTHROUGH_MAIL__SMTP__HOST?" in message
    assert "mail.smtp.hots" not in message
    assert "MAX_LATE_DAYS" not in message and "SMTP_PASSWORD" not in message


def test_one_owners_two_feeds_are_named_after_their_file_or_host(tmp_path: Path) -> None:
    # Given two files and a URL of one owner, none with a name
    extra = """
[[calendars]]
source = "ics"
path = "sub/team.ics"
owner = "alice@acme.example"

[[calendars]]
source = "ics"
url = "https://cal.example/u/private-8f3a1c/basic.ics"
owner = "alice@acme.example"
"""
    # When the config is loaded
    settings = load(write(tmp_path, extra))

    # Then the first keeps the owner's name it had alone (its history in the ledger stays its own),
    # and the others get one from their file, or the URL's host and file, never its secret
    assert [c.label for c in settings.calendars] == [
        "alice@acme.example",
        "alice@acme.example:team",
        "alice@acme.example:cal.example/basic",
    ]


def test_feeds_alike_in_host_and_file_are_told_apart_by_a_digest(tmp_path: Path) -> None:
    # Given two private Google feeds of one owner: both end in basic.ics on the same host
    extra = "".join(
        f'\n[[calendars]]\nsource = "ics"\nowner = "alice@acme.example"\n'
        f'url = "https://calendar.google.com/calendar/ical/x/private-{secret}/basic.ics"\n'
        for secret in ("8f3a1c", "77d0e2")
    )
    labels = [c.label for c in load(write(tmp_path, extra)).calendars]

    # Then each has a name of its own, none of them showing the secret
    assert len(set(labels)) == 3, labels
    assert labels[1].startswith("alice@acme.example:calendar.google.com/basic"), labels
    assert not any("8f3a1c" in label or "77d0e2" in label for label in labels)


def test_customer_zones_are_checked_and_domains_lower_cased(tmp_path: Path) -> None:
    settings = load(write(tmp_path, '\n[customers."Globex.example"]\ntimezone = "America/New_York"\n'))
    assert settings.policy().customer_timezones == {"globex.example": "America/New_York"}
    message = config_error(write(tmp_path, '\n[customers."globex.example"]\ntimezone = "Mars/Olympus"\n'))
    assert "customers.globex.example.timezone: unknown time zone 'Mars/Olympus'" in message


def test_a_rule_of_the_files_own_can_be_overridden_further_down(tmp_path: Path) -> None:
    # Given a custom rule defined in full, and a later entry that only turns it off
    extra = """
[[rules]]
name = "delivery-check"
kind = "kickoff"
anchor = "end"
offset = "30d"
to = ["rep"]

[[rules]]
name = "delivery-check"
enabled = false

[[rules]]
name = "typo-rule"
offset = "1d"
"""
    # When the config is loaded, then only the entry that is new and incomplete is named
    message = config_error(write(tmp_path, extra))
    assert "rules.2: 'typo-rule' is not a default rule, so it needs kind, anchor, to" in message, message
    assert "rules.1" not in message
    without_typo = extra.split('[[rules]]\nname = "typo-rule"')[0]
    rules = {r.name: r for r in load(write(tmp_path, without_typo)).policy().rules}
    assert rules["delivery-check"].enabled is False and rules["delivery-check"].offset.days == 30
