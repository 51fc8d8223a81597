"""Email templates: one Markdown file per email (or a Jinja file with three blocks), sandboxed and strict.

The files are read into a snapshot; `reload` takes an edit only once it passes the check, so a broken edit
leaves the last good version running.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import FunctionLoader, StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2 import TemplateError as JinjaError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from daemon import clock, email_parts
from daemon.errors import Problem, TemplateError
from daemon.model import clean_line
from daemon.template_files import JINJA, MARKDOWN, REPS, UNREADABLE, FrontMatter, front_matter, read_folder

log = logging.getLogger(__name__)

LAYOUT = "_layout.html"  # the HTML around every Markdown email's body
BLOCKS = ("subject", "text", "html")
SETTLE_SECONDS = 2.0  # a file saved this recently is read again at the next poll


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


class Templates:
    """The accepted version of every template file; rendering always uses it."""

    def __init__(
        self, directory: Path, defaults: Path | None = None, files: dict[str, str] | None = None
    ) -> None:
        self.directory = directory.resolve()
        if not self.directory.is_dir():
            raise TemplateError(f"template folder not found: {self.directory}")
        self.defaults = defaults  # where the bundled layout is, for a folder without its own
        self._refused: dict[str, tuple[str, Problem]] = {}  # file → (digest of the refused text, why)
        self.problems: list[Problem] | None = None  # what the check finds in the accepted files, once run
        self._adopt(read_folder(self.directory) if files is None else files)

    def _adopt(self, files: dict[str, str]) -> None:
        self.files = files
        self._front: dict[str, FrontMatter] = {}
        self._subjects: dict[str, Template] = {}  # each file's subject line, compiled once
        self._subject_names: dict[str, frozenset[str] | None] = {}
        self._plain = self._environment(autoescape=False)
        self._html = self._environment(autoescape=True)
        self._markdown = self._environment(autoescape=False, finalize=email_parts.escape)
        self._markdown.filters.update(email_parts.FILTERS)

    def _environment(
        self, autoescape: bool, finalize: Callable[[Any], Any] | None = None
    ) -> ImmutableSandboxedEnvironment:
        env = ImmutableSandboxedEnvironment(
            loader=FunctionLoader(self._source),
            undefined=StrictUndefined,
            autoescape=autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            **({"finalize": finalize} if finalize else {}),
        )
        env.filters.update(when=when, day=day, names=names)
        return env

    def _source(self, name: str) -> tuple[str, str, Callable[[], bool]] | None:
        if name in self.files:
            source = self.files[name]
            if source.startswith(UNREADABLE):
                raise TemplateError(Problem(name, None, source.removeprefix(UNREADABLE)))
            if name.endswith(MARKDOWN) and not Path(name).name.startswith("_"):  # `_piece.md`: a part
                source = self.front(name).body
            return source, str(self.directory / name), lambda: True
        if name == LAYOUT and self.defaults and (self.defaults / LAYOUT).is_file():
            return (
                (self.defaults / LAYOUT).read_text(encoding="utf-8"),
                str(self.defaults / LAYOUT),
                lambda: True,
            )
        return None

    # -- what is there ------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The rules' templates in the folder itself (overrides and `_` files left out)."""
        return sorted(
            {
                Path(f).stem
                for f in self.files
                if "/" not in f and not f.startswith("_") and f.endswith((MARKDOWN, JINJA))
            }
        )

    def overrides(self) -> list[tuple[str, str]]:
        """(rep address, template name) of every rep override."""
        return sorted(
            {
                (f.split("/")[1], Path(f).stem)
                for f in self.files
                if f.startswith(REPS + "/") and f.endswith((MARKDOWN, JINJA))
            }
        )

    def conflicts(self) -> list[Problem]:
        """A rule with both a Markdown and a Jinja file at the same level: which one is meant?"""
        problems = []
        for file in sorted(self.files):
            stem = file.removesuffix(MARKDOWN)
            if file.endswith(MARKDOWN) and stem + JINJA in self.files:
                problems.append(
                    Problem(
                        stem + JINJA,
                        None,
                        f"two templates for {Path(stem).name}: "
                        f"{Path(file).name} and {Path(stem).name}{JINJA}; keep one",
                    )
                )
        return problems

    def find(self, name: str, rep: str | None = None) -> str | None:
        """The file `name` renders from for `rep`'s deals (relative to the folder), or None."""
        levels = [f"{REPS}/{folder}/" for folder in self._rep_folders(rep)] + [""]
        for level in levels:
            found = [
                level + name + suffix for suffix in (MARKDOWN, JINJA) if level + name + suffix in self.files
            ]
            if len(found) > 1:
                raise TemplateError(
                    Problem(
                        found[1],
                        None,
                        f"two templates for {name}: "
                        f"{Path(found[0]).name} and {Path(found[1]).name}; keep one",
                    )
                )
            if found:
                return found[0]
        return None

    def _rep_folders(self, rep: str | None) -> list[str]:
        if not rep:
            return []
        return sorted(
            {
                f.split("/")[1]
                for f in self.files
                if f.startswith(REPS + "/") and f.split("/")[1].lower() == rep.lower()
            }
        )

    def front(self, file: str) -> FrontMatter:
        if file not in self._front:
            self._front[file] = front_matter(file, self.files[file])
        return self._front[file]

    def description(self, name: str) -> str:
        file = self.find(name)
        if file and file.endswith(MARKDOWN):
            try:
                return self.front(file).description
            except TemplateError:
                return ""
        return ""

    # -- rendering ----------------------------------------------------------------------------------------

    def render(self, name: str, context: dict[str, Any], rep: str | None = None) -> Rendered:
        """The email's three parts; TemplateError names the file and line at fault."""
        file = self._file(name, rep)
        if file.endswith(JINJA):
            parts = self._blocks(file, context, BLOCKS)
            return Rendered(
                self._subject(file, parts["subject"]),
                parts["text"].strip() + "\n",
                parts["html"].strip() + "\n",
            )
        subject = self._markdown_subject(file, context)
        body = self._run(file, lambda: self._markdown.get_template(file).render(context))
        tokens = email_parts.parse(body)
        document = self._run(
            LAYOUT,
            lambda: self._html.get_template(LAYOUT).render(
                {
                    **context,
                    "subject": email_parts.unlink(subject),
                    "body": Markup(email_parts.html_body(tokens)),
                }
            ),
        )
        return Rendered(subject, email_parts.plain_text(tokens), email_parts.inline_css(document))

    def render_subject(self, name: str, context: dict[str, Any], rep: str | None = None) -> str:
        """Only the subject: what `plan` shows, at a fraction of the cost."""
        file = self._file(name, rep)
        if file.endswith(JINJA):
            return self._subject(file, self._blocks(file, context, ("subject",))["subject"])
        return self._markdown_subject(file, context)

    def subject_names(self, name: str, rep: str | None = None) -> frozenset[str] | None:
        """The variables a template's subject line reads, so that `plan` works out only those; None when
        that cannot be told (it includes or extends another template, or does not parse): all of them."""
        try:
            file = self.find(name, rep)
        except TemplateError:  # the rendering reports it
            return None
        if file is None:
            return None
        if file not in self._subject_names:
            self._subject_names[file] = self._names(file)
        return self._subject_names[file]

    def _names(self, file: str) -> frozenset[str] | None:
        try:
            # A .jinja file's subject is one of its blocks: the whole file's variables are a safe superset.
            source = self.files[file] if file.endswith(JINJA) else self.front(file).subject
            tree = self._plain.parse(source)
        except Exception:  # the rendering says what is wrong, naming the file and line
            return None
        if any(True for _ in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport))):
            return None
        return frozenset(meta.find_undeclared_variables(tree))

    def _file(self, name: str, rep: str | None) -> str:
        file = self.find(name, rep)
        if file is None:
            raise TemplateError(
                Problem(name + MARKDOWN, None, f"template not found: no {name}{MARKDOWN} in {self.directory}")
            )
        return file

    def _markdown_subject(self, file: str, context: dict[str, Any]) -> str:
        front = self.front(file)
        try:
            if file not in self._subjects:
                self._subjects[file] = self._plain.from_string(front.subject)
            text = self._subjects[file].render(context)
        except Exception as exc:
            message = exc.message if isinstance(exc, JinjaError) and exc.message else str(exc)
            raise TemplateError(Problem(file, front.subject_line, f"subject: {message}")) from None
        return self._subject(file, text)

    @staticmethod
    def _subject(file: str, text: str) -> str:
        subject = clean_line(text, 250)
        if not subject:
            raise TemplateError(Problem(file, None, "the subject renders empty"))
        return subject

    def _blocks(self, file: str, context: dict[str, Any], blocks: tuple[str, ...]) -> dict[str, str]:
        parts = {}
        for block in blocks:
            env = self._html if block == "html" else self._plain
            template = self._run(file, lambda env=env: env.get_template(file))  # type: ignore[misc]
            if block not in template.blocks:
                raise TemplateError(Problem(file, None, f"has no {{% block {block} %}}"))
            parts[block] = self._run(file, lambda t=template, b=block: _block(t, b, context))  # type: ignore[misc]
        return parts

    def _run(self, file: str, work: Callable[[], Any]) -> Any:
        """Jinja's and the sandbox's errors as a TemplateError naming the template file and line at fault."""
        try:
            return work()
        except TemplateError:
            raise
        except TemplateSyntaxError as exc:
            raise TemplateError(
                Problem(self._relative(exc.filename) or file, exc.lineno, exc.message or str(exc))
            ) from None
        except Exception as exc:
            message = (
                exc.message if isinstance(exc, JinjaError) and exc.message else f"{type(exc).__name__}: {exc}"
            )
            where, line = self._where(exc)
            raise TemplateError(Problem(where or file, line, message)) from None

    def _relative(self, filename: str | None) -> str | None:
        if not filename:
            return None
        for root in (self.directory, self.defaults):
            if root and filename.startswith(str(root) + "/"):
                return filename[len(str(root)) + 1 :]
        return None

    def _where(self, exc: BaseException) -> tuple[str | None, int | None]:
        """The innermost traceback frame in a template file: Jinja rewrote it to the line in the file."""
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if (file := self._relative(frame.filename)) is not None:
                return file, frame.lineno
        return None, None

    # -- hot reload ---------------------------------------------------------------------------------------

    def reload(self, check: Callable[[Templates], list[Problem]]) -> list[Problem]:
        """Take the edits of the folder that pass `check`; keep the last good version of the others.

        All the edits at once when together they pass (a change that spans two files), else each on
        its own. A file saved in the last moments is left for the next poll: it may be half written.
        Returns the problems of the edits refused this time (each once, until something changes).
        """
        on_disk = read_folder(self.directory)
        now = clock.now().timestamp()
        changed = [
            f
            for f in sorted(set(on_disk) | set(self.files))
            if on_disk.get(f) != self.files.get(f) and not _settling(self.directory / f, now)
        ]
        self._refused = {f: r for f, r in self._refused.items() if f in changed}
        if self.problems is None:
            self.problems = check(self)
        digests = {f: hashlib.sha256((on_disk.get(f) or "").encode()).hexdigest() for f in changed}
        if all(f in self._refused and self._refused[f][0] == digests[f] for f in changed):
            return []  # nothing new since the last refusal (or no change at all)
        if not self._take(check, changed, on_disk):
            return []
        refused_now: list[Problem] = []
        for file in changed:
            new = self._take(check, [file], on_disk)
            if not new:
                continue
            problem = new[0]
            if self._refused.get(file) != (digests[file], problem):
                refused_now.append(problem)
                log.error("template %s refused, the last good version stays in use: %s", file, problem)
            self._refused[file] = (digests[file], problem)
        return refused_now

    def _with(self, on_disk: dict[str, str], files: list[str]) -> dict[str, str]:
        candidate = dict(self.files)
        for file in files:
            if file in on_disk:
                candidate[file] = on_disk[file]
            else:
                candidate.pop(file, None)
        return candidate

    def _take(
        self, check: Callable[[Templates], list[Problem]], files: list[str], on_disk: dict[str, str]
    ) -> list[Problem]:
        """Adopt these files' edits if the check finds nothing new with them; else what it found."""
        candidate = self._with(on_disk, files)
        problems = check(Templates(self.directory, self.defaults, candidate))
        new = [p for p in problems if p not in set(self.problems or [])]
        if new:
            return new
        self._adopt(candidate)
        self.problems = problems
        for file in files:
            self._refused.pop(file, None)
            log.info("template %s %s", file, "reloaded" if file in on_disk else "removed")
        return []

    def stale(self) -> dict[str, Problem]:
        """The files whose edit was refused: they run on their last good version."""
        return {file: problem for file, (_, problem) in self._refused.items()}


def _settling(path: Path, now: float) -> bool:
    """Saved in the last moments (or saving now): an editor may not have written all of it yet."""
    try:
        return abs(now - path.stat().st_mtime) < SETTLE_SECONDS
    except OSError:
        return False  # gone: a deletion, taken as it is


def _block(template: Template, block: str, context: dict[str, Any]) -> str:
    try:
        return "".join(template.blocks[block](template.new_context(context)))
    except Exception:
        # Jinja rewrites the traceback to the template's own lines, as `render` would.
        template.environment.handle_exception()
