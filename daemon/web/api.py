"""The console's JSON API, part of the contract: the plan, the history, the rules and a live preview.

`/api/plan` and `/api/history` answer what `plan --json` and `history --json` print, from the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from daemon import clock, display, operations
from daemon.errors import LedgerError, TemplateError, UserError
from daemon.model import Rule
from daemon.web import views

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


def template_file(console: Console, rule: Rule) -> str | None:
    """The file a rule renders from, relative to the template folder; None if there is none."""
    from daemon.templates import Templates

    try:
        templates = Templates(console.settings.resolve(console.settings.templates.dir))
    except TemplateError:
        return None
    path = templates.path(rule.template_name)
    return path.name if path.is_file() else None


def templates(console: Console) -> Endpoint:
    """`GET /api/templates`: every rule with its template file."""

    def answer(_request: Request) -> Response:
        rules = console.settings.policy().rules
        return JSONResponse(
            {
                "templates": [
                    {
                        "rule": rule.name,
                        "template": template_file(console, rule),
                        "enabled": rule.enabled,
                        "kind": rule.kind.value,
                    }
                    for rule in rules
                ]
            }
        )

    return guarded(answer)


def render_preview(console: Console, rule_name: str, event: str | None) -> tuple[int, dict[str, Any]]:
    """The preview of one rule's email as (status, JSON): 200, 404 (no such rule or event), or 422
    with the problems, each with its file and line."""
    from daemon.preview import preview_event, preview_sample

    rule = console.settings.policy().rule(rule_name)
    if rule is None:
        return 404, {"error": f"no rule named {rule_name!r}"}
    template = template_file(console, rule)
    event_id = None
    if event:
        try:
            event_id = console.ledger().find_event(event).event.id
        except UserError as exc:
            return 404, {"error": str(exc)}
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
