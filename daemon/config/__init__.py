"""Configuration: a TOML file plus FOLLOWTHROUGH_* environment variables, validated at start-up.

Every problem is reported at once, each naming the key and the file; secrets come only from the environment.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource

from daemon.config import secrets
from daemon.config.sections import (
    DAYS,
    DOMAIN,
    Calendar,
    CompanyConfig,
    ConfigFile,
    CustomerConfig,
    GoogleCalendar,
    GoogleConfig,
    IcsCalendar,
    LoggingConfig,
    MailConfig,
    MetricsConfig,
    MicrosoftCalendar,
    MicrosoftConfig,
    RuleConfig,
    ScheduleConfig,
    StoreConfig,
    TagsConfig,
    TeamConfig,
    TemplatesConfig,
    WebConfig,
    config_file,
    parse_duration,
    parse_hours,
    parse_listen,
)
from daemon.errors import ConfigError
from daemon.links import Links
from daemon.model import Condition, Person, Rule
from daemon.playbook import BusinessHours, Policy, Tags
from daemon.rules import DEFAULT_RULES

DEFAULT_CONFIG = Path("config/followthrough.toml")
ENV_PREFIX = "FOLLOWTHROUGH_"
# FOLLOWTHROUGH_* variables that are not settings: the config's path, secrets, the dev script's venv.
NOT_SETTINGS = frozenset(
    f"{ENV_PREFIX}{name}"
    for name in (
        "CONFIG",
        "SMTP_PASSWORD",
        "SMTP_PASSWORD_FILE",
        "WEB_ADMIN_TOKEN",
        "WEB_ADMIN_TOKEN_FILE",
        "WEB_SECRET",
        "WEB_SECRET_FILE",
        "MICROSOFT_CLIENT_SECRET",
        "MICROSOFT_CLIENT_SECRET_FILE",
        "METRICS_TOKEN",
        "METRICS_TOKEN_FILE",
        "VENV",
    )
)
_SECRET_KEYS = {"password", "secret", "token", "admin_token", "api_key", "client_secret"}
# Where a secret written in the file belongs instead, by the table it was found in.
_SECRET_VARIABLES = {
    "web": "FOLLOWTHROUGH_WEB_ADMIN_TOKEN or FOLLOWTHROUGH_WEB_SECRET",
    "microsoft": "FOLLOWTHROUGH_MICROSOFT_CLIENT_SECRET",
    "metrics": "FOLLOWTHROUGH_METRICS_TOKEN",
}


class Settings(BaseModel):
    # Defaults are validated too: the checks across sections run without their table.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)
    _file: ConfigFile = PrivateAttr(default_factory=ConfigFile)  # relative paths start at its folder

    company: CompanyConfig
    calendars: list[Calendar] = []
    mail: MailConfig
    store: StoreConfig = StoreConfig()
    team: TeamConfig = TeamConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    tags: TagsConfig = TagsConfig()
    rules: list[RuleConfig] = []
    templates: TemplatesConfig = TemplatesConfig()
    google: GoogleConfig | None = None
    microsoft: MicrosoftConfig | None = None
    customers: dict[str, CustomerConfig] = {}
    web: WebConfig | None = None  # the console; `run` serves it only when the file has this table
    metrics: MetricsConfig | None = None  # probes and metrics; without [web], `run` serves them here
    logging: LoggingConfig = LoggingConfig()

    @field_validator("customers")
    @classmethod
    def _customer_domains(cls, value: dict[str, CustomerConfig]) -> dict[str, CustomerConfig]:
        for domain in value:
            if not DOMAIN.fullmatch(domain.lower()):
                raise ValueError(f'not a domain name: {domain!r} (write [customers."globex.example"])')
        return {domain.lower(): config for domain, config in value.items()}

    @field_validator("rules")
    @classmethod
    def _new_rules_complete(cls, value: list[RuleConfig]) -> list[RuleConfig]:
        """A rule that overrides neither a default one nor one defined above it is new: it needs its
        essentials. Checked in order, so a later entry may override a rule of the file's own."""
        known = {rule.name for rule in DEFAULT_RULES}
        for index, rule in enumerate(value):
            if rule.name not in known and rule.missing_essentials:
                raise PydanticCustomError(
                    "rule_incomplete",
                    "{name} is not a default rule, so it needs {missing}",
                    {"index": index, "name": repr(rule.name), "missing": ", ".join(rule.missing_essentials)},
                )
            known.add(rule.name)
        return value

    @field_validator("calendars")
    @classmethod
    def _unique_calendars(cls, value: list[Calendar]) -> list[Calendar]:
        # One owner's several feeds are told apart without a `name` to write: the first keeps the
        # owner's name (what it was called when it was the only one, so its ledger history stays
        # its own), the others are named after their file or host, plus a digest of the full path
        # or URL where those are alike (two Google feeds both end in basic.ics).
        taken = {c.label for c in value if c.name or not isinstance(c, IcsCalendar)}
        for calendar in value:
            if not isinstance(calendar, IcsCalendar) or calendar.name:
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
        labels = [c.label for c in value]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"two calendars share a name: {', '.join(duplicates)} (set 'name')")
        return value

    @field_validator("google")
    @classmethod
    def _google_configured(cls, value: GoogleConfig | None, info: ValidationInfo) -> GoogleConfig | None:
        # Runs without a [google] table too (settings validate their defaults).
        mail, calendars = info.data.get("mail"), info.data.get("calendars") or []
        uses_google = (mail is not None and mail.transport == "gmail") or any(
            isinstance(c, GoogleCalendar) for c in calendars
        )
        unset = value is None or (value.service_account_file is None and value.token_dir is None)
        if uses_google and unset:
            raise ValueError("Google calendars or mail need [google] service_account_file or token_dir")
        return value

    @field_validator("microsoft")
    @classmethod
    def _microsoft_configured(
        cls, value: MicrosoftConfig | None, info: ValidationInfo
    ) -> MicrosoftConfig | None:
        mail, calendars = info.data.get("mail"), info.data.get("calendars") or []
        uses = (mail is not None and mail.transport == "microsoft") or any(
            isinstance(c, MicrosoftCalendar) for c in calendars
        )
        if uses and value is None:
            raise ValueError("Microsoft calendars or mail need [microsoft] tenant_id and client_id")
        return value

    @model_validator(mode="after")
    def _bind_file(self, info: ValidationInfo) -> Settings:
        self._file = config_file(info)
        return self

    # -- derived values -------------------------------------------------------------------
    def resolve(self, path: Path) -> Path:
        """Paths in the file are relative to the file's own folder."""
        return self._file.resolve(path)

    def google_files(self) -> GoogleConfig | None:
        """[google] with its files found next to the config file, as Google access needs them."""
        if self.google is None:
            return None
        files = ("service_account_file", "token_dir", "client_secrets_file")
        found = {key: self.resolve(path) for key in files if (path := getattr(self.google, key)) is not None}
        return self.google.model_copy(update=found)

    def microsoft_files(self) -> MicrosoftConfig | None:
        """[microsoft] with its files found next to the config file."""
        if self.microsoft is None:
            return None
        files = ("certificate_file", "ca_file")
        found = {
            key: self.resolve(path) for key in files if (path := getattr(self.microsoft, key)) is not None
        }
        return self.microsoft.model_copy(update=found)

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
        password, _ = secrets.secret("SMTP_PASSWORD")
        if self.mail.smtp.username and password is None:
            raise ConfigError(
                "mail.smtp.username is set but no password: set FOLLOWTHROUGH_SMTP_PASSWORD "
                "or FOLLOWTHROUGH_SMTP_PASSWORD_FILE"
            )
        return password

    def web_admin_token(self) -> str | None:
        """The console's admin token, from FOLLOWTHROUGH_WEB_ADMIN_TOKEN or _FILE; None when unset."""
        return secrets.admin_token()

    def links(self) -> Links | None:
        """The links in emails (outcome, unsubscribe) when [web] base_url is set; ConfigError without
        their secret key."""
        if self.web is None or self.web.base_url is None:
            return None
        return Links(self.web.base_url, secrets.link_keys(), self.web.link_expiry)

    def metrics_token(self) -> str | None:
        """The scrapers' token for /metrics, from FOLLOWTHROUGH_METRICS_TOKEN or _FILE; None when unset."""
        return secrets.metrics_token()

    def web_listen(self) -> tuple[str, int]:
        """Where the console listens: [web] listen, or its default without the table."""
        return parse_listen((self.web or WebConfig()).listen)

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
            roles={Person.parse(who).email: role for who, role in self.team.roles.items()},
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
        for override in self.rules:
            base = rules.get(override.name)
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


def _find_secrets(data: Any, where: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Where the file holds a key that looks like a secret, e.g. ("mail", "smtp", "password")."""
    found: list[tuple[str, ...]] = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        if isinstance(key, str) and key.lower() in _SECRET_KEYS:
            found.append((*where, key))
        found += _find_secrets(value, (*where, str(key)))
    return found


def _where(loc: tuple[int | str, ...]) -> str:
    """A key as the file writes it: `calendars.0.path`, `team.per_rep.alice@acme.example`."""
    parts = [part for part in loc if part != "[key]"]  # a table's key, not a value, is wrong
    if len(parts) > 2 and parts[0] == "calendars" and isinstance(parts[1], int):
        del parts[2]  # which union member pydantic tried, i.e. the entry's own `source`
    return ".".join(str(part) for part in parts) or "(top level)"


def _describe(error: Any) -> str:
    where = _where(error["loc"])
    if error["type"] == "rule_incomplete":
        where += f".{error['ctx']['index']}"  # which entry of the list
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
        # Entries told apart by a key (calendars by `source`): that key is what is wrong.
        where += "." + str(error["ctx"]["discriminator"]).strip("'")
        if error["type"] == "union_tag_invalid":
            return f"{where}: must be one of {error['ctx']['expected_tags']}"
    if error["type"] in ("missing", "union_tag_not_found"):
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
    unknown = unknown_environment(os.environ)
    problems = [
        f"{'.'.join(where)}: secrets are read only from the environment "
        f"({_SECRET_VARIABLES.get(where[0], 'FOLLOWTHROUGH_SMTP_PASSWORD')}); remove it from the file"
        for where in secrets
    ]
    problems += [problem for _, problem in unknown]
    # Said once, as a secret or naming the variable, not again as an unknown key.
    named = {".".join(where).lower() for where in [*secrets, *(where for where, _ in unknown)]}
    try:
        # The environment overrides the file, key by key; the file's folder is where paths start.
        values = _merged(raw, _environment())
        settings = Settings.model_validate(values, context=ConfigFile(path))
    except ValidationError as exc:
        problems += [
            _describe(e)
            for e in exc.errors()
            if not (e["type"] == "extra_forbidden" and _where(e["loc"]).lower() in named)
        ]
    if problems:
        listed = "\n  ".join(problems)
        raise ConfigError(f"{path}: invalid configuration:\n  {listed}") from None
    return settings


def _environment() -> dict[str, Any]:
    """The FOLLOWTHROUGH_* variables as settings: FOLLOWTHROUGH_MAIL__SMTP__HOST sets mail.smtp.host.

    Read by pydantic-settings, whose own model would validate without the file as context."""
    settings = cast(type[BaseSettings], Settings)  # the source reads only its fields and config
    return EnvSettingsSource(settings, env_prefix=ENV_PREFIX, env_nested_delimiter="__")()


def _merged(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over`'s values in place of its own, tables merged key by key."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        merged[key] = _merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


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
