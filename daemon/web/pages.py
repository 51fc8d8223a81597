"""The console's pages: the schedule by day, the history, the rules with their templates, a live preview.

Server-rendered from daemon/web/pages/*.html (autoescaped); the preview fills itself from the API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from daemon import clock, operations
from daemon.errors import LedgerError
from daemon.ledger import Ledger
from daemon.web import api, views

if TYPE_CHECKING:
    from daemon.web.app import Console

Endpoint = Callable[[Request], Response]
SPANS = {"7": 7, "14": 14, "30": 30, "all": None}  # the schedule's choice of days ahead
MAX_EVENTS = 200  # events offered in the preview's list beyond this rule's own


def guarded(console: Console, work: Endpoint) -> Endpoint:
    """A page whose ledger trouble shows as a page saying so, not a traceback."""

    def page(request: Request) -> Response:
        try:
            return work(request)
        except LedgerError as exc:
            return console.page(request, "trouble.html", 503, message=str(exc))

    return page


def schedule(console: Console) -> Endpoint:
    def page(request: Request) -> Response:
        choice = request.query_params.get("days", "14")
        choice = choice if choice in SPANS else "14"
        plan = views.schedule(console.ledger().sends(), console.zone, clock.now(), SPANS[choice])
        return console.page(
            request,
            "schedule.html",
            plan=plan,
            days=choice,
            spans=list(SPANS),
            zone=console.zone.key,
            refused=api.daemon_note(console)["refused"],
        )

    return guarded(console, page)


def history(console: Console) -> Endpoint:
    def page(request: Request) -> Response:
        rows = views.history_rows(operations.history(console.ledger()), console.zone)
        counts = {s: sum(1 for r in rows if r.status == s) for s in ("sent", "failed", "unknown")}
        counts["refused"] = sum(1 for r in rows if r.send.refused)
        return console.page(request, "history.html", rows=rows, counts=counts, zone=console.zone.key)

    return guarded(console, page)


def templates(console: Console) -> Endpoint:
    def page(request: Request) -> Response:
        files = {item["rule"]: item for item in api.rule_files(console)}
        rules = [
            {
                "rule": rule,
                "file": files[rule.name]["template"],
                "description": files[rule.name]["description"],
                "timing": views.timing(rule),
                "audience": views.audience(rule),
            }
            for rule in console.settings.policy().rules
        ]
        folder = console.settings.resolve(console.settings.templates.dir)
        note = api.daemon_note(console)
        return console.page(
            request,
            "templates.html",
            rules=rules,
            folder=str(folder),
            refused={p["file"]: p for p in note["refused"]},
            broken=note["broken"],
        )

    return guarded(console, page)


def event_choices(ledger: Ledger, rule: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The events to preview a rule on: those it has sends for, then the others (id, title)."""
    own = list(dict.fromkeys(s.event_id for s in ledger.sends() if s.rule == rule))
    others = [i for i in ledger.all_event_ids() if i not in set(own)][:MAX_EVENTS]

    def titled(ids: list[str]) -> list[tuple[str, str]]:
        found = ((i, ledger.event(i)) for i in ids)
        return [(i, stored.event.title or i) for i, stored in found if stored is not None]

    return titled(own), titled(others)


def preview(console: Console) -> Endpoint:
    def page(request: Request) -> Response:
        name = request.path_params["rule"]
        rules = console.settings.policy().rules
        rule = next((r for r in rules if r.name == name), None)
        if rule is None:
            return console.page(request, "missing.html", 404, what=f"no rule named {name!r}")
        event = request.query_params.get("event") or ""
        own, others = event_choices(console.ledger(), name)
        file = api.template_file(console, rule)
        described = next(i["description"] for i in api.rule_files(console) if i["rule"] == name)
        stale = [p for p in api.daemon_note(console)["refused"] if p["file"] == file]
        return console.page(
            request,
            "preview.html",
            rule=rule,
            rules=rules,
            file=file,
            description=described,
            timing=views.timing(rule),
            audience=views.audience(rule),
            event=event,
            own=own,
            others=others,
            stale=stale,
            domain=console.settings.company.domains[0],
        )

    return guarded(console, page)
