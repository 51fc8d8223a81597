"""What `followthrough init` writes: a starter config (every key, its default and a word on it) and,
next to it, a copy of the default templates for the admin to edit, never overwriting an edited one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from daemon import bundled
from daemon.errors import UserError

TEMPLATES = "templates"  # the admin's copy of the templates, beside the config file that names it

STARTER_CONFIG = """\
# followthrough configuration. Paths are relative to this file.
# Environment variables override any key: FOLLOWTHROUGH_<SECTION>__<KEY>, e.g.
# FOLLOWTHROUGH_SCHEDULE__POLL_INTERVAL=2m. Secrets come only from the environment:
# FOLLOWTHROUGH_SMTP_PASSWORD (or FOLLOWTHROUGH_SMTP_PASSWORD_FILE).

[company]
name = "Example Inc"
domains = ["example.com"]          # organizers from these domains are your reps
timezone = "Europe/London"         # for showing times, all-day and floating events

[[calendars]]
source = "ics"
path = "calendars/sales.ics"       # or: url = "https://…/basic.ics"
owner = "rep@example.com"
# name = "sales"                   # defaults to the owner
# window_past_days = 30
# window_future_days = 400
# max_bytes = 50_000_000           # a larger file or download is refused, never read whole

[mail]
transport = "outbox"               # "smtp" to really send
from = "Followthrough <followthrough@example.com>"   # sender of prompts to reps
outbox_dir = "outbox"
# unsubscribe = "sales-ops@example.com"  # where List-Unsubscribe requests go; default: from
# max_recipients = 50              # customer mail to more people is held for a person

[mail.smtp]
host = "localhost"
port = 587
starttls = true
# ssl = false                      # true for implicit TLS (port 465)
# username = "followthrough"       # password: FOLLOWTHROUGH_SMTP_PASSWORD
# ca_file = "/etc/ssl/private-ca.pem"  # a private CA for the mail server's certificate

[store]
url = "sqlite:///followthrough.db"

[team]
implementation = ["Ivy Chen <ivy@example.com>"]   # the first is introduced as the lead
# [team.per_rep]
# "rep@example.com" = ["Raj Patel <raj@example.com>"]
# [team.roles]                     # what each does, as the customer is told
# "raj@example.com" = "data engineer"

# [customers."globex.example"]     # where a customer works, when their events don't say
# timezone = "America/New_York"

[schedule]
business_hours = "09:00-17:00"     # customer mail goes out only in these hours, in the customer's
business_days = ["mon", "tue", "wed", "thu", "fri"]    # zone: their event's, kickoff's, [customers]'s…
business_timezone = "event"        # …else this IANA name ("event": the company's zone)
max_late_days = 3                  # never send more than this late
poll_interval = "5m"
jitter = 0.25

[tags]
closing = ["#closing"]
kickoff = ["#kickoff"]
won = ["#won", "#signed"]
lost = ["#lost"]
deal_prefix = "#deal:"

[templates]
dir = "templates"                  # your copy of the default emails, made by `followthrough init`

# Override a default rule by name, or add your own:
# [[rules]]
# name = "closing-prep"
# offset = "-48h"
#
# [[rules]]
# name = "lost-next-year"
# enabled = false
"""


@dataclass
class Started:
    """What `init` did: the config it wrote, and the template files by what became of them."""

    config: Path
    templates: Path
    written: list[str] = field(default_factory=list)  # copied in (paths relative to `templates`)
    kept: list[str] = field(default_factory=list)  # there already and not the default: left alone
    unchanged: list[str] = field(default_factory=list)  # there already, the same as the default


def start(config: Path, force: bool) -> Started:
    """Write the starter config at `config` and the default templates beside it. Raises UserError."""
    if config.exists() and not force:
        raise UserError(f"{config} already exists (use --force to overwrite it; edited templates are kept)")
    started = Started(config, config.parent / TEMPLATES)
    try:
        if started.templates.exists() and not started.templates.is_dir():
            raise UserError(f"{started.templates} is a file: init puts the templates there; move it away")
        # The templates first, so that a config is never left naming a folder that is not there.
        for name, default in bundled.walk(bundled.resource("templates")):
            mine = started.templates / name
            text = default.read_bytes()
            if not mine.exists():
                mine.parent.mkdir(parents=True, exist_ok=True)
                mine.write_bytes(text)
                started.written.append(name)
            elif mine.read_bytes() == text:
                started.unchanged.append(name)
            else:
                started.kept.append(name)
        config.write_text(STARTER_CONFIG, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or config}: {exc.strerror or exc}") from None
    return started
