"""`followthrough doctor`: whether a set-up will work, found without sending anything.

One check a concern (config, each calendar, the way mail goes out, templates, ledger, time-zone data),
each a `Check` with its verdict and fix; one failing never stops the others. The CLI prints them.
"""

from __future__ import annotations

import importlib
import time
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from daemon import config
from daemon.backends import Wiring, make_sources, make_transport
from daemon.config import Settings
from daemon.config.sections import GoogleCalendar
from daemon.errors import ConfigError, FollowthroughError, SourceError
from daemon.ledger.health import check_ledger
from daemon.model import Person, Sender
from daemon.playbook import classify, event_kind
from daemon.preview import check_templates
from daemon.sources import CalendarSource


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but look at it; does not fail the doctor
    FAIL = "FAIL"
    SKIPPED = "skip"  # could not be checked because something it needs failed


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report: what was checked, the verdict, what was found, and the fix."""

    name: str  # "config", "calendar alice", "mail", "templates", "ledger", "time zones"
    verdict: Verdict
    found: str
    fix: str | None = None
    details: tuple[str, ...] = ()  # one problem a line, when there are several (config, templates)

    @property
    def failed(self) -> bool:
        return self.verdict is Verdict.FAIL


@dataclass
class _Seen:
    """What one check learns that a later one needs: who mail goes out as."""

    reps: dict[str, None] = field(default_factory=dict)  # organizers of the company's tagged calls


# Checks that need a config that loads; said skipped, not silently left out, when it does not.
NEEDS_CONFIG = ("calendars", "mail", "templates", "ledger")


def diagnose(config_path: Path, now: datetime) -> Iterator[Check]:
    """Every check, in order, each as soon as it is done (a slow calendar shows the ones before it)."""
    try:
        settings = config.load(config_path)
    except ConfigError as exc:
        yield _config_failure(config_path, str(exc))
        for name in NEEDS_CONFIG:
            yield Check(name, Verdict.SKIPPED, "not checked: it needs the config to load")
        yield _guarded("time zones", lambda: check_zones(None))
        return
    yield _config_ok(config_path, settings)
    seen = _Seen()
    yield from _guarded_many("calendars", lambda: check_calendars(settings, now, seen))
    yield from _guarded_many("mail", lambda: check_mail(settings, seen))
    yield _guarded("templates", lambda: check_template_files(settings))
    yield _guarded("ledger", lambda: check_store(settings))
    yield _guarded("time zones", lambda: check_zones(settings))


def _guarded(name: str, run: Callable[[], Check]) -> Check:
    """A check's own result, or its failure as a line: a surprise in one check never stops the rest."""
    try:
        return run()
    except FollowthroughError as exc:
        return Check(name, Verdict.FAIL, str(exc))
    except Exception as exc:
        return Check(name, Verdict.FAIL, f"unexpected error: {type(exc).__name__}: {exc}")


def _guarded_many(name: str, run: Callable[[], Iterator[Check]]) -> Iterator[Check]:
    try:
        yield from run()
    except FollowthroughError as exc:
        yield Check(name, Verdict.FAIL, str(exc))
    except Exception as exc:
        yield Check(name, Verdict.FAIL, f"unexpected error: {type(exc).__name__}: {exc}")


# -- config -------------------------------------------------------------------------------------
def _config_failure(path: Path, message: str) -> Check:
    head, *problems = message.split("\n")
    if not problems:  # no file, or not TOML: the message says what to do
        return Check("config", Verdict.FAIL, head)
    return Check(
        "config",
        Verdict.FAIL,
        f"{head.rstrip(':')}: {len(problems)} problem(s)",
        fix=f"correct each key named, in {path} or its FOLLOWTHROUGH_* variable",
        details=tuple(p.strip() for p in problems),
    )


def _config_ok(path: Path, settings: Settings) -> Check:
    count = len(settings.calendars)
    entries = f"{count} calendar entr{'y' if count == 1 else 'ies'}"
    found = f"{path}: {entries}, transport {settings.mail.transport}"
    return Check("config", Verdict.OK, found)


# -- calendars ----------------------------------------------------------------------------------
def check_calendars(settings: Settings, now: datetime, seen: _Seen) -> Iterator[Check]:
    """Each calendar read whole into memory, as a first sync would: no cursor, no ledger, nothing kept."""
    sources = make_sources(Wiring(settings))  # no ledger: nothing is stored
    if not sources:
        yield Check(
            "calendars",
            Verdict.WARN,
            "none configured: nothing will ever be planned",
            fix="add a [[calendars]] entry",
        )
        return
    for source in sources:
        yield _check_calendar(source, settings, now, seen)


def _check_calendar(source: CalendarSource, settings: Settings, now: datetime, seen: _Seen) -> Check:
    name = f"calendar {source.name}"
    started = time.monotonic()
    try:
        batch = source.sync(None, now)
    except SourceError as exc:
        return Check(name, Verdict.FAIL, _unquoted(str(exc), source.name), fix=_calendar_fix(source))
    except FollowthroughError as exc:
        return Check(name, Verdict.FAIL, str(exc), fix=_calendar_fix(source))
    except Exception as exc:
        return Check(name, Verdict.FAIL, f"unexpected error: {type(exc).__name__}: {exc}")
    took = time.monotonic() - started
    policy = settings.policy()
    calls = 0
    for event in batch.upserted:
        classified = classify(event, policy)
        if classified is not None and event_kind(event, policy.tags) is not None:
            calls += 1
            seen.reps[classified.rep.email] = None
    found = (
        f"{_where(source)}: read in {_duration(took)}, {_count(len(batch.upserted), 'event')} in the window "
        f"({_count(calls, 'closing or kickoff call')} organized by the company)"
    )
    if batch.unusable:
        return Check(
            name,
            Verdict.FAIL,
            f"{found}; {_count(len(batch.unusable), 'event')} it could not read",
            fix="correct those events in the calendar (the others are read; `tick` exits 1 until then)",
            details=tuple(batch.problems),
        )
    if batch.problems:
        return Check(name, Verdict.WARN, f"{found}; read with remarks", details=tuple(batch.problems))
    return Check(name, Verdict.OK, found)


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _where(source: CalendarSource) -> str:
    """Where a calendar is read from, secrets left out (a feed URL's path and query hold them)."""
    return str(getattr(source, "where", source.name))


def _unquoted(message: str, name: str) -> str:
    """A source's message without its leading `calendar 'NAME': `: the line already names it."""
    return message.removeprefix(f"calendar {name!r}: ")


def _calendar_fix(source: CalendarSource) -> str | None:
    path, url = getattr(source, "path", None), getattr(source, "url", None)
    if path is not None:
        return f"check the path of calendar {source.name!r} (relative to the config's folder) and the file"
    if url is not None:
        return f"check the url of calendar {source.name!r}, and that this machine can reach it"
    return None  # Google's messages name the account and what to do


# -- mail ---------------------------------------------------------------------------------------
def senders(settings: Settings, reps: dict[str, None]) -> list[str]:
    """Who mail goes out as: the service sender, and when a rule sends as the rep, the reps (the
    organizers of the company's calls just read, and the owners of the calendars in its domains)."""
    found = [settings.sender.email]
    policy = settings.policy()
    if any(rule.enabled and rule.sender is Sender.REP for rule in policy.rules):
        found += list(reps)
        for calendar in settings.calendars:
            owners = calendar.owners if isinstance(calendar, GoogleCalendar) else [calendar.owner]
            found += [
                person.email
                for person in (Person.parse(owner) for owner in owners)
                if policy.is_internal(person.domain)
            ]
    return list(dict.fromkeys(found))


def check_mail(settings: Settings, seen: _Seen) -> Iterator[Check]:
    """The transport reached and logged in to, each sender's grant, the outbox writable: nothing sent."""
    transport = make_transport(Wiring(settings))
    try:
        found = transport.check(senders(settings, seen.reps))
    finally:
        transport.close()
    for ready in found:
        if ready.problem is not None:
            yield Check("mail", Verdict.FAIL, f"{ready.subject}: {ready.problem}")
        elif ready.warning is not None:
            yield Check("mail", Verdict.WARN, f"{ready.subject}: {ready.found}", details=(ready.warning,))
        else:
            yield Check("mail", Verdict.OK, f"{ready.subject}: {ready.found}")


# -- templates, ledger --------------------------------------------------------------------------
def check_template_files(settings: Settings) -> Check:
    """As `templates check`: every template and rep's version rendered against the sample deal."""
    problems, checked = check_templates(settings)
    folder = settings.resolve(settings.templates.dir)
    if problems:
        return Check(
            "templates",
            Verdict.FAIL,
            f"{len(problems)} error(s) in {checked} template file(s) in {folder}",
            fix="correct each file at the line named; `followthrough preview RULE` shows one email",
            details=tuple(str(p) for p in problems),
        )
    return Check("templates", Verdict.OK, f"{checked} template file(s) in {folder} render cleanly")


def check_store(settings: Settings) -> Check:
    """The ledger reached, its schema version read, a write made and rolled back."""
    health = check_ledger(settings.store_url, settings.store.busy_timeout)
    if health.problem is not None:
        return Check(
            "ledger",
            Verdict.FAIL,
            f"{health.where}: {health.problem}",
            fix="followthrough records every send there: it must be reachable and writable ([store] url)",
        )
    version = f"schema version {health.version}, " if health.version is not None else ""
    return Check("ledger", Verdict.OK, f"{health.where}: {version}{health.note}")


# -- time zones ---------------------------------------------------------------------------------
def check_zones(settings: Settings | None) -> Check:
    """The time-zone database: where it comes from, its version, and that every zone named loads."""
    names = ["UTC"]
    if settings is not None:
        names.append(settings.company.timezone)
        if settings.schedule.business_timezone != "event":
            names.append(settings.schedule.business_timezone)
        names += [c.timezone for c in settings.customers.values() if c.timezone]
    names = list(dict.fromkeys(names))
    missing = []
    for name in names:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            missing.append(name)
    origin = tzdata_origin(names[-1])
    not_read = "" if settings is not None else " (the config's zones not checked: it did not load)"
    if missing:
        return Check(
            "time zones",
            Verdict.FAIL,
            f"{origin}: cannot load {', '.join(missing)}{not_read}",
            fix="install the time-zone database: the tzdata package (pip install tzdata), or the system's",
        )
    return Check("time zones", Verdict.OK, f"{origin}: {', '.join(names)} load{not_read}")


def tzdata_origin(key: str) -> str:
    """Which time-zone database zoneinfo reads `key` from, and its IANA version: the system's first,
    then the tzdata package."""
    for folder in map(Path, zoneinfo.TZPATH):
        if (folder / key).is_file():
            return f"tzdata {_system_version(folder)} ({folder})"
    try:
        package = importlib.import_module("tzdata")  # untyped: asked by name
    except ImportError:
        return "no time-zone database"
    return f"tzdata {getattr(package, 'IANA_VERSION', 'of unknown version')} (the tzdata package)"


def _system_version(folder: Path) -> str:
    """The version in the first line of the folder's tzdata.zi (`# version 2025b`), if it has one."""
    try:
        with (folder / "tzdata.zi").open(encoding="utf-8") as file:
            first = file.readline()
    except OSError:
        return "of unknown version"
    return first.removeprefix("# version").strip() or "of unknown version"
