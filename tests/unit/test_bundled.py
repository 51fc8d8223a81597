"""The files shipped in the package (daemon/bundled) and what `init` makes of them (daemon/starter.py)."""

from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path

import pytest

from daemon import bundled
from daemon.config import load
from daemon.errors import UserError
from daemon.starter import STARTER_CONFIG, TEMPLATES, start
from tests.support import TEMPLATES_DIR


def test_the_bundled_files_are_read_through_the_package() -> None:
    # Given the package as imported here
    # When its bundled files are listed
    templates = [name for name, _ in bundled.walk(bundled.resource("templates"))]
    demo = [name for name, _ in bundled.walk(bundled.DEMO)]

    # Then they are the repository's default templates and the demo's config and calendar
    assert templates == sorted(p.name for p in TEMPLATES_DIR.iterdir())
    assert "closing-prep.md" in templates and "_layout.html" in templates
    assert demo == ["calendar.ics", "followthrough.toml"]
    assert bundled.TEMPLATES == TEMPLATES_DIR


def test_a_zipped_package_gets_a_template_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the bundled files inside a zip, as a zipimported package would have them
    archive = tmp_path / "followthrough.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, file in bundled.walk(bundled.resource("templates")):
            zipped.writestr(f"daemon/bundled/templates/{name}", file.read_bytes())
        zipped.writestr("daemon/bundled/templates/reps/rep@example.com/closing-prep.md", "mine")
    inside = zipfile.Path(archive, "daemon/bundled/")
    monkeypatch.setattr(bundled, "resource", lambda name: inside / name)

    # When a real folder is asked for
    folder = bundled.folder("templates")

    # Then it is a copy on disk, with the same files, nested ones too
    assert folder.is_dir() and not folder.is_relative_to(TEMPLATES_DIR)
    assert (folder / "closing-prep.md").read_bytes() == (TEMPLATES_DIR / "closing-prep.md").read_bytes()
    assert (folder / "reps" / "rep@example.com" / "closing-prep.md").read_text() == "mine"


def test_init_writes_a_config_that_names_its_copy_of_the_templates(tmp_path: Path) -> None:
    # Given an empty folder
    config = tmp_path / "etc" / "followthrough.toml"

    # When init writes the starter
    started = start(config, force=False)

    # Then the config, read as the daemon reads it, uses the copy beside it
    assert tomllib.loads(STARTER_CONFIG)["templates"]["dir"] == TEMPLATES
    assert load(config).resolve(load(config).templates.dir) == (tmp_path / "etc" / TEMPLATES).resolve()
    assert started.written == sorted(p.name for p in TEMPLATES_DIR.iterdir())
    assert started.kept == started.unchanged == []


def test_init_keeps_an_edited_template_even_when_forced(tmp_path: Path) -> None:
    # Given a set-up whose admin edited one template
    config = tmp_path / "followthrough.toml"
    start(config, force=False)
    (tmp_path / TEMPLATES / "outcome-nudge.md").write_text("edited", encoding="utf-8")

    # When init runs again without --force, then with it
    with pytest.raises(UserError, match="already exists"):
        start(config, force=False)
    started = start(config, force=True)

    # Then the edit is kept and reported; nothing else is rewritten
    assert (tmp_path / TEMPLATES / "outcome-nudge.md").read_text(encoding="utf-8") == "edited"
    assert started.kept == ["outcome-nudge.md"]
    assert started.written == []
    assert len(started.unchanged) == len(list(TEMPLATES_DIR.iterdir())) - 1


@pytest.mark.parametrize("in_the_way", ["templates", "parent"])
def test_init_says_what_is_in_the_way_instead_of_a_traceback(tmp_path: Path, in_the_way: str) -> None:
    # Given a file where init must make a folder: the templates' folder, or the config's
    (tmp_path / "etc").mkdir()
    if in_the_way == "templates":
        (tmp_path / "etc" / "templates").write_text("not a folder", encoding="utf-8")
        config = tmp_path / "etc" / "followthrough.toml"
    else:
        (tmp_path / "etc" / "config").write_text("not a folder", encoding="utf-8")
        config = tmp_path / "etc" / "config" / "followthrough.toml"

    # When init runs, then it fails with a user error naming the path, and writes no config
    with pytest.raises(UserError, match=str(tmp_path / "etc")):
        start(config, force=False)
    assert not (tmp_path / "etc" / "followthrough.toml").exists()
