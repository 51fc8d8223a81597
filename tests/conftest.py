"""Fixtures shared by every test folder: a real PostgreSQL server for the session.

The server is started from the machine's own binaries (`pg_config --bindir`, /usr/lib/postgresql/*/bin,
or PATH) in a fresh temporary folder, listens only on 127.0.0.1 on a free port, and is stopped and removed
when the session ends. PostgreSQL refuses to run as root: as root, it runs as the `postgres` system user.
Missing binaries make the tests that need it fail with a clear message: CI must run them.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
READY_TIMEOUT = 60.0  # seconds for the server to accept connections
PG_USER = "postgres"  # the database superuser initdb creates, and the system user we run as when root


def _tool_dirs() -> list[Path]:
    """Where the server binaries may be, most trusted first."""
    dirs: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            found = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            found = ""
        if found:
            dirs.append(Path(found))

    def version(path: str) -> tuple[int, ...]:
        number = Path(path).parent.name
        return tuple(int(p) for p in number.split(".") if p.isdigit())

    dirs += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    return dirs


def find_server_binaries() -> dict[str, Path] | None:
    """initdb, pg_ctl, postgres (and pg_isready) from one installation, or None."""
    for directory in _tool_dirs():
        if all((directory / tool).is_file() for tool in SERVER_TOOLS):
            tools = {tool: directory / tool for tool in SERVER_TOOLS}
            ready = directory / "pg_isready"
            on_path = shutil.which("pg_isready")
            if ready.is_file() or on_path:
                tools["pg_isready"] = ready if ready.is_file() else Path(on_path or "")
            return tools
    on_path = {tool: shutil.which(tool) for tool in (*SERVER_TOOLS, "pg_isready")}
    if all(on_path[tool] for tool in SERVER_TOOLS):
        return {tool: Path(p) for tool, p in on_path.items() if p}
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _traversable_by_others(path: Path) -> bool:
    """Every folder above `path` lets other users through (o+x): the postgres user must reach it."""
    return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in path.resolve().parents)


@dataclass
class PostgresServer:
    """A running PostgreSQL server of our own, reachable as the trusted superuser on 127.0.0.1."""

    port: int
    root: Path
    tools: dict[str, Path]
    run_as: str | None  # the system user the server runs as, when we are root
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE) on the maintenance database."""
        import psycopg

        where = {"host": "127.0.0.1", "port": self.port, "user": PG_USER, "dbname": "postgres"}
        with psycopg.connect(**where, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)  # type: ignore[call-overload]  # our own statements, never user input

    def create_database(self, name: str) -> str:
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def next_name(self) -> str:
        return f"test_{next(self._numbers)}"

    # -- running the server's programs -------------------------------------------------------
    def command(self, *args: str) -> list[str]:
        """`args` as the server's own user: directly, or through runuser (su if there is none)."""
        if self.run_as is None:
            return list(args)
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", self.run_as, "--", *args]
        return ["su", self.run_as, "-s", "/bin/sh", "-c", shlex.join(args)]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )

    def server_log(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return "(no server log)"

    def init(self) -> None:
        done = self.run(
            str(self.tools["initdb"]),
            "-D", str(self.data),
            "-A", "trust",
            "-U", PG_USER,
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}", pytrace=False)
        settings = (
            "\n# followthrough tests: local only, fast, disposable\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.root}'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 200\n"
        )
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(settings)

    def start(self) -> bool:
        """Start and wait until it accepts connections; False if it could not (e.g. the port was taken)."""
        started = self.run(
            str(self.tools["pg_ctl"]),
            "-D", str(self.data),
            "-l", str(self.log),
            "-o", f"-p {self.port}",
            "-w", "-t", "60",
            "start",
        )  # fmt: skip
        if started.returncode != 0:
            return False
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.ready():
                return True
            time.sleep(0.2)
        return False

    def ready(self) -> bool:
        if "pg_isready" in self.tools:
            probe = [str(self.tools["pg_isready"]), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER]
            return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.run(str(self.tools["pg_ctl"]), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")


def _server_user() -> str | None:
    """None when we may run the server ourselves; the system user to run it as when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        pytest.fail(
            "running as root, and PostgreSQL refuses to run as root, but there is no 'postgres' system "
            "user to run it as (installing the postgresql package creates one)",
            pytrace=False,
        )
    return PG_USER


def _scratch_folder(user: str | None) -> Path:
    """A fresh folder the server's user owns, under a temp folder it can reach."""
    bases = [Path(tempfile.gettempdir()), Path("/tmp")]
    base = next((b for b in bases if user is None or _traversable_by_others(b / "x")), None)
    if base is None:
        pytest.fail(
            f"no temporary folder the {user!r} user can reach ({', '.join(map(str, bases))} are not "
            "traversable by other users)",
            pytrace=False,
        )
    root = Path(tempfile.mkdtemp(prefix="followthrough-pg-", dir=base))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    return root


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session, on a free port of 127.0.0.1."""
    tools = find_server_binaries()
    if tools is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via `pg_config --bindir`, "
            "/usr/lib/postgresql/*/bin or PATH: install PostgreSQL (Debian/Ubuntu: "
            "`apt-get install -y postgresql`; .ci/run does this when run as root)",
            pytrace=False,
        )
    user = _server_user()
    root = _scratch_folder(user)
    server = PostgresServer(port=_free_port(), root=root, tools=tools, run_as=user)
    running = False
    try:
        server.init()
        for _ in range(3):  # the free port may be taken before the server binds it: try another
            if server.start():
                running = True
                break
            server.stop()
            server.port = _free_port()
        if not running:
            pytest.fail(
                f"PostgreSQL did not start within {READY_TIMEOUT:.0f}s; its log:\n{server.server_log()}",
                pytrace=False,
            )
        yield server
    finally:
        if running:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """`postgresql+psycopg://postgres@127.0.0.1:PORT/followthrough`: one database for the session."""
    return postgres_server.create_database("followthrough")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both stores: a SQLite file, and a database of its own on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url = request.getfixturevalue("fresh_postgres_url")
    assert isinstance(url, str)
    return url


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A database of its own for one test (test_<n>), dropped afterwards: tests never see each other."""
    name = postgres_server.next_name()
    url = postgres_server.create_database(name)
    yield url
    # FORCE: a connection a test left open must not keep it; failing that, the server goes at the end.
    with contextlib.suppress(Exception):
        postgres_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
