"""The public pages behind the links in emails: a rep records won or lost, a customer unsubscribes.

GET and HEAD only show a page with one button (mail scanners open links before people do); the button's
POST acts, as does the RFC 8058 one-click POST a mail client sends for List-Unsubscribe.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from daemon import clock, display, operations
from daemon.errors import FollowthroughError
from daemon.links import LinkError, OutcomeLink
from daemon.model import Outcome, Status
from daemon.playbook import classify
from daemon.web.security import capped_body

if TYPE_CHECKING:
    from daemon.web.app import Console

log = logging.getLogger(__name__)
PATHS = ("/outcome/", "/unsubscribe/")  # public: the token in the URL is the permission
ONE_CLICK = b"List-Unsubscribe=One-Click"


class HideTokens(logging.Filter):
    """Keeps the tokens of these paths out of the access log: a logged link is a usable link."""

    PATTERN = re.compile(r"(/(?:outcome|unsubscribe)/)[^\s?\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1…", a) if isinstance(a, str) else a for a in record.args)
        return True


@dataclass(frozen=True)
class Seen:
    """What an outcome link's page says: the event, the customer, the outcome asked and the one known."""

    title: str
    company: str
    when: str
    outcome: Outcome
    current: Outcome | None
    current_source: str | None


def page(console: Console, request: Request, status: int = 200, **values: Any) -> Response:
    return console.page(request, "link.html", status, **values)  # for HEAD, uvicorn sends no body


def refused(console: Console, request: Request, error: LinkError) -> Response:
    log.info("a %s link was refused: %s", request.url.path.split("/")[1], error)
    return page(console, request, error.status, title="This link does not work", message=str(error))


def outcome(console: Console) -> Callable[[Request], Any]:
    """`/outcome/<token>`: GET and HEAD show what the click would record; POST records it."""

    async def endpoint(request: Request) -> Response:
        links = console.links
        if links is None:
            return page(console, request, 404, title="Not found", message="This server serves no links.")
        try:
            link = links.read_outcome(request.path_params["token"])
        except LinkError as exc:
            return refused(console, request, exc)
        if request.method == "POST":
            return await run_in_threadpool(_record, console, request, link)
        seen = await run_in_threadpool(_seen, console, link)
        if seen is None:
            return _gone(console, request)
        return page(console, request, kind="outcome", seen=seen, outcome=link.outcome.value)

    return endpoint


def _seen(console: Console, link: OutcomeLink) -> Seen | None:
    ledger = console.ledger()
    stored = ledger.event(link.event_id)
    if stored is None:
        return None
    policy = console.settings.policy()
    c = classify(stored.event, policy)
    current = ledger.outcome(link.event_id)
    return Seen(
        title=policy.tags.strip(stored.event.title) or "(no title)",
        company=c.deal.company if c else "",
        when=display.local(stored.event.start, console.zone),
        outcome=link.outcome,
        current=current.outcome if current else None,
        current_source=current.source if current else None,
    )


def _gone(console: Console, request: Request) -> Response:
    return page(
        console, request, 404, title="This call is no longer in the calendar",
        message="followthrough no longer has this event, so there is no outcome to record for it.",
    )  # fmt: skip


def _record(console: Console, request: Request, link: OutcomeLink) -> Response:
    from daemon.engine import Engine  # templates and backends: only when an outcome is recorded

    seen = _seen(console, link)
    if seen is None:
        return _gone(console, request)
    if seen.current is link.outcome:
        planned = _planned(console, link)
        return page(console, request, kind="recorded", seen=seen, already=True, planned=planned)
    detail = f"the {link.outcome.value.capitalize()} link in {link.rule}"
    try:
        # The engine wires the mail transport too: this process needs run's environment (its secrets).
        engine = Engine(console.settings, ledger=console.ledger(), sources=[])
        done = operations.record_outcome(engine, link.event_id, link.outcome, clock.now(), "link", detail)
    except FollowthroughError as exc:
        log.error("outcome %s for %s not recorded: %s", link.outcome.value, link.event_id, exc)
        return page(
            console, request, 503, title="The outcome was not recorded",
            message=f"{exc}. Nothing changed: try again later, or add #{link.outcome.value} to the event.",
        )  # fmt: skip
    log.info("outcome %s recorded for %s from %s", link.outcome.value, link.event_id, detail)
    return page(
        console, request, kind="recorded", seen=seen, already=False, cancelled=done.cancelled,
        planned=_planned(console, link),
    )  # fmt: skip


def _planned(console: Console, link: OutcomeLink) -> list[dict[str, str]]:
    """What happens next: the event's pending sends, soonest first."""
    sends = console.ledger().sends([Status.PLANNED], event_id=link.event_id)
    return [
        {
            "rule": s.rule,
            "to": ", ".join(p.display_name for p in s.to),
            "when": display.local(s.due, console.zone),
        }
        for s in sorted(sends, key=lambda s: s.due)
    ]


def unsubscribe(console: Console) -> Callable[[Request], Any]:
    """`/unsubscribe/<token>`: GET shows a button; POST (the button's, or a mail client's one-click)
    suppresses the addresses at once and answers 200, with no cookie, login or redirect."""

    async def endpoint(request: Request) -> Response:
        links = console.links
        if links is None:
            return page(console, request, 404, title="Not found", message="This server serves no links.")
        try:
            addresses = links.read_unsubscribe(request.path_params["token"])
        except LinkError as exc:
            return refused(console, request, exc)
        if request.method != "POST":
            return page(console, request, kind="unsubscribe", addresses=addresses)
        body = await capped_body(request, 4096)
        how = (
            "unsubscribed with one click by their mail client (List-Unsubscribe-Post)"
            if ONE_CLICK in body
            else "unsubscribed on the page of the link in an email"
        )
        await run_in_threadpool(operations.suppress, console.ledger(), addresses, clock.now(), how)
        log.info("unsubscribed from a link: %d address(es)", len(addresses))
        return page(console, request, kind="unsubscribed", addresses=addresses)

    return endpoint
