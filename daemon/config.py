"""Configuration: a TOML file plus FOLLOWTHROUGH_* environment variables, validated at start-up.

Every problem is reported at once, each naming the key and the file; secrets come only from the environment.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
import types
import typing
import urllib.parse
from collections.abc import Mapping
from datetime import time, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from daemon.errors import ConfigError
from daemon.model import Anchor, Audience, Condition, Kind, Person, Rule, Sender
from daemon.playbook import DEFAULT_RULES, BusinessHours, Policy, Tags

DEFAULT_CONFIG = Path("config/followthrough.toml")
ENV_PREFIX = "FOLLOWTHROUGH_"
# FOLLOWTHROUGH_* variables that are not settings: the config's path, secrets, the dev script's venv.
NOT_SETTINGS = frozenset(
    f"{ENV_PREFIX}{name}" for name in ("CONFIG", "SMTP_PASSWORD", "SMTP_PASSWORD_FILE", "VENV")
)
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_TEMPLATES = PACKAGE_ROOT / "templates" / "email"
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"([+-])?\s*((?:\d+(?:\.\d+)?\s*[wdhms]\s*)+)")
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_SECRET_KEYS = {"password", "secret", "token", "api_key"}


def parse_duration(value: str | int | float) -> timedelta:
    """`90d`, `-1h`, `1d12h`, `30m` or a number of seconds."""
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _DURATION.fullmatch(value.strip().lower())
    if not match:
        raise ValueError(f"not a duration: {value!r} (write e.g. '24h', '-1h', '90d', '30m')")
    seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([wdhms])", match.group(2)))
    return timedelta(seconds=-seconds if match.group(1) == "-" else seconds)


def _duration(value: Any, minimum: timedelta = timedelta(0)) -> Any:
    if isinstance(value, str | int | float):
        value = parse_duration(value)
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/Berlin')") from None
    return value


def _check_person(value: str) -> str:
    Person.parse(value)
    return value


class CompanyConfig(Section):
    name: str
    domains: list[str] = Field(min_length=1)
    timezone: str = "UTC"

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        for domain in value:
            if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9-]+)+", domain.lower()):
                raise ValueError(f"not a domain name: {domain!r}")
        return [d.lower() for d in value]

    _zone = field_validator("timezone")(classmethod(lambda cls, v: _check_zone(v)))


class CalendarConfig(Section):
    source: Literal["ics", "google"]
    name: str | None = None
    # source = "ics"
    path: Path | None = None
    url: str | None = None
    owner: str | None = None
    # source = "google": one account, or many reps' accounts each synced on its own
    account: str | None = None
    accounts: list[str] | None = None
    calendar_id: str = "primary"
    window_past_days: int = Field(30, ge=0)
    window_future_days: int = Field(400, ge=1)
    timeout: float = Field(30.0, gt=0)
    # source = "ics": a larger file or download is refused (a calendar error), never read whole.
    max_bytes: int = Field(50_000_000, ge=1)

    @model_validator(mode="after")
    def _fits_its_source(self) -> CalendarConfig:
        for person in (self.owner, self.account, *(self.accounts or ())):
            if person is not None:
                _check_person(person)
        if self.source == "ics":
            if (self.path is None) == (self.url is None):
                raise ValueError("give exactly one of 'path' or 'url'")
            if self.url and not re.match(r"https?://", self.url):
                raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
            if self.owner is None:
                raise ValueError("an ics calendar needs 'owner'")
            if self.account or self.accounts:
                raise ValueError("'account' and 'accounts' are for source = \"google\"")
        else:
            if (self.account is None) == (not self.accounts):
                raise ValueError("a google calendar needs exactly one of 'account' or 'accounts'")
            if self.path or self.url:
                raise ValueError("'path' and 'url' are for source = \"ics\"")
        return self

    @property
    def owners(self) -> list[str]:
        """The accounts this entry covers: one calendar source each."""
        if self.source == "ics":
            return [self.owner or ""]
        return [self.account] if self.account else list(self.accounts or ())

    @property
    def default_name(self) -> str:
        """What tells this feed from its owner's others: the file's name, or the URL's host and .ics
        file name (never the rest of a URL, where private feeds keep their secret)."""
        if self.path is not None:
            return self.path.stem
        parts = urllib.parse.urlsplit(self.url or "")
        tail = parts.path.rstrip("/").rsplit("/", 1)[-1]
        host = parts.hostname or ""
        return f"{host}/{tail[:-4]}" if tail.lower().endswith(".ics") and len(tail) > 4 else host

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.source == "ics":
            return self.owner or ""
        return ",".join(self.owners)

    def label_for(self, owner: str) -> str:
        """The name of one account's calendar: the entry's name, qualified when it has many."""
        if self.source == "ics" or (self.account and not self.accounts):
            return self.label
        return f"{self.name}:{owner}" if self.name else f"{owner}/{self.calendar_id}"


class SmtpConfig(Section):
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    timeout: float = Field(30.0, gt=0)
    # A private CA's PEM file, trusted for the mail server's certificate on top of the system's CAs.
    ca_file: Path | None = None


GMAIL_MAX_RECIPIENTS = 100  # Gmail's own limit for one message, To and Cc together


class MailConfig(Section):
    transport: Literal["smtp", "outbox", "gmail"] = "outbox"
    from_: str = Field(alias="from")
    outbox_dir: Path = Path("outbox")
    unsubscribe: str | None = None  # where List-Unsubscribe mail goes; default: the sender
    # After a crash mid-send, prompts to reps may go out twice rather than not at all;
    # customer mail is never resent blindly: a person decides (`followthrough resolve`).
    resend_unknown_prompts: bool = True
    # Customer mail to more people than this is held for a person: a crowded invite must not become
    # one email showing thousands of customers each other's addresses.
    max_recipients: int = Field(50, ge=1)
    smtp: SmtpConfig = SmtpConfig()

    _from = field_validator("from_")(classmethod(lambda cls, v: _check_person(v)))

    @field_validator("max_recipients")
    @classmethod
    def _within_gmail(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("transport") == "gmail" and value > GMAIL_MAX_RECIPIENTS:
            raise ValueError(f"Gmail sends a message to at most {GMAIL_MAX_RECIPIENTS} recipients")
        return value


class StoreConfig(Section):
    url: str = "sqlite:///followthrough.db"
    busy_timeout: timedelta = timedelta(seconds=10)  # SQLite: how long to wait for a lock

    _busy = field_validator("busy_timeout", mode="before")(classmethod(lambda cls, v: _duration(v)))


class TeamConfig(Section):
    implementation: list[str] = []
    per_rep: dict[str, list[str]] = {}

    @field_validator("implementation")
    @classmethod
    def _people(cls, value: list[str]) -> list[str]:
        return [_check_person(v) for v in value]

    @field_validator("per_rep")
    @classmethod
    def _per_rep(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for rep, people in value.items():
            _check_person(rep)
            for person in people:
                _check_person(person)
        return value


class ScheduleConfig(Section):
    business_hours: str = "09:00-17:00"
    business_days: list[Day] = list(DAYS[:5])
    # Customer mail's zone when neither their events nor [customers] say where they are;
    # "event": no zone of its own (the company's is used).
    business_timezone: str = "event"
    max_late_days: float = Field(3, ge=0)
    poll_interval: timedelta = timedelta(minutes=5)
    jitter: float = Field(0.25, ge=0, le=0.5)  # each wait is poll_interval × (1 ± jitter), at random
    claim_lease: timedelta = timedelta(minutes=5)  # a dead instance's claims free up after this
    retry_base: timedelta = timedelta(minutes=1)  # first wait after a transient failure; doubles

    _lease = field_validator("claim_lease", "retry_base", mode="before")(
        classmethod(lambda cls, v: _duration(v, minimum=timedelta(seconds=1)))
    )

    @field_validator("poll_interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> timedelta:
        interval = parse_duration(value) if isinstance(value, str | int | float) else value
        if interval < timedelta(seconds=5):
            raise ValueError("poll_interval must be at least 5s")
        return interval

    @field_validator("business_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("business_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return value if value == "event" else _check_zone(value)


def parse_hours(value: str) -> tuple[time, time]:
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", value)
    if not match:
        raise ValueError(f"write business hours as 'HH:MM-HH:MM', got {value!r}")
    h1, m1, h2, m2 = map(int, match.groups())
    if (h2, m2) == (24, 0):
        end = time.max
    elif h2 < 24 and m2 < 60:
        end = time(h2, m2)
    else:
        raise ValueError(f"not a time of day: {h2:02}:{m2:02}")
    if h1 > 23 or m1 > 59:
        raise ValueError(f"not a time of day: {h1:02}:{m1:02}")
    start = time(h1, m1)
    if start >= end:
        raise ValueError(f"business hours end before they start: {value!r}")
    return start, end


class TagsConfig(Section):
    closing: list[str] = ["#closing"]
    kickoff: list[str] = ["#kickoff"]
    won: list[str] = ["#won", "#signed"]
    lost: list[str] = ["#lost"]
    deal_prefix: str = "#deal:"


class RuleConfig(Section):
    """Overrides a default rule by name, or adds a new one (then kind, anchor, offset, to)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    enabled: bool | None = None
    kind: Kind | None = None
    when: Condition | None = None
    anchor: Anchor | None = None
    offset: str | None = None
    to: list[Audience] | None = None
    cc: list[Audience] | None = None
    sender: Sender | None = None
    business_hours: bool | None = None
    max_late: str | None = None
    stop_on_reengagement: bool | None = None
    template: str | None = None

    @field_validator("offset", "max_late")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class GoogleConfig(Section):
    service_account_file: Path | None = None  # domain-wide delegation: one key for the whole team
    token_dir: Path | None = None  # OAuth: <token_dir>/<account>.json, written by `followthrough auth`
    client_secrets_file: Path | None = None  # the OAuth client ("Desktop app") for `followthrough auth`
    api_endpoint: str | None = None  # a root URL serving /calendar/v3/… and /gmail/v1/…
    timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> GoogleConfig:
        if self.service_account_file is not None and self.token_dir is not None:
            raise ValueError("give one of 'service_account_file' or 'token_dir', not both")
        if self.api_endpoint and not re.match(r"https?://", self.api_endpoint):
            raise ValueError(f"api_endpoint must start with http:// or https://, got {self.api_endpoint!r}")
        return self


class CustomerConfig(Section):
    """What followthrough should know of one customer, by email domain: `[customers."globex.example"]`."""

    timezone: str | None = None  # where they work, when none of their events says so

    _zone = field_validator("timezone")(classmethod(lambda cls, v: v if v is None else _check_zone(v)))


class TemplatesConfig(Section):
    dir: Path = BUNDLED_TEMPLATES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FOLLOWTHROUGH_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )
    toml_path: ClassVar[Path | None] = None

    company: CompanyConfig
    calendars: list[CalendarConfig] = []
    mail: MailConfig
    store: StoreConfig = StoreConfig()
    team: TeamConfig = TeamConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    tags: TagsConfig = TagsConfig()
    rules: list[RuleConfig] = []
    templates: TemplatesConfig = TemplatesConfig()
    google: GoogleConfig | None = None
    customers: dict[str, CustomerConfig] = {}

    @field_validator("customers")
    @classmethod
    def _customer_domains(cls, value: dict[str, CustomerConfig]) -> dict[str, CustomerConfig]:
        for domain in value:
            if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9-]+)+", domain.lower()):
                raise ValueError(f'not a domain name: {domain!r} (write [customers."globex.example"])')
        return {domain.lower(): config for domain, config in value.items()}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file is the base; the environment overrides it.
        toml = TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path)
        return (init_settings, env_settings, toml)

    @model_validator(mode="after")
    def _google_configured(self) -> Settings:
        uses_google = self.mail.transport == "gmail" or any(c.source == "google" for c in self.calendars)
        if uses_google and (
            self.google is None
            or (self.google.service_account_file is None and self.google.token_dir is None)
        ):
            raise ValueError(
                "google: Google calendars or mail need [google] service_account_file or token_dir"
            )
        return self

    @model_validator(mode="after")
    def _ca_file_exists(self) -> Settings:
        # Checked here, where paths resolve next to the config file, so a typo fails at start-up.
        ca_file = self.mail.smtp.ca_file
        if ca_file is not None and not self.resolve(ca_file).is_file():
            raise ValueError(f"mail.smtp.ca_file: no such file: {self.resolve(ca_file)}")
        return self

    @model_validator(mode="after")
    def _unique_calendars(self) -> Settings:
        # One owner's several feeds are told apart without a `name` to write: the first keeps the
        # owner's name (what it was called when it was the only one, so its ledger history stays
        # its own), the others are named after their file or host, plus a digest of the full path
        # or URL where those are alike (two Google feeds both end in basic.ics).
        taken = {c.label for c in self.calendars if c.name or c.source != "ics"}
        for calendar in self.calendars:
            if calendar.source != "ics" or calendar.name:
                continue
            if calendar.label not in taken:
                taken.add(calendar.label)
                continue
            name = f"{calendar.owner}:{calendar.default_name}"
            if name in taken:
                digest = hashlib.blake2b(
                    str(calendar.path or calendar.url).encode(), digest_size=3
                ).hexdigest()
                name = f"{name}-{digest}"
            calendar.name = name
            taken.add(name)
        labels = [c.label for c in self.calendars]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"two calendars share a name: {', '.join(duplicates)} (set 'name')")
        return self

    # -- derived values -------------------------------------------------------------------
    base_dir: ClassVar[Path] = Path(".")

    def resolve(self, path: Path) -> Path:
        """Paths in the file are relative to the file's own folder."""
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def google_files(self) -> GoogleConfig | None:
        """[google] with its files found next to the config file, as Google access needs them."""
        if self.google is None:
            return None
        files = ("service_account_file", "token_dir", "client_secrets_file")
        found = {key: self.resolve(path) for key in files if (path := getattr(self.google, key)) is not None}
        return self.google.model_copy(update=found)

    @property
    def store_url(self) -> str:
        url = self.store.url
        prefix = "sqlite:///"
        relative = not url.startswith((prefix + "/", prefix + "file:"))
        if url.startswith(prefix) and relative and ":memory:" not in url:
            return prefix + str(self.resolve(Path(url[len(prefix) :])))
        return url

    @property
    def sender(self) -> Person:
        return Person.parse(self.mail.from_)

    def smtp_password(self) -> str | None:
        """The SMTP password, from FOLLOWTHROUGH_SMTP_PASSWORD or the file FOLLOWTHROUGH_SMTP_PASSWORD_FILE
        names; read when the SMTP transport is built, so commands that send nothing never need it."""
        password = os.environ.get("FOLLOWTHROUGH_SMTP_PASSWORD")
        secret_file = os.environ.get("FOLLOWTHROUGH_SMTP_PASSWORD_FILE")
        if password is None and secret_file:
            try:
                password = Path(secret_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"FOLLOWTHROUGH_SMTP_PASSWORD_FILE: cannot read {secret_file}: {exc.strerror}"
                ) from None
        if self.mail.smtp.username and password is None:
            raise ConfigError(
                "mail.smtp.username is set but no password: set FOLLOWTHROUGH_SMTP_PASSWORD "
                "or FOLLOWTHROUGH_SMTP_PASSWORD_FILE"
            )
        return password

    @property
    def unsubscribe_address(self) -> str:
        return Person.parse(self.mail.unsubscribe).email if self.mail.unsubscribe else self.sender.email

    def policy(self) -> Policy:
        start, end = parse_hours(self.schedule.business_hours)
        return Policy(
            company_domains=frozenset(self.company.domains),
            company_timezone=self.company.timezone,
            tags=Tags(
                closing=tuple(self.tags.closing),
                kickoff=tuple(self.tags.kickoff),
                won=tuple(self.tags.won),
                lost=tuple(self.tags.lost),
                deal_prefix=self.tags.deal_prefix,
            ),
            rules=self._rules(),
            implementation=tuple(Person.parse(p) for p in self.team.implementation),
            implementation_by_rep={
                Person.parse(rep).email: tuple(Person.parse(p) for p in people)
                for rep, people in self.team.per_rep.items()
            },
            hours=BusinessHours(
                start=start,
                end=end,
                days=frozenset(DAYS.index(d) for d in self.schedule.business_days),
                timezone=None
                if self.schedule.business_timezone == "event"
                else self.schedule.business_timezone,
            ),
            max_late=timedelta(days=self.schedule.max_late_days),
            customer_timezones={d: c.timezone for d, c in self.customers.items() if c.timezone},
        )

    def _rules(self) -> tuple[Rule, ...]:
        rules = {rule.name: rule for rule in DEFAULT_RULES}
        for i, override in enumerate(self.rules):
            base = rules.get(override.name)
            if base is None:
                missing = [k for k in ("kind", "anchor", "offset", "to") if getattr(override, k) is None]
                if missing:
                    raise ConfigError(
                        f"{self.toml_path}: rules[{i}] ({override.name!r}) is not a default rule, "
                        f"so it needs {', '.join(missing)}"
                    )
            fields: dict[str, Any] = {
                "kind": override.kind,
                "condition": override.when,
                "anchor": override.anchor,
                "offset": parse_duration(override.offset) if override.offset else None,
                "to": tuple(override.to) if override.to is not None else None,
                "cc": tuple(override.cc) if override.cc is not None else None,
                "sender": override.sender,
                "business_hours": override.business_hours,
                "max_late": parse_duration(override.max_late) if override.max_late else None,
                "stop_on_reengagement": override.stop_on_reengagement,
                "template": override.template,
                "enabled": override.enabled,
            }
            given = {k: v for k, v in fields.items() if v is not None}
            if base is None:
                given.setdefault("condition", Condition.ALWAYS)
                rules[override.name] = Rule(name=override.name, **given)
            else:
                rules[override.name] = Rule(**{**base.__dict__, **given})
        return tuple(rules.values())


def _find_secrets(data: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else key
            if key.lower() in _SECRET_KEYS:
                found.append(where)
            found += _find_secrets(value, where)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += _find_secrets(value, f"{path}[{i}]")
    return found


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def load(path: Path | str | None = None) -> Settings:
    """Read and validate the config; raise ConfigError listing every problem with its key."""
    path = Path(path or os.environ.get("FOLLOWTHROUGH_CONFIG") or DEFAULT_CONFIG)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (write a starter one with `followthrough init`)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    secrets = _find_secrets(raw)
    if secrets:
        raise ConfigError(
            f"{path}: {', '.join(secrets)}: secrets are read only from the environment "
            "(FOLLOWTHROUGH_SMTP_PASSWORD); remove them from the file"
        )
    bound = type("BoundSettings", (Settings,), {"toml_path": path, "base_dir": path.parent.resolve()})
    unknown = unknown_environment(os.environ)
    problems = [problem for _, problem in unknown]
    try:
        settings: Settings = bound()
        settings.policy()
    except ValidationError as exc:
        named = {where for where, _ in unknown}  # said once, naming the variable, not a file key
        problems += [
            _describe(e)
            for e in exc.errors()
            if not (e["type"] == "extra_forbidden" and tuple(str(p).lower() for p in e["loc"]) in named)
        ]
    if problems:
        listed = "\n  ".join(problems)
        raise ConfigError(f"{path}: invalid configuration:\n  {listed}") from None
    return settings


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The section model a field holds (`GoogleConfig | None` holds GoogleConfig), if any."""
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    for candidate in typing.get_args(annotation) if optional else (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def unknown_environment(environ: Mapping[str, str]) -> list[tuple[tuple[str, ...], str]]:
    """FOLLOWTHROUGH_* variables that set nothing, with the key path each names: a typo in the
    environment is reported like one in the file, instead of being silently ignored."""
    problems = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NOT_SETTINGS:
            continue
        model: type[BaseModel] | None = Settings
        parts = upper[len(ENV_PREFIX) :].lower().split("__")
        for i, part in enumerate(parts):
            if model is None:
                break  # inside a list, a table of tables or a value: pydantic judges the rest
            fields = {(f.alias or name).lower(): f for name, f in model.model_fields.items()}
            if part not in fields:
                close = difflib.get_close_matches(part, fields, n=1)
                meant = "__".join([*parts[:i], *close[:1], *parts[i + 1 :]]).upper()
                hint = f"; did you mean {ENV_PREFIX}{meant}?" if close else ""
                problems.append((tuple(parts[: i + 1]), f"{variable} (environment): unknown setting{hint}"))
                break
            model = _model_of(fields[part].annotation)
    return problems
