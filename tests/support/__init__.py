"""What the test folders share: real local servers, calendar and config writers, the CLI launcher.

One module a concern (`ports`, `ics`, `feed`, `config`, `smtp`, `cli`, `world`, `google_fake`, `gmail_fake`,
`private_ca`); unit, integration and end-to-end tests all import from here, never from each other.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the project: where `python -m daemon` runs
TEMPLATES_DIR = ROOT / "templates" / "email"
