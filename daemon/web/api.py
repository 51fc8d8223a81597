"""The console's JSON API, part of the contract: the plan, the history, the rules, a live preview, a test.

`/api/plan` and `/api/history` answer what `plan --json` and `history --json` print, from the same code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from daemon import clock, display, operations
from daemon.errors import LedgerError, TemplateError, UserError
from daemon.model import Rule
from daemon.playbook import classify
from daemon.preview import load_templates, preview_event, preview_sample
from daemon.testsend import send_test
from daemon.web import views
from daemon.web.security import capped_body, cross_site

if TYPE_CHECKING:
    from daemon.web.app import Console

log = logging.getLogger(__name__)
STATUSES = ("pending", "sent", "failed", "cancelled", "skipped", "stopped", "unknown")
Endpoint = Callable[[Request], Response]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def guarded(work: Callable[[Request], Response]) -> Endpoint:
    """An endpoint whose ledger trouble (locked, unreachable) is a 503 saying so, not a traceback."""

    def endpoint(request: Request) -> Response:
        try:
            return work(request)
        except LedgerError as exc:
            log.warning("console: %s", exc)
            return error(503, str(exc))

    return endpoint


def plan(console: Console) -> Endpoint:
    """`GET /api/plan[?status=S…]`: every send, as `plan --json [--status S…]`."""

    def answer(request: Request) -> Response:
        statuses = tuple(request.query_params.getlist("status"))
        unknown = sorted(set(statuses) - set(STATUSES))
        if unknown:
            return error(400, f"unknown status {', '.join(unknown)}; one of {', '.join(STATUSES)}")
        sends = operations.sends(console.ledger(), statuses)
        return JSONResponse([display.send_json(s) for s in sends])

    return guarded(answer)


def history(console: Console) -> Endpoint:
    """`GET /api/history[?key=KEY]`: as `history --json [--key KEY]`."""

    def answer(request: Request) -> Response:
        key = request.query_params.get("key")
        if key:
            moves = console.ledger().transitions(key)
            if not moves:
                return error(404, f"no send with key {key!r}")
            return JSONResponse(display.transitions_json(moves))
        return JSONResponse([display.send_json(s) for s in operations.history(console.ledger())])

    return guarded(answer)


def template_file(console: Console, rule: Rule, rep: str | None = None) -> str | None:
    """The file a rule renders from for `rep`'s deals, relative to the template folder; None if none."""
    try:
        return load_templates(console.settings).find(rule.template_name, rep)
    except TemplateError:  # no folder, or two files for the rule: the preview says which
        return None


def daemon_note(console: Console) -> dict[str, Any]:
    """What the running daemon noted of its templates (operations.TEMPLATES_META): the edits it refused,
    whose last good version it keeps sending, and the files broken when it started."""
    raw = console.ledger().get_meta(operations.TEMPLATES_META)
    note = json.loads(raw) if raw else {}
    return {"refused": note.get("refused", []), "broken": note.get("broken", []), "at": note.get("at")}


def rule_files(console: Console) -> list[dict[str, Any]]:
    """Every rule with the file it renders from (None: missing, or written twice) and its description."""
    templates = load_templates(console.settings)

    def found(name: str) -> tuple[str | None, str]:
        try:
            return templates.find(name), templates.description(name)
        except TemplateError:  # two files for one rule: the preview and `templates check` say so
            return None, ""

    rules = []
    for rule in console.settings.policy().rules:
        file, description = found(rule.template_name)
        rules.append(
            {
                "rule": rule.name,
                "template": file,
                "description": description,
                "enabled": rule.enabled,
                "kind": rule.kind.value,
            }
        )
    return rules


def templates(console: Console) -> Endpoint:
    """`GET /api/templates`: every rule with its template file, and the running daemon's note."""

    def answer(_request: Request) -> Response:
        try:
            rules = rule_files(console)
        except TemplateError as exc:  # the template folder itself is missing
            return error(500, str(exc))
        return JSONResponse({"templates": rules, **daemon_note(console)})

    return guarded(answer)


def render_preview(console: Console, rule_name: str, event: str | None) -> tuple[int, dict[str, Any]]:
    """The preview of one rule's email as (status, JSON): 200, 404 (no such rule or event), or 422
    with the problems, each with its file and line."""
    policy = console.settings.policy()
    rule = policy.rule(rule_name)
    if rule is None:
        return 404, {"error": f"no rule named {rule_name!r}"}
    event_id, rep = None, None
    if event:
        try:
            stored = console.ledger().find_event(event)
        except UserError as exc:
            return 404, {"error": str(exc)}
        event_id = stored.event.id
        seen = classify(stored.event, policy)
        rep = seen.rep.email if seen else None  # whose override, if any, the email renders from
    template = template_file(console, rule, rep)
    try:
        if event_id is None:
            headers, rendered = preview_sample(console.settings, rule_name)
        else:
            headers, rendered = preview_event(console.settings, rule_name, event_id, clock.now())
    except TemplateError as exc:
        return 422, views.preview_failed(rule_name, template, [exc.problem])
    except UserError as exc:  # the rule sends nothing for this event: said where the errors go
        return 422, views.preview_failed(rule_name, template, [str(exc)])
    return 200, views.preview_json(rule_name, template, headers, rendered)


def preview(console: Console) -> Endpoint:
    """`GET /api/preview/<rule>[?event=EVENT_ID]`: sample data without an event."""

    def answer(request: Request) -> Response:
        status, body = render_preview(
            console, request.path_params["rule"], request.query_params.get("event") or None
        )
        return JSONResponse(body, status)

    return guarded(answer)


async def not_found(request: Request, exc: Exception) -> Response:
    detail = exc.detail if isinstance(exc, HTTPException) else "Not Found"
    if request.url.path.startswith("/api/"):
        return error(404, f"{request.url.path}: {detail.lower()}")
    console: Console = request.app.state.console
    return console.page(request, "missing.html", 404)


async def not_allowed(request: Request, _exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return error(405, f"{request.method} is not allowed on {request.url.path}")
    return HTMLResponse("Method Not Allowed", 405)


def test_send(console: Console) -> Callable[[Request], Awaitable[Response]]:
    """`POST /api/test-send` with `{"rule", "event", "to"}` (event null: sample data): the email as the
    preview shows it, to that one address in the company's domains, `[TEST]` in its subject, recorded
    in the history as a test. Only as JSON from the console's own pages, never from another site's."""

    async def answer(request: Request) -> Response:
        if cross_site(request):
            return error(403, "a test send is only made from the console's own pages")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error(415, 'send JSON: {"rule": ..., "event": ... or null, "to": ...}')
        try:
            body = json.loads(await capped_body(request))
        except ValueError:
            return error(400, "the body is not JSON")
        rule, event, to = (body.get(k) if isinstance(body, dict) else None for k in ("rule", "event", "to"))
        if not isinstance(rule, str) or not isinstance(to, str) or not isinstance(event, str | None):
            return error(400, 'give "rule" and "to" as strings, and "event" as a string or null')
        status, result = await run_in_threadpool(send_one, console, rule, event or None, to)
        return JSONResponse(result, status)

    return answer


def send_one(console: Console, rule: str, event: str | None, to: str) -> tuple[int, dict[str, Any]]:
    """Send one test; (status, JSON): 200, 404 (no such rule or event), 422 (the template), 400 (an
    address outside the company, or the send failed: the reason, recorded in the history)."""
    if console.settings.policy().rule(rule) is None:
        return 404, {"error": f"no rule named {rule!r}"}
    try:
        if event is not None:
            try:
                event = console.ledger().find_event(event).event.id
            except UserError as exc:
                return 404, {"error": str(exc)}
        done = send_test(console.settings, rule, event, to, clock.now())
    except TemplateError as exc:
        return 422, {"error": str(exc), "errors": [exc.problem.as_json()]}
    except UserError as exc:
        return 400, {"error": str(exc)}
    except LedgerError as exc:
        return 503, {"error": str(exc)}
    log.info("console: test %s of %s sent to %s", done.key, rule, done.address)
    return 200, {
        "key": done.key,
        "subject": done.subject,
        "to": done.address,
        "from": done.sender,
        "note": done.note,
    }
