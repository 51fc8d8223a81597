"""The real-world calendar files beside the repository (`../shared/corpus/ics/`), as test parameters."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "ics"
FILES = (
    sorted(
        p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md"
    )
    if CORPUS.is_dir()
    else []
)
