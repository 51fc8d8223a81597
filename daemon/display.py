"""How the command line shows what it prints: times in the reader's zone, tables, sends as JSON, a pass.

Plain functions of data: the commands in daemon/cli.py fetch, these format.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from daemon.ledger import SendRecord, Transition
from daemon.model import Status
from daemon.operations import EventHistory, PassSummary

if TYPE_CHECKING:
    from daemon.doctor import Check


def local(moment: datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(zone).strftime("%a %d %b %Y %H:%M %Z")


def addresses(people: Iterable[Any]) -> list[str]:
    return [p.email for p in people]


def utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, as the JSON output promises."""
    return moment.isoformat().replace("+00:00", "Z")


def send_json(send: SendRecord) -> dict[str, Any]:
    return {
        "key": send.key,
        "rule": send.rule,
        "event_id": send.event_id,
        "deal": send.deal,
        "due": utc(send.due),
        "expires": utc(send.expires) if send.expires else None,
        "to": addresses(send.to),
        "cc": addresses(send.cc),
        "subject": send.subject,
        "status": Status(send.status).public,
        "reason": send.reason,
        "attempts": send.attempts,
        "sent_at": utc(send.sent_at) if send.sent_at else None,
        "refused": send.refused or {},
        # `status` stays "pending" for a claimed send (a promise); these say who holds it, until when.
        "claimed_by": send.claimed_by if send.status is Status.CLAIMED else None,
        "claimed_until": utc(send.lease_until)
        if send.status is Status.CLAIMED and send.lease_until
        else None,
        "test": send.test,  # a test send (`preview --send-to`): to a colleague, outside the plan
    }


def status_text(send: SendRecord, zone: ZoneInfo) -> str:
    """The status for people: a claimed send says which process holds it (host:pid), until when."""
    if send.status is not Status.CLAIMED:
        return Status(send.status).public
    who = ":".join(send.claimed_by.split(":")[:2]) if send.claimed_by else None
    until = send.lease_until.astimezone(zone).strftime("%H:%M") if send.lease_until else None
    return " ".join(["claimed", *(["by", who] if who else []), *(["until", until] if until else [])])


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    widths = [min(w, 60) for w in widths]

    def line(cells: list[str]) -> str:
        return "  ".join(
            (c if len(c) <= w else c[: w - 1] + "…").ljust(w) for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def transitions_json(moves: Iterable[Transition]) -> list[dict[str, Any]]:
    return [
        {
            "at": utc(m.at),
            "from": m.from_status,
            "to": m.to_status,
            "reason": m.reason,
        }
        for m in moves
    ]


def transitions_text(moves: Iterable[Transition], zone: ZoneInfo) -> list[str]:
    return [
        f"{local(m.at, zone):<26} {m.from_status or '-':>9} -> {m.to_status:<9} {m.reason or ''}"
        for m in moves
    ]


def plan_table(sends: list[SendRecord], zone: ZoneInfo) -> str:
    rows = [
        [
            local(s.due, zone),
            status_text(s, zone),
            s.rule,
            ", ".join(addresses(s.to)),
            s.subject or "",
            s.event_id,
        ]
        for s in sends
    ]
    return table(rows, ["due", "status", "rule", "to", "subject", "event"])


def history_table(sends: list[SendRecord], zone: ZoneInfo) -> str:
    rows = [
        [
            local(s.sent_at or s.updated_at, zone),
            f"{s.status.value} (test)" if s.test else s.status.value,
            s.rule,
            ", ".join(addresses((*s.to, *s.cc))),
            s.reason or s.subject or "",
        ]
        for s in sends
    ]
    return table(rows, ["when", "status", "rule", "to / cc", "subject or reason"])


def print_pass(summary: PassSummary, zone: ZoneInfo, upcoming: int = 10) -> None:
    report = summary.report
    for cal in report.calendars:
        if cal.error:
            click.echo(f"calendar {cal.name}: FAILED: {cal.error}")
        elif cal.busy:
            click.echo(f"calendar {cal.name}: being synced by another instance")
        elif cal.unchanged:
            click.echo(f"calendar {cal.name}: unchanged")
        else:
            click.echo(f"calendar {cal.name}: {cal.new} new, {cal.changed} changed, {cal.gone} gone")
        if cal.problems:
            click.echo(f"  {len(cal.problems)} problem(s) with its events:")
            for problem in cal.problems[:20]:
                click.echo(f"  - {problem}")
            if len(cal.problems) > 20:
                click.echo(f"  … and {len(cal.problems) - 20} more (run with -v to log them all)")
        if cal.unusable:
            shown = ", ".join(cal.unusable[:5]) + (
                f" and {len(cal.unusable) - 5} more" if len(cal.unusable) > 5 else ""
            )
            click.echo(
                f"  {len(cal.unusable)} event(s) could not be used ({shown}): fix them in the calendar; "
                "what was known of them before stays planned"
            )
    d = report.dispatch
    if d.halted:
        click.echo(f"SENDING STOPPED for this pass: {d.halted}")
        click.echo(
            f"  {len(d.held) + d.waiting} due email(s) wait in the ledger (see `followthrough plan`); "
            "they go out at the next pass once this is fixed."
        )
    click.echo(f"\nSent {len(d.sent)} email(s)" + (":" if d.sent else "."))
    for final in summary.sent:
        click.echo(f"  {final.rule:<22} to {', '.join(addresses(final.to))}")
        click.echo(f'  {"":<22} "{final.subject}"')
        if final.reason:
            click.echo(f"  {'':<22} note: {final.reason}")
    for label, items in (
        ("NEEDS A DECISION", d.unknown),
        ("HELD", [] if d.halted else d.held),
        ("Failed", d.failed),
        ("Will retry", d.retrying),
        ("Skipped", d.skipped),
        ("Stopped", d.stopped),
    ):
        for send, reason in items:
            click.echo(f"{label}: {send.key}: {reason}")
    for key, reason in report.stopped:
        click.echo(f"Stopped: {key}: {reason}")
    if d.waiting and not d.halted:
        click.echo(f"  … and {d.waiting} more due email(s) from the same sender, held for the same reason")
    pending = summary.upcoming
    click.echo(f"\nPlanned next ({len(pending)} pending):" if pending else "\nNothing else planned.")
    for send in pending[:upcoming]:
        click.echo(f"  {local(send.due, zone):<26} {send.rule:<22} to {', '.join(addresses(send.to))}")
    if len(pending) > upcoming:
        click.echo(f"  … see `followthrough plan` for all {len(pending)}")


def variables_table(variables: list[dict[str, str]]) -> str:
    """`templates vars`: the name, then what it is and the sample's value, indented below it."""
    lines = []
    for v in variables:
        lines += [v["name"], f"    {v['description']}", f"    e.g. {v['example']}"]
    return "\n".join(lines)


def event_history_text(history: EventHistory, zone: ZoneInfo) -> list[str]:
    """The event's outcomes and its sends' moves, in the order they happened."""
    lines = [
        (e.at, f"{local(e.at, zone):<26} outcome {e.outcome.value} ({e.detail or 'by ' + e.source})")
        for e in history.outcomes
    ]
    lines += [
        (
            m.at,
            f"{local(m.at, zone):<26} {m.key}: {m.from_status or '-'} -> {m.to_status} {m.reason or ''}",
        )
        for m in history.moves
    ]
    return [text.rstrip() for _, text in sorted(lines, key=lambda line: line[0])]


def event_history_json(history: EventHistory) -> dict[str, Any]:
    return {
        "event_id": history.event_id,
        "outcomes": [
            {"outcome": e.outcome.value, "source": e.source, "detail": e.detail, "at": utc(e.at)}
            for e in history.outcomes
        ],
        "moves": [
            {"key": m.key, **move}
            for m, move in zip(history.moves, transitions_json(history.moves), strict=True)
        ],
    }


def check_lines(check: Check) -> list[str]:
    """One doctor's check: its verdict, name and what it found; below it, its problems and the fix."""
    lines = [f"{check.verdict.value:<4}  {check.name}: {check.found}"]
    lines += [f"      - {detail}" for detail in check.details]
    if check.fix:
        lines.append(f"      fix: {check.fix}")
    return lines


def doctor_summary(checks: list[Check]) -> str:
    failed = sum(c.failed for c in checks)
    warned = sum(c.verdict.value == "warn" for c in checks)
    remarks = f", {warned} with a warning" if warned else ""
    if failed:
        return f"{failed} of {len(checks)} checks failed{remarks}. Nothing was sent."
    return f"All {len(checks)} checks passed{remarks}. Nothing was sent."
