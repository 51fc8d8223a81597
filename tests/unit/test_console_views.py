"""What the console shows, as data: the schedule by day in the company's zone, previews as JSON.

Pure functions: sends and rendered emails in, plain values out, no server and no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.errors import Problem
from daemon.model import Audience, Person, SendRecord, Status
from daemon.rules import DEFAULT_RULES
from daemon.templates import Rendered
from daemon.web import views
from daemon.web.security import is_loopback, safe_next, same, session_value

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # Monday 13:00 in Berlin


def send(key: str, due: datetime, status: Status = Status.PLANNED, reason: str | None = None) -> SendRecord:
    return SendRecord(
        key=key,
        rule=key.split(":")[0],
        event_id="ev",
        deal="globex.example",
        due=due,
        expires=None,
        sender=None,
        reply_to=None,
        to=(Person("dana@globex.example", "Dana Fox"),),
        cc=(Person("bob@acme.example"),),
        audience=Audience.CUSTOMER,
        template=key.split(":")[0],
        status=status,
        reason=reason,
        updated_at=NOW,
    )


def test_sends_are_grouped_by_day_in_the_company_zone() -> None:
    # Given a send at 23:30 UTC on Monday, which is Tuesday 00:30 in Berlin, and one on Monday
    late = send("a:1", datetime(2026, 3, 2, 23, 30, tzinfo=UTC))
    today = send("b:1", datetime(2026, 3, 2, 15, 0, tzinfo=UTC), Status.SENT)
    # When the schedule is shaped
    plan = views.schedule([late, today], BERLIN, NOW, days=14)
    # Then each is under its Berlin day, today's first, with Berlin times
    assert [d.label for d in plan.days] == ["Today, Monday 2 March", "Tomorrow, Tuesday 3 March"]
    assert [r.when for r in plan.days[0].rows] == ["16:00"]
    assert [r.when for r in plan.days[1].rows] == ["00:30"]
    assert plan.days[1].rows[0].recipients == ["dana@globex.example"]
    assert plan.days[1].rows[0].copied == ["bob@acme.example"]


def test_pending_sends_from_before_today_wait_and_are_flagged_with_their_reason() -> None:
    held = send("a:1", NOW - timedelta(days=2), reason="mail.smtp.username: the server refused the login")
    old = send("b:1", NOW - timedelta(days=2), Status.SENT)
    plan = views.schedule([held, old], BERLIN, NOW, days=14)
    (row,) = plan.waiting
    assert row.status == "waiting" and row.trouble
    assert "refused the login" in row.status_text
    assert plan.days == []  # what was sent before today is history, not schedule


def test_cancelled_sends_are_left_out_and_later_ones_counted() -> None:
    cancelled = send("a:1", NOW + timedelta(hours=2), Status.CANCELLED)
    far = send("b:1", NOW + timedelta(days=90))
    plan = views.schedule([cancelled, far], BERLIN, NOW, days=14)
    assert plan.days == [] and plan.later == 1
    assert len(views.schedule([cancelled, far], BERLIN, NOW, days=None).days) == 1


def test_failed_unknown_and_refused_sends_are_trouble_in_history() -> None:
    failed = send("a:1", NOW, Status.FAILED, "550 no such mailbox")
    unknown = send("b:1", NOW, Status.UNKNOWN, "the connection dropped after the message")
    partly = send("c:1", NOW, Status.SENT)
    partly = SendRecord(**{**partly.__dict__, "refused": {"lee@globex.example": "550 unknown user"}})
    fine = send("d:1", NOW, Status.SENT)
    rows = views.history_rows([failed, unknown, partly, fine], BERLIN)
    assert [r.trouble for r in rows] == [True, True, True, False]
    assert rows[0].when == "02 Mar 2026 13:00"


def test_header_people_keep_names_with_commas_whole() -> None:
    header = '"Belson, Gavin" <gavin@hooli.example>, dana@globex.example'
    assert views.header_people(header) == ["Belson, Gavin <gavin@hooli.example>", "dana@globex.example"]
    assert views.header_people(None) == []


def test_preview_json_has_the_contracts_keys_rendered_or_failed() -> None:
    keys = {"rule", "template", "subject", "from", "to", "cc", "text", "html", "errors"}
    headers = [("From", "Ft <ft@acme.example>"), ("To", "Dana Fox <dana@globex.example>")]
    good = views.preview_json(
        "closing-prep", "closing-prep.md", headers, Rendered("Hi", "text\n", "<p>x</p>")
    )
    assert set(good) == keys and good["errors"] == [] and good["cc"] == []
    assert good["to"] == ["Dana Fox <dana@globex.example>"]
    bad = views.preview_failed("closing-prep", "closing-prep.md", [Problem("closing-prep.md", 4, "boom")])
    assert set(bad) == keys and bad["subject"] is None and bad["html"] is None
    assert bad["errors"] == [{"file": "closing-prep.md", "line": 4, "message": "boom"}]
    why = views.preview_failed("x", None, ["sends nothing for this event"])
    assert why["errors"] == [{"file": None, "line": None, "message": "sends nothing for this event"}]


def test_rule_timing_as_people_say_it() -> None:
    rules = {r.name: r for r in DEFAULT_RULES}
    assert views.timing(rules["closing-prep"]) == "1 day before the start"
    assert views.timing(rules["closing-final"]) == "1 hour before the start"
    assert views.timing(rules["handoff-brief"]) == "at the outcome"
    assert views.timing(rules["lost-check-in"]) == "90 days after the end"
    assert views.audience(rules["implementation-intro"]) == "customer; cc implementation"


def test_loopback_names() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.0.2.1", "localhost.evil.example", ""))


def test_after_login_only_our_own_paths() -> None:
    assert safe_next("/templates/closing-prep?event=x") == "/templates/closing-prep?event=x"
    assert safe_next("//evil.example/") == "/"
    assert safe_next("https://evil.example/") == "/"
    assert safe_next("/\\evil.example") == "/"
    assert safe_next(None) == "/"


def test_the_session_cookie_is_not_the_token() -> None:
    token = "7f3c9e2a41d84b6f9a0c5e1d2b3a4f5e"
    assert token not in session_value(token)
    assert same(session_value(token), session_value(token))
    assert not same(session_value(token), session_value(token + "x"))
