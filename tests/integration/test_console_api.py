"""The console's JSON API against a real uvicorn server on loopback, over the demo's real ledger.

Given the demo after one pass, when a client asks the API, then it answers as the contract says: the
same objects as `plan --json` and `history --json`, previews with their parts or their errors.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from daemon import clock
from daemon.config import Settings, load
from daemon.engine import Engine
from tests.support.cli import run_cli
from tests.support.console import break_template, demo_folder, serving, template_of

PREVIEW_KEYS = {"rule", "template", "subject", "from", "to", "cc", "text", "html", "errors"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_folder(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def settings(demo: Path) -> Settings:
    return load(demo)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[httpx.Client]:
    with serving(settings) as console, httpx.Client(base_url=console.url, timeout=30) as http:
        yield http


def test_plan_answers_what_plan_json_prints(demo: Path, client: httpx.Client) -> None:
    # Given the demo's ledger, when the API and the command line are asked for the plan
    answer = client.get("/api/plan")
    printed = run_cli("plan", "--json", config=demo)
    # Then they give the same objects, pending and sent ones among them
    assert answer.status_code == 200, answer.text
    assert printed.code == 0, printed.output
    assert answer.json() == json.loads(printed.stdout)
    assert {"pending", "sent"} <= {send["status"] for send in answer.json()}


def test_plan_takes_the_statuses_of_plan_status(demo: Path, client: httpx.Client) -> None:
    answer = client.get("/api/plan", params=[("status", "pending")])
    printed = run_cli("plan", "--json", "--status", "pending", config=demo)
    assert answer.json() == json.loads(printed.stdout)
    assert answer.json() and {send["status"] for send in answer.json()} == {"pending"}
    wrong = client.get("/api/plan", params={"status": "sending"})
    assert wrong.status_code == 400 and "sending" in wrong.json()["error"]


def test_history_answers_what_history_json_prints(demo: Path, client: httpx.Client) -> None:
    answer = client.get("/api/history")
    printed = run_cli("history", "--json", config=demo)
    assert answer.status_code == 200
    assert answer.json() == json.loads(printed.stdout)
    assert answer.json(), "the demo sends emails in its first pass"
    # and one send's life, as `history --json --key`
    key = answer.json()[0]["key"]
    moves = client.get("/api/history", params={"key": key})
    assert moves.json() == json.loads(run_cli("history", "--json", "--key", key, config=demo).stdout)
    assert client.get("/api/history", params={"key": "no-such-send"}).status_code == 404


def test_a_preview_on_sample_data(client: httpx.Client) -> None:
    answer = client.get("/api/preview/closing-prep")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == PREVIEW_KEYS
    assert body["rule"] == "closing-prep" and body["errors"] == []
    assert body["template"] and body["template"].startswith("closing-prep")
    assert body["subject"] and body["text"] and "<" in body["html"]
    assert body["from"] and body["to"] and all("@" in person for person in body["to"])


def test_a_preview_on_a_real_event_from_the_ledger(client: httpx.Client) -> None:
    # Given the demo's won deal (Initech), when its introduction is previewed on that event
    answer = client.get("/api/preview/implementation-intro", params={"event": "demo-initech-closing"})
    # Then it is written to the customer's people on the invite, the rep and the team copied
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert any("initech.example" in person for person in body["to"])
    assert any("ivy@acme.example" in person for person in body["cc"])
    assert "Initech" in body["text"] or "Ivy" in body["text"]


def test_unknown_rule_and_unknown_event_are_404_with_a_json_error(client: httpx.Client) -> None:
    rule = client.get("/api/preview/no-such-rule")
    event = client.get("/api/preview/closing-prep", params={"event": "no-such-event"})
    assert rule.status_code == 404 and "no-such-rule" in rule.json()["error"]
    assert event.status_code == 404 and "no-such-event" in event.json()["error"]
    assert client.get("/api/nothing-here").status_code == 404
    assert client.get("/api/nothing-here").json()["error"]


def test_a_rule_that_sends_nothing_for_the_event_says_why(client: httpx.Client) -> None:
    # The lost deal's thank-you asked of the won deal: no template fault, but nothing to show
    answer = client.get("/api/preview/lost-thank-you", params={"event": "demo-initech-closing"})
    assert answer.status_code == 422
    (problem,) = answer.json()["errors"]
    assert problem["file"] is None and "lost-thank-you" in problem["message"]


def test_a_broken_template_is_422_naming_file_and_line(tmp_path: Path) -> None:
    # Given a copy of the templates whose closing-final refers to an undefined name
    settings = load(demo_folder(tmp_path))
    template = template_of(settings, "closing-final")
    line = break_template(template)
    # When it is previewed, and sent as a test
    with serving(settings) as console:
        answer = httpx.get(console.url + "api/preview/closing-final", timeout=30)
        test = httpx.post(
            console.url + "api/test-send",
            json={"rule": "closing-final", "to": "bob@acme.example"},
            timeout=30,
        )
    # Then the answer is 422, no parts, the error with its file and line
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert set(body) == PREVIEW_KEYS
    assert body["subject"] is None and body["html"] is None and body["text"] is None
    (problem,) = body["errors"]
    assert problem["file"] == template.name
    assert problem["line"] == line
    assert "no_such_name" in problem["message"]
    assert test.status_code == 422 and test.json()["errors"] == [problem]


def test_answers_carry_the_security_headers(client: httpx.Client) -> None:
    for path in ("/", "/history", "/templates", "/templates/closing-prep", "/api/plan"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
    assert client.get("/static/console.js").status_code == 200


def test_pages_have_no_inline_script_and_sandbox_the_preview(client: httpx.Client) -> None:
    page = client.get("/templates/closing-prep").text
    assert '<script src="/static/console.js"' in page
    assert "<script>" not in page and "onclick" not in page
    assert 'sandbox=""' in page and "allow-scripts" not in page


def test_a_template_the_daemon_runs_on_its_last_good_version_is_flagged(tmp_path: Path) -> None:
    # Given a daemon's engine watching a copy of the templates, and an edit of closing-final it refuses
    config = demo_folder(tmp_path)
    engine = Engine(load(config), watch_templates=True)
    try:
        engine.reload_templates(clock.now())
        template = template_of(engine.settings, "closing-final")
        line = break_template(template)
        engine.reload_templates(clock.now())
    finally:
        engine.close()
    # When the console is asked about the templates
    with serving(load(config)) as console, httpx.Client(base_url=console.url, timeout=30) as client:
        note = client.get("/api/templates").json()
        page = client.get("/templates").text
        preview = client.get("/templates/closing-final").text
        schedule = client.get("/").text
    # Then the refused edit is named with its file and line, on the API and on both pages
    (refused,) = note["refused"]
    assert refused["file"] == template.name and refused["line"] == line
    rules = {item["rule"]: item for item in note["templates"]}
    assert rules["closing-final"]["template"] == template.name
    assert "runs on its last good version" in page and "last good version" in preview
    assert f"{template.name} runs on its last good version" in schedule


def outbox_tests(demo: Path) -> list[EmailMessage]:
    messages = (
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted((demo.parent / "outbox").glob("*.eml"))
    )
    return [m for m in messages if isinstance(m, EmailMessage) and str(m["Subject"]).startswith("[TEST]")]


def test_a_test_send_goes_to_that_address_only_and_is_in_the_history(
    demo: Path, client: httpx.Client
) -> None:
    # Given the demo's outbox, when a test of the won deal's introduction is asked for a colleague
    before = len(outbox_tests(demo))
    body = {"rule": "implementation-intro", "event": "demo-initech-closing", "to": "ivy@acme.example"}
    answer = client.post("/api/test-send", json=body)
    # Then it is sent to that address alone, [TEST] in its subject, and recorded as a test
    assert answer.status_code == 200, answer.text
    sent = answer.json()
    assert sent["to"] == "ivy@acme.example" and sent["subject"].startswith("[TEST] ")
    messages = outbox_tests(demo)
    assert len(messages) == before + 1
    assert str(messages[-1]["To"]) == "ivy@acme.example" and messages[-1]["Cc"] is None
    history = {s["key"]: s for s in client.get("/api/history").json()}
    assert history[sent["key"]]["test"] is True and history[sent["key"]]["status"] == "sent"
    # and on sample data too
    sample = client.post(
        "/api/test-send", json={"rule": "closing-prep", "event": None, "to": "bob@acme.example"}
    )
    assert sample.status_code == 200, sample.text


def test_a_test_send_is_refused_outside_the_company_and_for_unknown_rules_or_events(
    demo: Path, client: httpx.Client
) -> None:
    before = len(outbox_tests(demo))
    outside = client.post("/api/test-send", json={"rule": "closing-prep", "to": "dana@globex.example"})
    assert outside.status_code == 400 and "company" in outside.json()["error"]
    rule = client.post("/api/test-send", json={"rule": "no-such-rule", "to": "bob@acme.example"})
    assert rule.status_code == 404
    event = client.post(
        "/api/test-send", json={"rule": "closing-prep", "event": "nope", "to": "bob@acme.example"}
    )
    assert event.status_code == 404
    assert client.post("/api/test-send", json={"rule": "closing-prep"}).status_code == 400
    assert len(outbox_tests(demo)) == before


def test_a_test_send_is_only_json_from_the_consoles_own_pages(demo: Path, client: httpx.Client) -> None:
    before = len(outbox_tests(demo))
    body = {"rule": "closing-prep", "to": "bob@acme.example"}
    # a form another site's page posts, or a script on another origin
    form = client.post("/api/test-send", data=body)
    other = client.post("/api/test-send", json=body, headers={"Origin": "https://evil.example"})
    fetched = client.post("/api/test-send", json=body, headers={"Sec-Fetch-Site": "cross-site"})
    assert (form.status_code, other.status_code, fetched.status_code) == (415, 403, 403)
    assert client.get("/api/test-send").status_code == 405
    assert len(outbox_tests(demo)) == before
