"""Email templates: Jinja2 in a sandbox, strict about undefined names, HTML autoescaped.

One file per rule, `<template>.jinja`, with three blocks: `subject`, `text` and `html`.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateSyntaxError
from jinja2 import TemplateError as JinjaError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from daemon.errors import TemplateError
from daemon.model import clean_line

SUFFIX = ".jinja"
BLOCKS = ("subject", "text", "html")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def when(value: datetime | None) -> str:
    """`Tuesday 1 December 2026, 10:00 CET`: a moment as the reader reads it (already in their zone)."""
    if value is None:
        return ""
    return f"{value:%A} {value.day} {value:%B %Y, %H:%M} {value.tzname() or ''}".rstrip()


def day(value: datetime | None) -> str:
    return f"{value:%A} {value.day} {value:%B}" if value else ""


def names(people: Iterable[Any], key: str = "name") -> str:
    """`Ann, Bob and Cy` from a list of people; those without a value (no name) are left out."""
    items = [text for p in people if (text := str(p[key] if isinstance(p, dict) else p))]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _environment(directory: Path, autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, day=day, names=names)
    return env


def _location(exc: BaseException, template: Template | None) -> str:
    """`file.jinja, line 12` for an error, mapping the compiled code's line back to the template's."""
    if isinstance(exc, TemplateSyntaxError):
        return f"{Path(exc.filename or exc.name or '?').name}, line {exc.lineno}"
    if template is None or template.filename is None:
        return "?"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == template.filename]
    name = Path(template.filename).name
    if not frames or frames[-1].lineno is None:
        return name
    return f"{name}, line {template.get_corresponding_lineno(frames[-1].lineno)}"


class Templates:
    """The templates in one folder; the plain and the autoescaping views share the files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        if not self.directory.is_dir():
            raise TemplateError(f"template folder not found: {self.directory}")
        self._plain = _environment(self.directory, autoescape=False)
        self._html = _environment(self.directory, autoescape=True)

    def path(self, name: str) -> Path:
        return self.directory / (name + SUFFIX)

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*" + SUFFIX) if not p.name.startswith("_"))

    def render(self, name: str, context: dict[str, Any]) -> Rendered:
        """Render one template's three parts; TemplateError names the file and line at fault."""
        parts = self._blocks(name, context, BLOCKS)
        return Rendered(
            subject=self._subject(name, parts["subject"]),
            text=parts["text"].strip() + "\n",
            html=parts["html"].strip() + "\n",
        )

    def render_subject(self, name: str, context: dict[str, Any]) -> str:
        """Only the subject: what `plan` shows, at a fraction of the cost."""
        return self._subject(name, self._blocks(name, context, ("subject",))["subject"])

    @staticmethod
    def _subject(name: str, text: str) -> str:
        subject = clean_line(text, 250)
        if not subject:
            raise TemplateError(f"{name + SUFFIX}: the subject renders empty")
        return subject

    def _blocks(self, name: str, context: dict[str, Any], blocks: tuple[str, ...]) -> dict[str, str]:
        if not self.path(name).is_file():
            raise TemplateError(f"template not found: {self.path(name)}")
        template: Template | None = None
        try:
            parts = {}
            for block in blocks:
                env = self._html if block == "html" else self._plain
                template = env.get_template(name + SUFFIX)
                if block not in template.blocks:
                    raise TemplateError(f"{name + SUFFIX}: has no {{% block {block} %}}")
                parts[block] = "".join(template.blocks[block](template.new_context(context)))
        except TemplateError:
            raise
        except JinjaError as exc:
            raise TemplateError(f"{_location(exc, template)}: {exc.message or exc}") from None
        except Exception as exc:  # a filter or a sandbox refusal: still the template's fault
            raise TemplateError(f"{_location(exc, template)}: {type(exc).__name__}: {exc}") from None
        return parts
