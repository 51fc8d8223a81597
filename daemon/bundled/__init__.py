"""The files that ship inside the package: the default email templates, and the demo's config and calendar.

Read through importlib.resources, so they are found wherever the package is: a wheel in site-packages,
an editable install of the repository, or a zip (then copied out once, for the life of the process).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path


def resource(name: str) -> Traversable:
    """`templates` or `demo`, as importlib.resources sees it."""
    return files(__name__) / name


def walk(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    """Every file under `folder`, with its path relative to it (`/`-separated), in name order."""
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            if entry.name != "__pycache__":
                yield from walk(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry


def folder(name: str) -> Path:
    """A real folder holding the bundled `name`: the package's own when it is on disk (always so for pip
    and pipx installs), else a temporary copy removed at exit (`as_file` copies folders only from 3.12)."""
    found = resource(name)
    if isinstance(found, Path):
        return found
    copy = Path(tempfile.mkdtemp(prefix=f"followthrough-{name}-"))
    atexit.register(shutil.rmtree, copy, ignore_errors=True)
    for relative, file in walk(found):
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        (copy / relative).write_bytes(file.read_bytes())
    return copy


TEMPLATES = folder("templates")  # the default emails: `[templates] dir` when the config names none
DEMO = resource("demo")  # followthrough.toml and calendar.ics, which `followthrough demo` copies
