"""The config file's tables as pydantic models, each key checked where it is declared.

Paths stay as written; `ConfigFile`, the validation context, says where relative ones start.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from daemon import bundled
from daemon.model import Anchor, Audience, Condition, Kind, Person, Sender

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"([+-])?\s*((?:\d+(?:\.\d+)?\s*[wdhms]\s*)+)")
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9-]+)+")


def parse_duration(value: str | int | float) -> timedelta:
    """`90d`, `-1h`, `1d12h`, `30m` or a number of seconds."""
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _DURATION.fullmatch(value.strip().lower())
    if not match:
        raise ValueError(f"not a duration: {value!r} (write e.g. '24h', '-1h', '90d', '30m')")
    seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([wdhms])", match.group(2)))
    return timedelta(seconds=-seconds if match.group(1) == "-" else seconds)


@dataclass(frozen=True)
class ConfigFile:
    """The validation context: the file being read, whose folder relative paths start from."""

    path: Path | None = None  # None: no file, paths start from the working directory

    def resolve(self, path: Path) -> Path:
        if path.is_absolute():
            return path
        return ((self.path.parent.resolve() if self.path else Path.cwd()) / path).resolve()


def config_file(info: ValidationInfo) -> ConfigFile:
    """The file being validated, from the context; none when a model is built on its own."""
    return info.context if isinstance(info.context, ConfigFile) else ConfigFile()


def _parse_duration(value: Any) -> Any:
    """`90d`, `-1h`, … in the file; what is not a string or number, pydantic judges itself."""
    return parse_duration(value) if isinstance(value, str | int | float) else value


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/Berlin')") from None
    return value


def _check_person(value: str) -> str:
    Person.parse(value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
Zone = Annotated[str, AfterValidator(_check_zone)]
Address = Annotated[str, AfterValidator(_check_person)]  # `Name <address>` or a bare address


def _at_least(value: timedelta, minimum: timedelta) -> timedelta:
    if value < minimum:
        raise ValueError(f"must be at least {minimum}")
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CompanyConfig(Section):
    name: str
    domains: list[str] = Field(min_length=1)
    timezone: Zone = "UTC"

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        for domain in value:
            if not DOMAIN.fullmatch(domain.lower()):
                raise ValueError(f"not a domain name: {domain!r}")
        return [d.lower() for d in value]


class CalendarConfig(Section):
    """What every `[[calendars]]` entry has; its `source` says which kind of entry it is."""

    # Where another kind's keys are given, say so rather than only "unknown key": (key, key, source).
    other_keys: ClassVar[tuple[str, str, str]]

    name: str | None = None
    window_past_days: int = Field(30, ge=0)
    window_future_days: int = Field(400, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _no_other_keys(cls, data: Any) -> Any:
        first, second, source = cls.other_keys
        if isinstance(data, dict) and (first in data or second in data):
            raise ValueError(f'{first!r} and {second!r} are for source = "{source}"')
        return data


class IcsCalendar(CalendarConfig):
    other_keys = ("account", "accounts", "google")

    source: Literal["ics"]
    path: Path | None = None
    url: str | None = None
    owner: Address
    timeout: float = Field(30.0, gt=0)
    # A larger file or download is refused (a calendar error), never read whole.
    max_bytes: int = Field(50_000_000, ge=1)

    @model_validator(mode="after")
    def _one_place(self) -> IcsCalendar:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of 'path' or 'url'")
        if self.url and not re.match(r"https?://", self.url):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        return self

    @property
    def label(self) -> str:
        return self.name or self.owner

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


class GoogleCalendar(CalendarConfig):
    """One account's calendar, or many reps' accounts each synced on its own."""

    other_keys = ("path", "url", "ics")

    source: Literal["google"]
    account: Address | None = None
    accounts: list[Address] | None = None
    calendar_id: str = "primary"

    @model_validator(mode="after")
    def _one_way(self) -> GoogleCalendar:
        if (self.account is None) == (not self.accounts):
            raise ValueError("a google calendar needs exactly one of 'account' or 'accounts'")
        return self

    @property
    def owners(self) -> list[str]:
        """The accounts this entry covers: one calendar source each."""
        return [self.account] if self.account else list(self.accounts or ())

    @property
    def label(self) -> str:
        return self.name or ",".join(self.owners)

    def label_for(self, owner: str) -> str:
        """The name of one account's calendar: the entry's name, qualified when it has many."""
        if self.account and not self.accounts:
            return self.label
        return f"{self.name}:{owner}" if self.name else f"{owner}/{self.calendar_id}"


class MicrosoftCalendar(CalendarConfig):
    """One Outlook calendar (a mailbox's default calendar), or many reps' mailboxes each synced on its own."""

    other_keys = ("account", "accounts", "google")

    source: Literal["microsoft"]
    mailbox: Address | None = None
    mailboxes: list[Address] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> MicrosoftCalendar:
        if (self.mailbox is None) == (not self.mailboxes):
            raise ValueError("a microsoft calendar needs exactly one of 'mailbox' or 'mailboxes'")
        return self

    @property
    def owners(self) -> list[str]:
        """The mailboxes this entry covers: one calendar source each."""
        return [self.mailbox] if self.mailbox else list(self.mailboxes or ())

    @property
    def label(self) -> str:
        return self.name or ",".join(self.owners)

    def label_for(self, owner: str) -> str:
        """The name of one mailbox's calendar: the entry's name, qualified when it has many."""
        if self.mailbox and not self.mailboxes:
            return self.label
        return f"{self.name}:{owner}" if self.name else owner


Calendar = Annotated[IcsCalendar | GoogleCalendar | MicrosoftCalendar, Field(discriminator="source")]


class SmtpConfig(Section):
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    timeout: float = Field(30.0, gt=0)
    # A private CA's PEM file, trusted for the mail server's certificate on top of the system's CAs.
    ca_file: Path | None = None

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Checked here, where paths resolve next to the config file, so a typo fails at start-up.
        if value is not None and not config_file(info).resolve(value).is_file():
            raise ValueError(f"no such file: {config_file(info).resolve(value)}")
        return value


GMAIL_MAX_RECIPIENTS = 100  # Gmail's own limit for one message, To and Cc together


class MailConfig(Section):
    transport: Literal["smtp", "outbox", "gmail", "microsoft"] = "outbox"
    from_: Address = Field(alias="from")
    outbox_dir: Path = Path("outbox")
    unsubscribe: str | None = None  # where List-Unsubscribe mail goes; default: the sender
    # After a crash mid-send, prompts to reps may go out twice rather than not at all;
    # customer mail is never resent blindly: a person decides (`followthrough resolve`).
    resend_unknown_prompts: bool = True
    # Customer mail to more people than this is held for a person: a crowded invite must not become
    # one email showing thousands of customers each other's addresses.
    max_recipients: int = Field(50, ge=1)
    smtp: SmtpConfig = SmtpConfig()

    @field_validator("max_recipients")
    @classmethod
    def _within_gmail(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("transport") == "gmail" and value > GMAIL_MAX_RECIPIENTS:
            raise ValueError(f"Gmail sends a message to at most {GMAIL_MAX_RECIPIENTS} recipients")
        return value


class StoreConfig(Section):
    url: str = "sqlite:///followthrough.db"
    busy_timeout: Duration = timedelta(seconds=10)  # SQLite: how long to wait for a lock

    @field_validator("busy_timeout")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        return _at_least(value, timedelta(0))


class TeamConfig(Section):
    implementation: list[Address] = []
    per_rep: dict[Address, list[Address]] = {}
    # What each implementation person does, as the customer is told: "raj@acme.example" = "data engineer".
    roles: dict[Address, str] = {}

    @field_validator("roles")
    @classmethod
    def _roles_of_staff(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        lists = [info.data.get("implementation", []), *info.data.get("per_rep", {}).values()]
        staff = {Person.parse(p).email for people in lists for p in people}
        for who, role in value.items():
            if Person.parse(who).email not in staff:
                raise ValueError(f"{who!r} is not in team.implementation or team.per_rep")
            if not role.strip() or len(role) > 80 or "\n" in role or "\r" in role:
                raise ValueError(f"the role of {who!r} must be one line of 1 to 80 characters")
        return {who: " ".join(role.split()) for who, role in value.items()}


class ScheduleConfig(Section):
    business_hours: str = "09:00-17:00"
    business_days: list[Day] = list(DAYS[:5])
    # Customer mail's zone when neither their events nor [customers] say where they are;
    # "event": no zone of its own (the company's is used).
    business_timezone: str = "event"
    max_late_days: float = Field(3, ge=0)
    poll_interval: Duration = timedelta(minutes=5)
    jitter: float = Field(0.25, ge=0, le=0.5)  # each wait is poll_interval × (1 ± jitter), at random
    claim_lease: Duration = timedelta(minutes=5)  # a dead instance's claims free up after this
    retry_base: Duration = timedelta(minutes=1)  # first wait after a transient failure; doubles

    @field_validator("claim_lease", "retry_base")
    @classmethod
    def _a_second_at_least(cls, value: timedelta) -> timedelta:
        return _at_least(value, timedelta(seconds=1))

    @field_validator("poll_interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=5):
            raise ValueError("poll_interval must be at least 5s")
        return value

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

    @property
    def missing_essentials(self) -> list[str]:
        """What a rule that overrides none needs: the keys it left out."""
        return [k for k in ("kind", "anchor", "offset", "to") if getattr(self, k) is None]


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


GRAPH_ENDPOINT = "https://graph.microsoft.com/v1.0"
LOGIN_ENDPOINT = "https://login.microsoftonline.com"


class MicrosoftConfig(Section):
    """App-only access to Microsoft 365 (Entra ID app registration). The client secret comes only from
    FOLLOWTHROUGH_MICROSOFT_CLIENT_SECRET or _FILE; or a certificate's private key is used instead."""

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    certificate_file: Path | None = None  # PEM: the private key (and, unless a thumbprint is given, the cert)
    certificate_thumbprint: str | None = None  # SHA-1, hex, as the Entra ID portal shows it
    authority: str | None = None  # default https://login.microsoftonline.com/<tenant_id>
    graph_endpoint: str = GRAPH_ENDPOINT
    ca_file: Path | None = None  # a CA bundle trusted, on top of the system's, for authority and Graph
    timeout: float = Field(30.0, gt=0)
    # Exchange Online's limits per mailbox: a send over one waits in the ledger.
    messages_per_minute: int = Field(30, ge=1)
    recipients_per_day: int = Field(10_000, ge=1)
    # After a crash mid-send, look the message up in the sender's Sent Items (needs Mail.ReadBasic.All).
    lookup: bool = True

    @field_validator("authority", "graph_endpoint")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = value.strip().rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"must be an https:// address, got {value!r}")
        return url

    @field_validator("certificate_thumbprint")
    @classmethod
    def _thumbprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned = value.replace(":", "").replace(" ", "").upper()
        if not re.fullmatch(r"[0-9A-F]{40}", cleaned):
            raise ValueError("write the certificate's SHA-1 thumbprint: 40 hex digits")
        return cleaned

    @field_validator("certificate_file", "ca_file")
    @classmethod
    def _file_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and not config_file(info).resolve(value).is_file():
            raise ValueError(f"no such file: {config_file(info).resolve(value)}")
        return value

    @model_validator(mode="after")
    def _thumbprint_with_certificate(self) -> MicrosoftConfig:
        if self.certificate_thumbprint and self.certificate_file is None:
            raise ValueError("certificate_thumbprint needs certificate_file (the private key)")
        return self

    @property
    def authority_url(self) -> str:
        """Where tokens come from: `{authority}/oauth2/v2.0/token`."""
        return self.authority or f"{LOGIN_ENDPOINT}/{self.tenant_id}"


class CustomerConfig(Section):
    """What followthrough should know of one customer, by email domain: `[customers."globex.example"]`."""

    timezone: Zone | None = None  # where they work, when none of their events says so


class TemplatesConfig(Section):
    dir: Path = bundled.TEMPLATES  # the default emails, shipped in the package


def parse_listen(value: str) -> tuple[str, int]:
    """`127.0.0.1:8025`, `[::1]:8025` or `0.0.0.0:8025` as a host and a port (0: any free port)."""
    match = re.fullmatch(r"\s*(?:\[([0-9A-Fa-f:.]+)\]|([^\s:\[\]]+)):(\d{1,5})\s*", value)
    if not match:
        raise ValueError(f"write host:port, e.g. '127.0.0.1:8025' or '[::1]:8025', got {value!r}")
    host, port = match.group(1) or match.group(2), int(match.group(3))
    if port > 65535:
        raise ValueError(f"not a port: {port}")
    return host, port


class WebConfig(Section):
    """The console (`followthrough web`, and `run` when this table is in the file). Its admin token
    comes only from the environment: FOLLOWTHROUGH_WEB_ADMIN_TOKEN or _FILE."""

    listen: str = "127.0.0.1:8025"
    # The public address of this server (usually behind the company's reverse proxy): set, emails carry
    # one-click links under it (outcome, unsubscribe), made with FOLLOWTHROUGH_WEB_SECRET.
    base_url: str | None = None
    link_expiry: Duration = timedelta(days=30)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value.strip()

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = value.strip().rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"not a web address: {value!r} (write e.g. 'https://followthrough.example.com')")
        if any(c in url for c in " <>()[]\\\"'"):
            raise ValueError(f"{value!r}: spaces, brackets and quotes are not allowed in it")
        return url

    @field_validator("link_expiry")
    @classmethod
    def _expiry(cls, value: timedelta) -> timedelta:
        return _at_least(value, timedelta(hours=1))


class LoggingConfig(Section):
    """How the log reads: "text", one readable line an event, or "json", one object a line for log
    shippers (the command line's --log-format wins over it)."""

    format: Literal["text", "json"] = "text"


class MetricsConfig(Section):
    """`run` serves /metrics, /livez and /readyz here when the console is off (with [web], on its port).
    Beyond loopback it needs FOLLOWTHROUGH_METRICS_TOKEN (or _FILE), which scrapers send as a bearer."""

    listen: str = "127.0.0.1:9325"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value.strip()
