"""The command line: the user's door to followthrough.

Commands call an operation (daemon/operations.py, the engine) and print what it returns. Exit codes
are `daemon.errors.ExitCode`: 0 fine, 1 something failed or needs a decision, 2 bad usage, 3 invalid
config, 4 template errors, 5 the ledger cannot be used, 130 stopped hard by a second signal.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from daemon import __version__, clock, display, logs, operations
from daemon import config as config_module
from daemon.config import Settings
from daemon.errors import ExitCode, LedgerError, UserError
from daemon.ledger import Ledger
from daemon.ledger import open_ledger as open_store
from daemon.model import Outcome, Status

if TYPE_CHECKING:
    from daemon.web.server import ThreadedServer


def _settings(ctx: click.Context) -> Settings:
    settings = config_module.load(ctx.obj["config"])
    if ctx.obj.get("log_format") is None:  # the command line's --log-format wins over the file
        logs.use(settings.logging.format)
    return settings


@contextmanager
def open_ledger(settings: Settings) -> Iterator[Ledger]:
    """The ledger for one command, closed when it is done."""
    with open_store(settings.store_url, settings.store.busy_timeout) as ledger:
        yield ledger


def _engine(ctx: click.Context, watch_templates: bool = False) -> Any:
    from daemon.engine import Engine

    return Engine(_settings(ctx), watch_templates=watch_templates)


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
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    help='The log on stderr: "text", a readable line an event (default), or "json", an object a line '
    "(else [logging] format).",
)
@click.version_option(__version__, prog_name="followthrough")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, verbose: int, log_format: logs.Format | None) -> None:
    """followthrough: the around-the-signature playbook, run from the calendar."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path
    ctx.obj["log_format"] = log_format
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logs.setup(level, log_format or "text")


# -- run / tick ---------------------------------------------------------------------------
@cli.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon: sync on a timer, send when due, until SIGTERM or Ctrl-C.

    With a [web] table in the config, it serves the console too (see `followthrough web`), and on its
    port /metrics, /livez and /readyz; without it, a [metrics] table serves those at its `listen`.
    Under systemd (Type=notify) it tells systemd when it is ready, how each pass went, and pings its
    watchdog.
    """
    from daemon.health import Health
    from daemon.metrics import Metrics
    from daemon.scheduler import Daemon, serve
    from daemon.systemd import Notifier, Systemd

    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger().setLevel(logging.INFO)  # a daemon reports its progress
    engine = _engine(ctx, watch_templates=True)
    settings = engine.settings
    calendars = [source.name for source in engine.sources]
    metrics = Metrics((rule.name for rule in engine.policy.rules), calendars)
    health = Health(calendars, settings.schedule.poll_interval)
    daemon = Daemon(engine, observers=[metrics, health])
    server: ThreadedServer | None = None
    try:
        if settings.web is not None or settings.metrics is not None:
            from daemon.web.probes import Probes
            from daemon.web.server import ConsoleServer, ProbeServer

            watch = Probes(metrics, health)
            # Bound before the daemon starts: a taken port or a missing token stops start-up.
            if settings.web is not None:
                server = ConsoleServer(settings, watch=watch).start()
            else:
                server = ProbeServer(settings, watch).start()
        systemd = Systemd(Notifier.from_environment(), engine.ledger, daemon.healthy)
        serve(daemon, systemd if systemd.notifier.enabled else None)
    finally:
        if server is not None:
            server.stop()
        engine.close()


@cli.command()
@click.option(
    "--listen", metavar="HOST:PORT", help="Where to listen, instead of [web] listen (127.0.0.1:8025)."
)
@click.pass_context
def web(ctx: click.Context, listen: str | None) -> None:
    """Serve the console: the schedule, the history, the templates with a live preview.

    Beyond loopback it needs an admin token: FOLLOWTHROUGH_WEB_ADMIN_TOKEN or _FILE.
    """
    from daemon.web.server import ConsoleServer, serve_console

    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger().setLevel(logging.INFO)  # say where it listens, and when it stops
    console = ConsoleServer(_settings(ctx), listen)
    serve_console(console)


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
    from daemon.progress import on_terminal

    engine = _engine(ctx)
    try:
        engine.accept_removals(accept)
        engine.progress = on_terminal()  # a line on stderr while it reads and plans, if a terminal
        now = clock.now()
        report = engine.tick(now)
        zone = ZoneInfo(engine.settings.company.timezone)
        display.print_pass(operations.summarize(engine.ledger, report), zone)
    finally:
        engine.close()
    if report.failed:
        sys.exit(ExitCode.FAILED)


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
        warnings = operations.template_warnings(ledger)
    if as_json:
        click.echo(json.dumps([display.send_json(s) for s in sends], indent=2))
        return
    for warning in warnings:
        click.echo(f"Template {warning}.")
    zone = ZoneInfo(settings.company.timezone)
    if not sends:
        click.echo("Nothing planned yet: run `followthrough tick` to read the calendars.")
        return
    click.echo(display.plan_table(sends, zone))
    # Why pending sends wait, in full: a held send's reason names the setting to fix.
    waiting = [s for s in sends if s.status is Status.PLANNED and s.reason]
    if waiting:
        click.echo("\nWaiting:")
        for s in waiting:
            click.echo(f"  {s.key}: {s.reason}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON array, times in UTC.")
@click.option("--key", help="The full life of one send, every state it passed through.")
@click.option(
    "--event",
    "event_id",
    help="Around one event (an id or a unique prefix): its outcomes, "
    "where each came from (which link), and every move of its sends.",
)
@click.pass_context
def history(ctx: click.Context, as_json: bool, key: str | None, event_id: str | None) -> None:
    """What was sent, failed or left unknown by a crash: when, to whom, and why."""
    settings = _settings(ctx)
    zone = ZoneInfo(settings.company.timezone)
    if event_id is not None:
        with open_ledger(settings) as ledger:
            around = operations.event_history(ledger, event_id)
        if as_json:
            click.echo(json.dumps(display.event_history_json(around), indent=2))
        else:
            lines = display.event_history_text(around, zone)
            click.echo("\n".join(lines) if lines else f"Nothing yet for {around.event_id}.")
        return
    with open_ledger(settings) as ledger:
        moves = ledger.transitions(key) if key else []
        sends = [] if key else operations.history(ledger)
    if key:
        if not moves:
            raise UserError(f"no send with key {key!r} (see `followthrough plan`)")
        if as_json:
            click.echo(json.dumps(display.transitions_json(moves), indent=2))
        else:
            click.echo("\n".join(display.transitions_text(moves, zone)))
        return
    if as_json:
        click.echo(json.dumps([display.send_json(s) for s in sends], indent=2))
    elif not sends:
        click.echo("Nothing sent yet.")
    else:
        click.echo(display.history_table(sends, zone))


# -- preview / templates ------------------------------------------------------------------
@cli.command()
@click.argument("rule")
@click.option("--event", "event_id", help="An event id (or a unique prefix); default: sample data.")
@click.option("--html", is_flag=True, help="Show the HTML part instead of the text part.")
@click.option(
    "--send-to",
    "send_to",
    metavar="ADDRESS",
    help="Send it to this address only (in the company's domains), subject marked [TEST]; "
    "recorded in history as a test.",
)
@click.pass_context
def preview(ctx: click.Context, rule: str, event_id: str | None, html: bool, send_to: str | None) -> None:
    """Render one email as it would go out, or send it as a test to one colleague."""
    from daemon.preview import preview_event, preview_sample

    settings = _settings(ctx)
    if send_to is not None:
        if html:
            raise click.UsageError("--html shows a preview; a test sends both parts")
        from daemon.testsend import send_test

        done = send_test(settings, rule, event_id, send_to, clock.now())
        click.echo(f'sent a test of {rule} to {done.address} (subject "{done.subject}")')
        if done.note:
            click.echo(f"note: {done.note}")
        return
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
    """Check the email templates and list what they can use."""


@templates.command("check")
@click.pass_context
def templates_check(ctx: click.Context) -> None:
    """Render every template and rep override for every rule that uses it, against sample data;
    name the file and line of each error."""
    from daemon.preview import check_templates

    settings = _settings(ctx)
    problems, checked = check_templates(settings)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        click.echo(f"{len(problems)} error(s) in {checked} template file(s)", err=True)
        sys.exit(ExitCode.TEMPLATES)
    click.echo(f"{checked} template file(s) render cleanly.")


@templates.command("vars")
@click.argument("rule", required=False)
@click.option("--json", "as_json", is_flag=True, help="A JSON array of {name, description, example}.")
@click.pass_context
def templates_vars(ctx: click.Context, rule: str | None, as_json: bool) -> None:
    """Every variable a template can use, with what it is and its value for RULE's sample deal."""
    from daemon.preview import variables

    found = variables(_settings(ctx), rule)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(display.variables_table(found))


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
        click.echo(f"  planned {send.rule:<22} {display.local(send.due, zone)}")
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
    how = "by hand (suppress add)" + (f": {reason}" if reason else "")
    with open_ledger(_settings(ctx)) as ledger:
        added = operations.suppress(ledger, [address], clock.now(), how)
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
        click.echo(f"{address:<40} {display.local(added, zone)}  {reason or ''}".rstrip())


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


# -- doctor -------------------------------------------------------------------------------
@cli.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check the set-up, sending nothing: the config, each calendar, the mail transport, the templates,
    the ledger and the time-zone data, one line each with the fix. Exits 0 when every check passes,
    1 when one fails (warnings do not count)."""
    from daemon.doctor import diagnose

    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger().setLevel(logging.CRITICAL)  # what the logs would say, the checks say
    checks = []
    for check in diagnose(ctx.obj["config"], clock.now()):
        checks.append(check)
        for line in display.check_lines(check):
            click.echo(line)
    click.echo(display.doctor_summary(checks))
    if any(check.failed for check in checks):
        sys.exit(ExitCode.FAILED)


# -- init / demo --------------------------------------------------------------------------
@cli.command()
@click.option("--force", is_flag=True, help="Overwrite an existing config file (edited templates are kept).")
@click.pass_context
def init(ctx: click.Context, force: bool) -> None:
    """Write a starter config to --config, and a copy of the default templates beside it."""
    from daemon import bundled
    from daemon.starter import start

    started = start(ctx.obj["config"], force)
    click.echo(f"Wrote {started.config}.")
    if not (started.unchanged or started.kept):
        click.echo(f"Copied the default templates into {started.templates}/ for you to edit.")
    else:
        added = f"{len(started.written)} added, " if started.written else ""
        same = len(started.unchanged)
        click.echo(f"Templates in {started.templates}/: {added}{same} the same as the default.")
    if started.kept:
        click.echo(
            f"Kept {len(started.kept)} that differ from the default, not overwritten: "
            f"{', '.join(started.kept)} (the defaults are in {bundled.TEMPLATES}/)."
        )
    click.echo(
        f"Edit [company], [[calendars]] and [mail], then run `followthrough --config {started.config} tick`."
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
    from daemon.progress import on_terminal

    now = clock.now()
    config_path = prepare(directory, now)
    engine = Engine(config_module.load(config_path))
    try:
        engine.progress = on_terminal()
        report = engine.tick(now)
        zone = ZoneInfo(engine.settings.company.timezone)
        click.echo(f"Demo calendar: {directory / 'calendar.ics'} (events placed around now)\n")
        display.print_pass(operations.summarize(engine.ledger, report), zone, upcoming=20)
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
