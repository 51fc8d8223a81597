"""End to end, the other commands: plan, outcome, config errors, init, templates, demo and preview.

Every command runs as `python -m daemon` in a subprocess; no FOLLOWTHROUGH_* variable reaches it.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.support import REP, Deployment, write_config
from tests.support import TEMPLATES_DIR
from tests.support.cli import run_cli
from tests.support.ics import H, meeting, now_utc

Deploy = Callable[..., Deployment]
GAVIN = ("gavin@hooli.example", "Gavin Belson")
DANA = ("dana.fox@globex.example", "Dana Fox")
UNUSED_PORT = 2  # nothing listens there; these tests never reach the mail server


def one_line_error(stderr: str) -> str:
    """The single `error: ...` line a user error prints, with no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# -- plan --json --------------------------------------------------------------------------------
def test_plan_json_lists_every_send_with_utc_times_and_public_statuses(deploy: Deploy) -> None:
    # Given a closing call 23 hours away whose prep has just been sent
    ft = deploy()
    now = now_utc()
    ft.write_calendar(
        meeting(
            "globex-next@acme.example", now + 23 * H, now + 24 * H, "Globex terms #closing", attendees=[DANA]
        )
    )
    assert ft.tick().code == 0

    # When the plan is asked for as JSON
    result = ft.cli("plan", "--json")

    # Then it is an array of sends with the promised keys, due times in UTC ISO 8601
    assert result.code == 0, result.output
    sends = json.loads(result.stdout)
    assert isinstance(sends, list) and sends
    for send in sends:
        missing = {"key", "rule", "event_id", "due", "to", "cc", "subject", "status"} - send.keys()
        assert not missing, (missing, send)
        assert send["due"].endswith(("Z", "+00:00")), send["due"]
        due = datetime.fromisoformat(send["due"].replace("Z", "+00:00"))
        assert due.utcoffset() == timedelta(0)
        assert isinstance(send["to"], list) and isinstance(send["cc"], list)
        assert send["event_id"] == "globex-next@acme.example"
    by_rule = {s["rule"]: s for s in sends}
    # And what went out is "sent", what is still to come is "pending"
    assert by_rule["closing-prep"]["status"] == "sent"
    assert by_rule["closing-prep"]["to"] == [REP[0]]
    assert by_rule["closing-final"]["status"] == "pending"
    assert by_rule["outcome-nudge"]["status"] == "pending"
    assert by_rule["closing-final"]["subject"]


# -- outcome --------------------------------------------------------------------------------
def test_outcome_lost_plans_the_lost_sequence_and_cancels_the_nudge(deploy: Deploy) -> None:
    # Given a closing call without tags that ended an hour ago: its outcome nudge is still to come
    ft = deploy()
    now = now_utc()
    event_id = "hooli-untagged@acme.example"
    ft.write_calendar(
        meeting(event_id, now - 2 * H, now - 1 * H, "Hooli decision #closing", attendees=[GAVIN])
    )
    assert ft.tick().code == 0
    assert ft.send("outcome-nudge", event_id)["status"] == "pending"

    # When the rep records that the deal was lost
    result = ft.cli("outcome", event_id, "lost")

    # Then the lost sequence is pending and the nudge is cancelled
    assert result.code == 0, result.output
    plan = {s["rule"]: s for s in ft.plan() if s["event_id"] == event_id}
    lost = {rule: s["status"] for rule, s in plan.items() if rule.startswith("lost-")}
    assert lost and set(lost.values()) == {"pending"}, plan
    assert "lost-thank-you" in lost
    assert plan["outcome-nudge"]["status"] == "cancelled"
    assert plan["lost-thank-you"]["to"] == [GAVIN[0]]


def test_outcome_for_an_unknown_event_is_a_one_line_error(deploy: Deploy) -> None:
    # Given a ledger that knows one event
    ft = deploy()
    now = now_utc()
    ft.write_calendar(
        meeting("real@acme.example", now - 2 * H, now - 1 * H, "Real #closing", attendees=[GAVIN])
    )
    assert ft.tick().code == 0

    # When an outcome is recorded for an event it does not know
    result = ft.cli("outcome", "no-such-event@nowhere", "won")

    # Then the command fails with one line naming the problem, and no traceback
    assert result.code != 0
    assert "no-such-event@nowhere" in one_line_error(result.stderr)


# -- config errors --------------------------------------------------------------------------
COMMANDS = [
    ["tick"],
    ["run"],
    ["plan"],
    ["plan", "--json"],
    ["history"],
    ["preview", "closing-prep"],
    ["templates", "check"],
    ["outcome", "some-event", "won"],
    ["suppress", "list"],
    ["suppress", "add", "x@hooli.example"],
    ["suppress", "remove", "x@hooli.example"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_unknown_config_key_stops_every_command_with_exit_3(tmp_path: Path, command: list[str]) -> None:
    # Given a config with a key followthrough does not know (a typo, say)
    config = write_config(tmp_path, UNUSED_PORT, extra='favourite_colour = "teal"\n')

    # When any command runs with it
    result = run_cli(*command, config=config)

    # Then it exits 3, naming the key and the file, without a traceback
    assert result.code == 3, result.output
    assert "Traceback" not in result.output
    assert "favourite_colour" in result.stderr and str(config) in result.stderr, result.stderr
    assert not (tmp_path / "followthrough.db").exists()


@pytest.mark.parametrize("command", [["tick"], ["plan"]], ids=" ".join)
def test_missing_config_file_points_to_init(tmp_path: Path, command: list[str]) -> None:
    # Given no config file at the given path
    missing = tmp_path / "nowhere" / "followthrough.toml"

    # When a command runs
    result = run_cli(*command, config=missing)

    # Then it exits 3 and tells the user how to write one
    assert result.code == 3, result.output
    assert "followthrough init" in one_line_error(result.stderr)


# -- init and templates ---------------------------------------------------------------------
def test_init_writes_a_starter_config_and_its_templates_that_templates_check_accepts(tmp_path: Path) -> None:
    # Given no config yet
    config = tmp_path / "etc" / "followthrough.toml"

    # When `init` writes one
    result = run_cli("init", config=config)

    # Then the config names a copy of the default templates beside it, and they check cleanly
    assert result.code == 0, result.output
    templates = tmp_path / "etc" / "templates"
    assert 'dir = "templates"' in config.read_text(encoding="utf-8")
    assert sorted(p.name for p in templates.iterdir()) == sorted(p.name for p in TEMPLATES_DIR.iterdir())
    assert (templates / "closing-prep.md").read_bytes() == (TEMPLATES_DIR / "closing-prep.md").read_bytes()
    checked = run_cli("templates", "check", config=config)
    assert checked.code == 0, checked.output

    # When `init` runs again without --force
    config.write_text(config.read_text(encoding="utf-8") + "# mine\n", encoding="utf-8")
    again = run_cli("init", config=config)

    # Then it refuses, and the file is unchanged
    assert again.code != 0
    assert "already exists" in one_line_error(again.stderr)
    assert config.read_text(encoding="utf-8").endswith("# mine\n")

    # When the admin has edited a template and deleted another, and `init --force` runs
    mine = "---\nsubject: Mine\n---\nMy own prep.\n"
    (templates / "closing-prep.md").write_text(mine, encoding="utf-8")
    (templates / "lost-next-year.md").unlink()
    forced = run_cli("init", "--force", config=config)

    # Then the config is the starter again, the edited template is kept and named, the deleted one is back
    assert forced.code == 0, forced.output
    assert not config.read_text(encoding="utf-8").endswith("# mine\n")
    assert (templates / "closing-prep.md").read_text(encoding="utf-8") == mine
    assert "Kept 1 that differ from the default, not overwritten: closing-prep.md" in forced.stdout
    assert "1 added" in forced.stdout, forced.stdout
    assert (templates / "lost-next-year.md").is_file()


def test_templates_check_accepts_the_bundled_templates(deploy: Deploy) -> None:
    # Given the bundled templates
    ft = deploy()

    # When they are checked
    result = ft.cli("templates", "check")

    # Then they render cleanly
    assert result.code == 0, result.output
    assert "render cleanly" in result.stdout


def test_templates_check_names_the_file_and_line_of_an_undefined_variable(
    deploy: Deploy, tmp_path: Path
) -> None:
    # Given a copy of the templates where one subject uses a variable that does not exist
    copy = tmp_path / "my-templates"
    shutil.copytree(TEMPLATES_DIR, copy)
    broken = copy / "closing-prep.md"
    lines = broken.read_text(encoding="utf-8").split("\n")
    number = next(i for i, line in enumerate(lines, start=1) if line.startswith("subject:"))
    lines[number - 1] = lines[number - 1].replace("subject:", "subject: {{ no_such_thing }}")
    broken.write_text("\n".join(lines), encoding="utf-8")
    ft = deploy(extra=f"\n[templates]\ndir = '{copy}'\n")

    # When the templates are checked
    result = ft.cli("templates", "check")

    # Then it exits 4 and says which file and line is wrong
    assert result.code == 4, result.output
    assert "Traceback" not in result.output
    assert f"closing-prep.md, line {number}" in result.stderr, result.stderr
    assert "no_such_thing" in result.stderr


# -- demo -------------------------------------------------------------------------------------
def test_demo_sends_at_least_five_emails_into_its_outbox(tmp_path: Path) -> None:
    # Given an empty folder
    directory = tmp_path / "demo"

    # When the demo runs there
    result = run_cli("demo", "--dir", str(directory))

    # Then it reports what it sent, and each email is an .eml file in the outbox
    assert result.code == 0, result.output
    match = re.search(r"^Sent (\d+) email", result.stdout, re.MULTILINE)
    assert match, result.stdout
    sent = int(match.group(1))
    assert sent >= 5, result.stdout
    assert len(list((directory / "outbox").glob("*.eml"))) == sent


# -- preview ----------------------------------------------------------------------------------
def test_preview_renders_sample_data_and_ledger_events(deploy: Deploy) -> None:
    # Given a closing call in the ledger
    ft = deploy()
    now = now_utc()
    ft.write_calendar(
        meeting(
            "globex-preview@acme.example",
            now + 47 * H,
            now + 48 * H,
            "Globex terms #closing",
            attendees=[DANA],
        )
    )
    assert ft.tick().code == 0

    # When the closing prep is previewed without an event
    sample = ft.cli("preview", "closing-prep")

    # Then it shows a subject and the text
    assert sample.code == 0, sample.output
    subject = re.search(r"^Subject: (.+)$", sample.stdout, re.MULTILINE)
    assert subject and subject.group(1).strip(), sample.stdout
    assert len(sample.stdout[subject.end() :].strip()) > 20, sample.stdout

    # When it is previewed for the event in the ledger, by a prefix of its id
    real = ft.cli("preview", "closing-prep", "--event", "globex-prev")

    # Then it shows that event's email, addressed to its rep
    assert real.code == 0, real.output
    assert re.search(r"^Subject: .+$", real.stdout, re.MULTILINE), real.stdout
    to = re.search(r"^To: (.+)$", real.stdout, re.MULTILINE)
    assert to and REP[0] in to.group(1), real.stdout
    assert not ft.mail.messages(), "a preview must not send anything"


def test_preview_of_an_unknown_rule_names_it(deploy: Deploy) -> None:
    # Given a working config
    ft = deploy()

    # When a rule that does not exist is previewed
    result = ft.cli("preview", "nosuchrule")

    # Then it fails with an error naming the rule
    assert result.code != 0
    assert "nosuchrule" in one_line_error(result.stderr)
