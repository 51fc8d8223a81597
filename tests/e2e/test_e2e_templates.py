"""End to end, the templates commands: `templates vars` (and the README's copy of it) and `templates check`
of rep overrides and of a rule with two files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support import ROOT, TEMPLATES_DIR
from tests.support.cli import run_cli

DEMO_CONFIG = ROOT / "daemon" / "bundled" / "demo" / "followthrough.toml"


def readme_table(variables: list[dict[str, str]]) -> str:
    rows = ["| variable | what it is | for the sample deal |", "|---|---|---|"]
    for v in variables:
        rows.append(f"| `{v['name']}` | {v['description']} | `{v['example']}` |")
    return "\n".join(rows)


def test_templates_vars_lists_every_variable_and_the_readme_shows_the_same_list() -> None:
    # When the variables are listed as JSON for the demo's sample deal
    result = run_cli("templates", "vars", "--json", config=DEMO_CONFIG)

    # Then each has a name, a one-line description and an example
    assert result.code == 0, result.output
    variables = json.loads(result.stdout)
    names = [v["name"] for v in variables]
    assert {"rep.first_name", "event.title", "event.homework[]", "kickoff", "lead"} <= set(names)
    assert all(v["description"] and "\n" not in v["description"] and v["example"] for v in variables)
    # and the README's table is the same list (regenerate it from this test's `readme_table` if not)
    assert readme_table(variables) in (ROOT / "README.md").read_text(encoding="utf-8"), readme_table(
        variables
    )
    # and the plain listing names each of them
    listing = run_cli("templates", "vars", config=DEMO_CONFIG).stdout
    assert all(f"\n{name}\n" in f"\n{listing}" for name in names)


def test_templates_vars_of_a_rule_shows_that_rules_sample_and_an_unknown_rule_is_refused() -> None:
    won = {
        v["name"]: v["example"]
        for v in json.loads(
            run_cli("templates", "vars", "implementation-intro", "--json", config=DEMO_CONFIG).stdout
        )
    }
    assert won["rule"] == "implementation-intro" and won["outcome"] == "won"
    unknown = run_cli("templates", "vars", "no-such-rule", config=DEMO_CONFIG)
    assert unknown.code == 1 and "no rule named 'no-such-rule'" in unknown.stderr


def test_templates_check_covers_rep_overrides_and_two_files_for_one_rule(tmp_path: Path) -> None:
    # Given a copy of the templates with a broken override for one rep and a rule written twice
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, copy)
    override = copy / "reps" / "sam.rivera@acme.example" / "lost-thank-you.md"
    override.parent.mkdir(parents=True)
    override.write_text("---\nsubject: Thanks\n---\nHi,\n\nThanks, {{ dael.company }}.\n", encoding="utf-8")
    (copy / "outcome-nudge.jinja").write_text("{% block subject %}x{% endblock %}", encoding="utf-8")
    (copy / "outcome-nudge.md").write_text("---\nsubject: x\n---\nx\n", encoding="utf-8")
    config = tmp_path / "followthrough.toml"
    config.write_text(
        DEMO_CONFIG.read_text(encoding="utf-8") + f"\n[templates]\ndir = '{copy}'\n", encoding="utf-8"
    )

    # When the templates are checked
    result = run_cli("templates", "check", config=config)

    # Then it exits 4 naming the override's file, line and name, and the rule written twice
    assert result.code == 4, result.output
    assert "reps/sam.rivera@acme.example/lost-thank-you.md, line 6: 'dael' is undefined" in result.stderr
    assert "two templates for outcome-nudge" in result.stderr
    assert "Traceback" not in result.output
