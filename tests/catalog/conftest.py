"""Catalog fixtures: every catalog test runs on SQLite and on a real PostgreSQL server.

The server is started once per test session: ``initdb`` into a temporary directory (as user
``postgres`` when the tests run as root, since initdb refuses root), ``pg_ctl start`` on a
free port listening only on a unix socket in that directory, and stopped and removed at
the end. Each test gets a schema of its own in one database.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from catalog_helpers import START

from feature_gate import require_feature
from pipevault.catalog.database import Catalog
from pipevault.clock import ManualClock
from pipevault.pipe._names import pid_alive


@dataclass(frozen=True)
class PgServer:
    """A running PostgreSQL server reachable on a unix socket in ``socket_dir``."""

    socket_dir: str
    port: int

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.socket_dir}&port={self.port}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(host=self.socket_dir, port=self.port, user="postgres",
                               dbname="postgres", autocommit=True)


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PREFIX = "pipevault-pg-"


def _remove_stale_servers(bindir: Path, as_postgres: list[str]) -> None:
    """Stop and remove servers left by test sessions that were killed before their teardown
    (each server's directory names the pid of the session that owns it)."""
    for base in Path(tempfile.gettempdir()).glob(_PREFIX + "*"):
        try:
            owner = int((base / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(owner):
            continue
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(base / "data"), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for the whole test session (skips when not installed)."""
    bindir = _pg_bindir()
    require_feature("postgresql-server",
                    lambda: None if bindir else "no /usr/lib/postgresql/*/bin/pg_ctl "
                                                "(run scripts/install-system-deps.sh as root)")
    assert bindir is not None
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    _remove_stale_servers(bindir, as_postgres)
    base = tempfile.mkdtemp(prefix=_PREFIX)
    Path(base, "owner.pid").write_text(str(os.getpid()))
    if as_postgres:
        shutil.chown(base, "postgres", "postgres")
    data = os.path.join(base, "data")
    port = _free_port()
    opts = (f"-p {port} -k {base} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=50")
    run = [*as_postgres]
    subprocess.run([*run, str(bindir / "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    subprocess.run([*run, str(bindir / "pg_ctl"), "-D", data, "-o", opts, "-l",
                    os.path.join(base, "server.log"), "-w", "start"], check=True, capture_output=True)
    try:
        yield PgServer(base, port)
    finally:
        subprocess.run([*run, str(bindir / "pg_ctl"), "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


_SCHEMAS = itertools.count()
_DATABASE = "catalog_tests"


@pytest.fixture(scope="session")
def postgres_database(postgres_server: PgServer) -> str:
    """One database for the session; each test gets a schema of its own in it (cheaper)."""
    with postgres_server.admin() as admin:
        admin.execute(f"CREATE DATABASE {_DATABASE}")
    return postgres_server.url(_DATABASE)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty catalog database on each of the two databases."""
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path / "catalog.db")
        return
    server: PgServer = request.getfixturevalue("postgres_server")
    base: str = request.getfixturevalue("postgres_database")
    schema = f"t{os.getpid()}_{next(_SCHEMAS)}"
    with psycopg.connect(host=server.socket_dir, port=server.port, user="postgres", dbname=_DATABASE,
                         autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            # Every connection of the catalog finds its tables in this schema first.
            yield f"{base}&options=-csearch_path%3D{schema}"
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock at a fixed start, shared by the catalog and the test."""
    return ManualClock(START)


@pytest.fixture
def catalog(catalog_url: str, clock: ManualClock) -> Iterator[Catalog]:
    """An open, migrated, empty catalog on each database."""
    with Catalog.open(catalog_url, clock=clock) as cat:
        yield cat
