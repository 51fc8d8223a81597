"""The template folder as files: which are templates, rep overrides, and a Markdown file's front matter.

Read whole into a dict, so that what renders is a snapshot: a half-saved file never renders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import Problem, TemplateError

MARKDOWN, JINJA = ".md", ".jinja"
REPS = "reps"  # reps/<rep address>/<rule>.md replaces <rule>.md for that rep's deals
UNREADABLE = "\x00unreadable: "  # stands for a file that could not be read, and says why
FRONT_MATTER_KEYS = ("subject", "description")


@dataclass(frozen=True)
class FrontMatter:
    subject: str
    subject_line: int
    description: str
    body: str  # the file with its front matter blanked out, so that line numbers stay the file's


def front_matter(file: str, source: str) -> FrontMatter:
    """`---`, `subject: ...`, optional `description: ...`, `---`, then the body. Raises TemplateError."""
    if source.startswith(UNREADABLE):
        raise TemplateError(Problem(file, None, source.removeprefix(UNREADABLE)))
    lines = re.split(r"\r\n|\r|\n", source)  # the line ends Jinja counts, so that line numbers agree
    if not lines or lines[0].strip() != "---":
        raise TemplateError(
            Problem(
                file, 1, "must start with front matter: a '---' line, 'subject: ...', and another '---' line"
            )
        )
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
    if end is None:
        raise TemplateError(Problem(file, 1, "the front matter has no closing '---' line"))
    fields: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(lines[1:end], 2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, colon, value = line.partition(":")
        key = key.strip().lower()
        if not colon or key not in FRONT_MATTER_KEYS:
            raise TemplateError(
                Problem(
                    file,
                    number,
                    f"unknown front matter line {line.strip()!r}: "
                    f"only {' and '.join(FRONT_MATTER_KEYS)} are allowed",
                )
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        fields[key] = (value, number)
    if not fields.get("subject", ("", 0))[0]:
        raise TemplateError(Problem(file, 1, "the front matter needs a 'subject:' line"))
    body = "\n" * (end + 1) + "\n".join(lines[end + 1 :]) + "\n"
    subject, subject_line = fields["subject"]
    return FrontMatter(subject, subject_line, fields.get("description", ("", 0))[0], body)


def read_folder(directory: Path) -> dict[str, str]:
    """Every template file in the folder and its rep overrides, by path relative to the folder."""
    found: dict[str, str] = {}
    for level in [directory, *sorted((directory / REPS).glob("*"))]:
        if not level.is_dir():
            continue
        for path in sorted(level.iterdir()):
            # Editors' swap, backup and lock files are not templates.
            if path.name.startswith((".", "#")) or path.suffix not in (MARKDOWN, JINJA, ".html"):
                continue
            try:
                # utf-8-sig: a byte-order mark (Windows Notepad writes one) is not part of the template.
                found[path.relative_to(directory).as_posix()] = path.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                found[path.relative_to(directory).as_posix()] = UNREADABLE + str(exc)
    return found
