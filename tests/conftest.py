"""Shared fixtures: a real PostgreSQL server, a migrated template, a fresh database per test."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from db.embedded import EmbeddedPostgres
from db.migrate import migrate
from dockping.settings import Settings, load

TEMPLATE = "dockping_template"
pytest_plugins = ["tests.docker_support"]


def _replace_database(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """The agent and services run on asyncio."""
    return "asyncio"


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server: DOCKPING_TEST_DATABASE_URL, or the embedded one in a temp dir."""
    external = os.environ.get("DOCKPING_TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    server.start()
    try:
        yield server.url_for("postgres")
    finally:
        server.stop()


def make_template(admin_url: str, name: str, backend: str) -> str:
    """Create a database migrated for one backend, to copy per test."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _replace_database(admin_url, name)
    migrate(url, backend)
    return url


@pytest.fixture(scope="session")
def template_url(pg_admin_url: str) -> str:
    """The plain-PostgreSQL template database."""
    return make_template(pg_admin_url, TEMPLATE, "postgres")


def fresh_database(admin_url: str, template: str) -> tuple[str, str]:
    """A new database copied from a template; returns its name and URL."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name, _replace_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop a test database, whoever is still connected."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_admin_url: str, template_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name, url = fresh_database(pg_admin_url, TEMPLATE)
    try:
        yield url
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture(scope="module")
def module_database_url(pg_admin_url: str, template_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test module (property tests: each example uses
    agents of its own)."""
    name, url = fresh_database(pg_admin_url, TEMPLATE)
    try:
        yield url
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = f"e_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _replace_database(pg_admin_url, name)
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture(autouse=True)
def views_as_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The latest_state view takes the tests' stale_after (see settings below), through the
    session setting it reads (libpq passes PGOPTIONS to every connection)."""
    monkeypatch.setenv("PGOPTIONS", "-c dockping.stale_after=1d")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with data_dir in a temp dir and a known token."""
    # Tests send probes timed from the start of the run (tests/events.py): long past in a
    # long run. Those about freshness set a short stale_after of their own.
    return load(
        None,
        {
            "DOCKPING_DATA_DIR": str(tmp_path / "data"),
            "DOCKPING_INGEST__TOKEN": "test-token",
            "DOCKPING_QUERY__STALE_AFTER": "1d",
        },
    )


@pytest.fixture
def hung() -> Iterator[int]:
    """A port whose backlog is full, so that connects to it hang until they time out."""
    held = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(8):
            client = socket.socket()
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(("127.0.0.1", port))
            held.append(client)
        yield port
    for client in held:
        client.close()
