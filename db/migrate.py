"""Apply db/migrations/*.sql in order, once, under an advisory lock.

A migration is `NNNN_name.sql`, or a pair `NNNN_name.postgres.sql` and
`NNNN_name.timescaledb.sql` when the two backends differ. The backend is chosen
once, when the first migration runs: TimescaleDB where the extension can be created.
TimescaleDB installed but not in shared_preload_libraries cannot be: there, CREATE
EXTENSION ends the session (FATAL), so the attempt is made on a connection of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg

from db.connector import SchemaError, translate_errors
from dockping import logs

MIGRATION_DIR = Path(__file__).parent / "migrations"
Backend = Literal["postgres", "timescaledb"]
# Any constant works; it only has to be the same in every process that migrates.
_LOCK_KEY = 0x646F636B70696E67  # "dockping"
log = logs.get("dockping.migrate")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(postgres|timescaledb))?\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered migration for one backend."""

    version: int
    name: str
    path: Path


def migrations(backend: Backend, directory: Path = MIGRATION_DIR) -> list[Migration]:
    """Every migration that applies to a backend, in order."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: not a migration name (NNNN_name[.backend].sql)")
        version, name, only = int(match.group(1)), match.group(2), match.group(3)
        if only is not None and only != backend:
            continue
        if version in found:
            raise ValueError(f"{path.name}: version {version} is used twice")
        found[version] = Migration(version, name, path)
    return [found[v] for v in sorted(found)]


def latest_version() -> int:
    """The newest schema version this program knows."""
    return migrations("postgres")[-1].version


def _detect_backend(url: str, conn: psycopg.Connection, wanted: str) -> Backend:
    if wanted == "postgres":
        return "postgres"
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if available is None:
        if wanted == "timescaledb":
            raise SchemaError("database.backend is timescaledb, but the extension is not available")
        return "postgres"
    created = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    preload = str(conn.execute("SHOW shared_preload_libraries").fetchone()[0])  # type: ignore[index]
    if created is None and "timescaledb" not in preload:
        return _without_timescaledb(
            wanted,
            "the timescaledb extension is installed but not in the server's"
            " shared_preload_libraries: add it there and restart PostgreSQL to use TimescaleDB",
        )
    try:
        # A connection of its own: should CREATE EXTENSION end the session, this one lives on.
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as trial:
            trial.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        return _without_timescaledb(
            wanted,
            f"cannot create the timescaledb extension ({str(exc).strip() or type(exc).__name__});"
            " is it in the server's shared_preload_libraries?",
        )
    return "timescaledb"


def _without_timescaledb(wanted: str, reason: str) -> Backend:
    """Plain PostgreSQL, with a warning; a SchemaError where TimescaleDB is asked for."""
    if wanted == "timescaledb":
        raise SchemaError(f"database.backend is timescaledb, but {reason}")
    log.warning("migrate.timescaledb_unavailable", backend="postgres", reason=reason)
    return "postgres"


def _split_statements(text: str) -> list[str]:
    """Split SQL at `-- statement --` lines (for statements that refuse a transaction)."""
    return [part.strip() for part in text.split("-- statement --") if part.strip()]


def migrate(url: str, backend: str = "auto") -> tuple[Backend, list[int]]:
    """Apply what is pending; return the backend and the versions applied now."""
    applied_now: list[int] = []
    with translate_errors(), psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS dockping_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       backend    text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = conn.execute(
                "SELECT version, backend FROM dockping_migrations ORDER BY version"
            ).fetchall()
            done = {version for version, _ in rows}
            chosen: Backend = rows[0][1] if rows else _detect_backend(url, conn, backend)
            known = migrations(chosen)
            if done and max(done) > known[-1].version:
                raise SchemaError(
                    f"the database schema is at version {max(done)}, newer than this program's "
                    f"{known[-1].version}: upgrade dockping before running it against this database"
                )
            for migration in known:
                if migration.version in done:
                    continue
                text = migration.path.read_text(encoding="utf-8")
                if "-- dockping: no-transaction" in text:
                    for statement in _split_statements(text):
                        conn.execute(statement.encode())
                    _record(conn, migration, chosen)
                else:
                    with conn.transaction():
                        conn.execute(text.encode())
                        _record(conn, migration, chosen)
                applied_now.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return chosen, applied_now


def _record(conn: psycopg.Connection, migration: Migration, backend: Backend) -> None:
    conn.execute(
        "INSERT INTO dockping_migrations (version, name, backend) VALUES (%s, %s, %s)",
        (migration.version, migration.name, backend),
    )


_SCHEMA_QUERY = "SELECT max(version), min(backend) FROM dockping_migrations"


def check_schema(conn: psycopg.Connection) -> Backend:
    """Refuse to run against a schema that is missing or newer than this program."""
    with translate_errors():
        row = conn.execute(_SCHEMA_QUERY).fetchone()
    return _checked(row)


async def check_schema_async(conn: psycopg.AsyncConnection) -> Backend:
    """check_schema() on an async connection; the caller translates driver errors (a pooled
    connection found broken is run again: db.connector.run_on_connection)."""
    async with conn.transaction():
        row = await (await conn.execute(_SCHEMA_QUERY)).fetchone()
    return _checked(row)


def _checked(row: tuple[int | None, str | None] | None) -> Backend:
    if row is None or row[0] is None:
        raise SchemaError("the database has no dockping schema: run `dockping migrate`")
    if row[0] > latest_version():
        raise SchemaError(
            f"the database schema is at version {row[0]}, newer than this program's "
            f"{latest_version()}: upgrade dockping"
        )
    backend: Backend = "timescaledb" if row[1] == "timescaledb" else "postgres"
    return backend
