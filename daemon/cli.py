"""The command line: the user's door to followthrough.

Commands call an operation (daemon/operations.py, the engine) and print what it returns. Exit codes
are `daemon.errors.ExitCode`: 0 fine, 1 something failed or needs a decision, 2 bad usage, 3 invalid
config, 4 template errors, 5 the ledger cannot be used, 130 stopped hard by a second signal.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import click

from daemon import __version__, clock, operations
from daemon import config as config_module
from daemon.config import Settings
from daemon.errors import ExitCode, LedgerError, UserError
from daemon.ledger import Ledger, SendRecord
from daemon.ledger import open_ledger as open_store
from daemon.model import Outcome, Status

log = logging.getLogger("daemon")


def _settings(ctx: click.Context) -> Settings:
    return config_module.load(ctx.obj["config"])


@contextmanager
def open_ledger(settings: Settings) -> Iterator[Ledger]:
    """The ledger for one command, closed when it is done."""
    with open_store(settings.store_url, settings.store.busy_timeout) as ledger:
        yield ledger


def _engine(ctx: click.Context) -> Any:
    from daemon.engine import Engine

    return Engine(_settings(ctx))


def local(moment: datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(zone).strftime("%a %d %b %Y %H:%M %Z")


def _addresses(people: Iterable[Any]) -> list[str]:
    return [p.email for p in people]


def send_json(send: SendRecord) -> dict[str, Any]:
    return {
        "key": send.key,
        "rule": send.rule,
        "event_id": send.event_id,
        "deal": send.deal,
        "due": send.due.isoformat().replace("+00:00", "Z"),
        "expires": send.expires.isoformat().replace("+00:00", "Z") if send.expires else None,
        "to": _addresses(send.to),
        "cc": _addresses(send.cc),
        "subject": send.subject,
        "status": Status(send.status).public,
        "reason": send.reason,
        "attempts": send.attempts,
        "sent_at": send.sent_at.isoformat().replace("+00:00", "Z") if send.sent_at else None,
        "refused": send.refused or {},
        # `status` stays "pending" for a claimed send (a promise); these say who holds it, until when.
        "claimed_by": send.claimed_by if send.status is Status.CLAIMED else None,
        "claimed_until": send.lease_until.isoformat().replace("+00:00", "Z")
        if send.status is Status.CLAIMED and send.lease_until
        else None,
    }


def status_text(send: SendRecord, zone: ZoneInfo) -> str:
    """The status for people: a claimed send says which process holds it (host:pid), until when."""
    if send.status is not Status.CLAIMED:
        return Status(send.status).public
    who = ":".join(send.claimed_by.split(":")[:2]) if send.claimed_by else None
    until = send.lease_until.astimezone(zone).strftime("%H:%M") if send.lease_until else None
    return " ".join(["claimed", *(["by", who] if who else []), *(["until", until] if until else [])])


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    widths = [min(w, 60) for w in widths]

    def line(cells: list[str]) -> str:
        return "  ".join(
            (c if len(c) <= w else c[: w - 1] + "…").ljust(w) for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


class Cli(click.Group):
    """Turns our errors into one line and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (UserError, LedgerError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=Cli)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="FOLLOWTHROUGH_CONFIG",
    default=config_module.DEFAULT_CONFIG,
    show_default=True,
    help="The TOML config file (env FOLLOWTHROUGH_CONFIG).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(__version__, prog_name="followthrough")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, verbose: int) -> None:
    """followthrough: the around-the-signature playbook, run from the calendar."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# -- run / tick ---------------------------------------------------------------------------
@cli.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon: sync on a timer, send when due, until SIGTERM or Ctrl-C."""
    from daemon.scheduler import Daemon

    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger().setLevel(logging.INFO)  # a daemon reports its progress
    engine = _engine(ctx)
    daemon = Daemon(engine)
    stop = threading.Event()
    signals = {"count": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            log.warning("second signal: stopping now, without waiting for the current job")
            daemon.abandon()  # claims not yet handed over go back to planned first
            os._exit(ExitCode.KILLED)
        daemon.request_stop()  # before saying so: once this is logged, no further message goes out
        log.info("signal %s: finishing the message in flight, then stopping (again to force)", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        daemon.stop(wait=True)
        engine.close()


@cli.command()
@click.option(
    "--accept-removals",
    "accept",
    multiple=True,
    metavar="CALENDAR",
    help="Confirm that this calendar really lost most of its events; its sync was held (repeatable).",
)
@click.pass_context
def tick(ctx: click.Context, accept: tuple[str, ...]) -> None:
    """One pass: sync every calendar, plan, send all that is due, then exit."""
    engine = _engine(ctx)
    try:
        engine.accept_removals(accept)
        now = clock.now()
        report = engine.tick(now)
        zone = ZoneInfo(engine.settings.company.timezone)
        print_pass(operations.summarize(engine.ledger, report), zone)
    finally:
        engine.close()
    if report.failed:
        sys.exit(ExitCode.FAILED)


def print_pass(summary: operations.PassSummary, zone: ZoneInfo, upcoming: int = 10) -> None:
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
        click.echo(f"  {final.rule:<22} to {', '.join(_addresses(final.to))}")
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
        click.echo(f"  {local(send.due, zone):<26} {send.rule:<22} to {', '.join(_addresses(send.to))}")
    if len(pending) > upcoming:
        click.echo(f"  … see `followthrough plan` for all {len(pending)}")


# -- plan / history -----------------------------------------------------------------------
STATUS_CHOICES = ["pending", "sent", "failed", "cancelled", "skipped", "stopped", "unknown"]


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON array, times in UTC.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUS_CHOICES),
    help="Only sends in this state (repeatable).",
)
@click.pass_context
def plan(ctx: click.Context, as_json: bool, statuses: tuple[str, ...]) -> None:
    """What is pending, sent and cancelled, with due times in local time."""
    settings = _settings(ctx)
    with open_ledger(settings) as ledger:
        sends = operations.sends(ledger, statuses)
    if as_json:
        click.echo(json.dumps([send_json(s) for s in sends], indent=2))
        return
    zone = ZoneInfo(settings.company.timezone)
    if not sends:
        click.echo("Nothing planned yet: run `followthrough tick` to read the calendars.")
        return
    rows = [
        [
            local(s.due, zone),
            status_text(s, zone),
            s.rule,
            ", ".join(_addresses(s.to)),
            s.subject or "",
            s.event_id,
        ]
        for s in sends
    ]
    click.echo(_table(rows, ["due", "status", "rule", "to", "subject", "event"]))
    # Why pending sends wait, in full: a held send's reason names the setting to fix.
    waiting = [s for s in sends if s.status is Status.PLANNED and s.reason]
    if waiting:
        click.echo("\nWaiting:")
        for s in waiting:
            click.echo(f"  {s.key}: {s.reason}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON array, times in UTC.")
@click.option("--key", help="The full life of one send, every state it passed through.")
@click.pass_context
def history(ctx: click.Context, as_json: bool, key: str | None) -> None:
    """What was sent, failed or left unknown by a crash: when, to whom, and why."""
    settings = _settings(ctx)
    zone = ZoneInfo(settings.company.timezone)
    with open_ledger(settings) as ledger:
        moves = ledger.transitions(key) if key else []
        sends = [] if key else operations.history(ledger)
    if key:
        if not moves:
            raise UserError(f"no send with key {key!r} (see `followthrough plan`)")
        if as_json:
            click.echo(
                json.dumps(
                    [
                        {
                            "at": m.at.isoformat().replace("+00:00", "Z"),
                            "from": m.from_status,
                            "to": m.to_status,
                            "reason": m.reason,
                        }
                        for m in moves
                    ],
                    indent=2,
                )
            )
            return
        for m in moves:
            click.echo(
                f"{local(m.at, zone):<26} {m.from_status or '-':>9} -> {m.to_status:<9} {m.reason or ''}"
            )
        return
    if as_json:
        click.echo(json.dumps([send_json(s) for s in sends], indent=2))
        return
    if not sends:
        click.echo("Nothing sent yet.")
        return
    rows = [
        [
            local(s.sent_at or s.updated_at, zone),
            s.status.value,
            s.rule,
            ", ".join(_addresses((*s.to, *s.cc))),
            s.reason or s.subject or "",
        ]
        for s in sends
    ]
    click.echo(_table(rows, ["when", "status", "rule", "to / cc", "subject or reason"]))


# -- preview / templates ------------------------------------------------------------------
@cli.command()
@click.argument("rule")
@click.option("--event", "event_id", help="An event id (or a unique prefix); default: sample data.")
@click.option("--html", is_flag=True, help="Show the HTML part instead of the text part.")
@click.pass_context
def preview(ctx: click.Context, rule: str, event_id: str | None, html: bool) -> None:
    """Render one email as it would go out."""
    from daemon.preview import preview_event, preview_sample

    settings = _settings(ctx)
    if event_id is None:
        headers, rendered = preview_sample(settings, rule)
    else:
        headers, rendered = preview_event(settings, rule, event_id, clock.now())
    for name, value in headers:
        click.echo(f"{name}: {value}")
    click.echo(f"Subject: {rendered.subject}\n")
    click.echo(rendered.html if html else rendered.text)


@cli.group()
def templates() -> None:
    """Check the email templates."""


@templates.command("check")
@click.pass_context
def templates_check(ctx: click.Context) -> None:
    """Render every template against sample data; name the file and line of each error."""
    from daemon.preview import check_templates

    settings = _settings(ctx)
    errors, checked = check_templates(settings)
    for error in errors:
        click.echo(f"error: {error}", err=True)
    if errors:
        click.echo(f"{len(errors)} error(s) in {checked} template(s)", err=True)
        sys.exit(ExitCode.TEMPLATES)
    click.echo(f"{checked} template(s) render cleanly.")


@cli.command()
@click.argument("key")
@click.argument("decision", type=click.Choice(["sent", "resend"]))
@click.pass_context
def resolve(ctx: click.Context, key: str, decision: str) -> None:
    """Settle a send whose outcome a crash left unknown: it did arrive (sent), or send it again.

    A failed send can be sent again too, deliberately, once what made it fail is fixed. Sent again, it
    is due at once, and its retries have a fresh window counted from now.
    """
    with open_ledger(_settings(ctx)) as ledger:
        done = operations.resolve(ledger, key, decision, clock.now())
    click.echo(f"{key}: will be sent again at the next pass." if done.resent else f"{key}: recorded as sent.")


# -- outcome / suppress -------------------------------------------------------------------
@cli.command()
@click.argument("event_id")
@click.argument("result", type=click.Choice(["won", "lost"]))
@click.pass_context
def outcome(ctx: click.Context, event_id: str, result: str) -> None:
    """Record that a closing call was won or lost."""
    engine = _engine(ctx)
    try:
        done = operations.record_outcome(engine, event_id, Outcome(result), clock.now())
        zone = ZoneInfo(engine.settings.company.timezone)
    finally:
        engine.close()
    click.echo(f"Recorded: {done.event_id} {result}.")
    for send in done.planned:
        click.echo(f"  planned {send.rule:<22} {local(send.due, zone)}")
    if done.cancelled:
        click.echo(f"  {done.cancelled} pending send(s) cancelled.")


@cli.group()
def suppress() -> None:
    """The addresses (or whole domains) followthrough never writes to."""


@suppress.command("add")
@click.argument("address")
@click.option("--reason", help="Why, for the record (e.g. 'asked to stop on 3 May').")
@click.pass_context
def suppress_add(ctx: click.Context, address: str, reason: str | None) -> None:
    address = operations.suppression_target(address)
    with open_ledger(_settings(ctx)) as ledger:
        added = ledger.suppress(address, clock.now(), reason)
    click.echo(f"{address} suppressed." if added else f"{address} was already suppressed.")


@suppress.command("remove")
@click.argument("address")
@click.pass_context
def suppress_remove(ctx: click.Context, address: str) -> None:
    address = operations.suppression_target(address)
    with open_ledger(_settings(ctx)) as ledger:
        removed = ledger.unsuppress(address)
    if not removed:
        raise UserError(f"{address} is not on the suppression list")
    click.echo(f"{address} removed from the suppression list.")


@suppress.command("list")
@click.pass_context
def suppress_list(ctx: click.Context) -> None:
    settings = _settings(ctx)
    zone = ZoneInfo(settings.company.timezone)
    with open_ledger(settings) as ledger:
        entries = ledger.suppressed()
    if not entries:
        click.echo("The suppression list is empty.")
    for address, added, reason in entries:
        click.echo(f"{address:<40} {local(added, zone)}  {reason or ''}".rstrip())


# -- auth ---------------------------------------------------------------------------------
@cli.group()
def auth() -> None:
    """Authorize followthrough to read calendars and send mail as an account."""


@auth.command("google")
@click.option("--account", required=True, help="The Google account to act as, e.g. rep@company.com.")
@click.option("--no-browser", is_flag=True, help="Print the sign-in URL instead of opening a browser.")
@click.option("--port", type=int, default=0, help="Local port for Google's redirect (default: any free one).")
@click.option(
    "--lookup",
    is_flag=True,
    help="Also grant gmail.readonly, to confirm a send after a crash instead of asking.",
)
@click.pass_context
def auth_google(ctx: click.Context, account: str, no_browser: bool, port: int, lookup: bool) -> None:
    """The installed-app OAuth flow; stores a refreshable token, readable only by you."""
    from daemon.google.oauth import authorize

    settings = _settings(ctx)
    path = authorize(settings, account, open_browser=not no_browser, port=port, lookup=lookup)
    click.echo(f"Authorized {account}; token stored in {path} (mode 0600).")


# -- init / demo --------------------------------------------------------------------------
@cli.command()
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_context
def init(ctx: click.Context, force: bool) -> None:
    """Write a starter config to --config."""
    from daemon.starter import STARTER_CONFIG

    path: Path = ctx.obj["config"]
    if path.exists() and not force:
        raise UserError(f"{path} already exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    click.echo(
        f"Wrote {path}. Edit [company], [[calendars]] and [mail], then run "
        f"`followthrough --config {path} tick`."
    )


@cli.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Where the demo writes its state.",
)
def demo(directory: Path) -> None:
    """Run one pass on the bundled demo calendar, its events placed around today."""
    from daemon.demo import prepare
    from daemon.engine import Engine

    now = clock.now()
    config_path = prepare(directory, now)
    engine = Engine(config_module.load(config_path))
    try:
        report = engine.tick(now)
        zone = ZoneInfo(engine.settings.company.timezone)
        click.echo(f"Demo calendar: {directory / 'calendar.ics'} (events placed around now)\n")
        print_pass(operations.summarize(engine.ledger, report), zone, upcoming=20)
        outbox = engine.settings.resolve(engine.settings.mail.outbox_dir)
        program = sys.argv[0] if Path(sys.argv[0]).name == "followthrough" else "python -m daemon"
        click.echo(
            f"\nThe emails are in {outbox}/ as .eml files. Try:\n"
            f"  {program} --config {config_path} plan\n"
            f"  {program} --config {config_path} preview closing-prep --event demo-globex"
        )
    finally:
        engine.close()
    if report.failed:
        sys.exit(ExitCode.FAILED)


def main() -> None:
    cli(prog_name="followthrough")
