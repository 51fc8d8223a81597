"""The built wheel on its own: installed into a fresh virtual environment, run from a folder outside the
repository, as a user who ran `pipx install` would: demo, init, templates check, tick and run.

The wheel is built from a copy of the source tree (a stale build/ of the repository's own must not leak
into it) with pip's isolated build, which needs only the build-system requirements of pyproject.toml.
Its dependencies come from the package index, as for `./dev test`; the deadlines are generous for that.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support import ROOT, TEMPLATES_DIR
from tests.support.cli import clean_env, wait_for
from tests.support.ics import calendar, meeting

pytestmark = pytest.mark.slow

BUILD_SECONDS = 600  # building the wheel, setuptools fetched for the isolated build
INSTALL_SECONDS = 900  # the wheel and its dependencies into a new environment
COMMAND_SECONDS = 120  # one command of the installed program
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "var", "*.egg-info", "__pycache__", "*.pyc",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "*.db", "*.db-wal", "*.db-shm",
)  # fmt: skip
REP = ("rep@example.com", "Rita Rep")  # the starter config's calendar owner, in its company's domain
CUSTOMER = ("dana@globex.test", "Dana Fox")


def closing_call(uid: str, hours_away: int) -> str:
    """A rep's closing call with a customer, an hour long: its prep is due 24 hours before it starts."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=hours_away)
    end = start + timedelta(hours=1)
    return meeting(uid, start, end, "Terms #closing", organizer=REP, attendees=[CUSTOMER])


def run(*args: str | Path, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run to its end, with no FOLLOWTHROUGH_* variable; fail showing its output if it does not exit 0."""
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    work: Path  # an empty folder outside the repository, where the commands run

    @property
    def program(self) -> Path:
        return self.venv / "bin" / "followthrough"

    def cli(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run(self.program, *args, cwd=self.work, timeout=COMMAND_SECONDS)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built from this repository, installed with pip into a new venv of its own."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", root / "dist", source]
    run(*build, cwd=root, timeout=BUILD_SECONDS)
    [wheel] = (root / "dist").glob("followthrough-*.whl")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=root, timeout=COMMAND_SECONDS)
    run(venv / "bin" / "python", "-m", "pip", "install", wheel, cwd=root, timeout=INSTALL_SECONDS)
    work = root / "work"
    work.mkdir()
    return Installed(wheel, venv, work)


def test_the_wheel_holds_every_file_the_package_reads(installed: Installed) -> None:
    # Given the files of the package in the repository that are not Python: the default templates, the
    # demo, the console's pages and static files
    wanted = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "daemon").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }
    assert {"daemon/bundled/templates/closing-prep.md", "daemon/bundled/demo/calendar.ics"} <= wanted
    assert any(name.startswith("daemon/web/pages/") for name in wanted)
    assert any(name.startswith("daemon/web/static/") for name in wanted)

    # When the wheel is opened
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())

    # Then it holds every one of them, and the program is the one installed, not this repository's
    assert wanted <= names, sorted(wanted - names)
    where = run(installed.venv / "bin" / "python", "-c", "import daemon; print(daemon.__file__)",
                cwd=installed.work, timeout=COMMAND_SECONDS)  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where.stdout


def test_the_installed_demo_runs_outside_the_repository(installed: Installed) -> None:
    # When the demo runs from an empty folder
    done = installed.cli("demo", "--dir", "demo")

    # Then it sends its emails into that folder's outbox
    match = re.search(r"^Sent (\d+) email", done.stdout, re.MULTILINE)
    assert match and int(match.group(1)) >= 5, done.stdout
    assert len(list((installed.work / "demo" / "outbox").glob("*.eml"))) == int(match.group(1))


def test_the_installed_program_sets_up_checks_ticks_and_runs(installed: Installed) -> None:
    # Given a starter config written by `init`, with its own copy of the templates beside it
    config = installed.work / "etc" / "followthrough.toml"
    done = installed.cli("--config", config, "init")
    templates = config.parent / "templates"
    assert "Copied the default templates" in done.stdout, done.stdout
    assert tomllib.loads(config.read_text(encoding="utf-8"))["templates"]["dir"] == "templates"
    assert sorted(p.name for p in templates.glob("*.md")) == sorted(
        p.name for p in TEMPLATES_DIR.glob("*.md")
    )
    assert installed.cli("--config", config, "templates", "check").returncode == 0

    # And an admin's edit of the closing prep, and a closing call 23 hours away in the calendar it names
    prep = templates / "closing-prep.md"
    prep.write_text(prep.read_text(encoding="utf-8") + "\nEdited by the admin.\n", encoding="utf-8")
    calls = [closing_call("call-tick", hours_away=23)]
    ics = config.parent / "calendars" / "sales.ics"
    ics.parent.mkdir()
    ics.write_text(calendar(*calls), encoding="utf-8", newline="")

    # When one pass runs
    installed.cli("--config", config, "tick")

    # Then the prep is in the outbox, written from the admin's copy of the template
    outbox = config.parent / "outbox"
    sent = outbox / "closing-prep_call-tick.eml"
    assert sent.is_file(), sorted(p.name for p in outbox.glob("*"))
    assert "Edited by the admin." in sent.read_bytes().decode("utf-8", errors="replace")

    # When another call is added and the daemon runs
    calls.append(closing_call("call-run", hours_away=22))
    ics.write_text(calendar(*calls), encoding="utf-8", newline="")
    log = installed.work / "run.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [str(installed.program), "--config", str(config), "run"],
            cwd=installed.work, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            # Then its first pass sends that call's prep, and SIGTERM stops it with exit status 0
            output = lambda: log.read_text(encoding="utf-8", errors="replace")  # noqa: E731
            wait_for(lambda: (outbox / "closing-prep_call-run.eml").is_file(), "the daemon's first send",
                     output, seconds=COMMAND_SECONDS)  # fmt: skip
            wait_for(lambda: "followthrough running" in output(), "the daemon's start", output, seconds=30)
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=COMMAND_SECONDS)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(30)
    assert code == 0, output()
    assert "Traceback" not in output(), output()
    assert sorted(p.name for p in outbox.glob("*.eml")) == [
        "closing-prep_call-run.eml",
        "closing-prep_call-tick.eml",
    ]
