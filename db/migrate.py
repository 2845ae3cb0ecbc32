"""Apply db/migrations/*.sql in order, once, then db/schema/*.sql, under an advisory lock.

Migrations hold what has a history: tables, indexes and data moves. A migration is
`NNNN_name.sql`, or a pair `NNNN_name.postgres.sql` and `NNNN_name.timescaledb.sql` when
the two backends differ. What has no history (views, functions, triggers) is in db/schema/,
one file per object as it is now, `NN_object[.backend].sql`, applied in name order (the
number orders dependencies) by every migrate with CREATE OR REPLACE: those numbered 00, which
tables depend on (index expressions), before the pending migrations; the others after.
dockping_lock(), the advisory lock keys by name, is made from db/locks.py with them. A
migration that must change such an object incompatibly drops it; one whose data move needs
the current functions puts it below a `-- after schema --` line, run once the schema is
applied.

The backend is chosen once, when the first migration runs: TimescaleDB where the extension
can be created.
TimescaleDB installed but not in shared_preload_libraries cannot be: there, CREATE
EXTENSION ends the session (FATAL), so the attempt is made on a connection of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg

from db import locks
from db.connector import SchemaError, translate_errors
from dockping import logs

MIGRATION_DIR = Path(__file__).parent / "migrations"
SCHEMA_DIR = Path(__file__).parent / "schema"
_AFTER_SCHEMA = "-- after schema --"
Backend = Literal["postgres", "timescaledb"]
log = logs.get("dockping.migrate")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(postgres|timescaledb))?\.sql$")
_OBJECT = re.compile(r"^(\d{2})_([a-z0-9_]+?)(?:\.(postgres|timescaledb))?\.sql$")


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


def schema_files(backend: Backend, directory: Path = SCHEMA_DIR) -> list[Path]:
    """The current definition of every view, function and trigger of a backend, in order."""
    found: dict[str, Path] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _OBJECT.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: not a schema file name (NN_object[.backend].sql)")
        name, only = match.group(2), match.group(3)
        if only is not None and only != backend:
            continue
        if name in found:
            raise ValueError(f"{path.name}: {name} is defined twice ({found[name].name})")
        found[name] = path
    return sorted(found.values(), key=lambda p: p.name)


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
        conn.execute("SELECT pg_advisory_lock(%s)", (locks.MIGRATE.key,))
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
            # The versions whose after-schema parts have run: all of those done before this
            # table existed, whose migrations ran whole.
            conn.execute(
                "CREATE TABLE IF NOT EXISTS dockping_schema AS"
                " SELECT coalesce(max(version), 0) AS settled FROM dockping_migrations"
            )
            settled = int(conn.execute("SELECT settled FROM dockping_schema").fetchone()[0])  # type: ignore[index]
            early, late = _schema_phases(chosen)
            _apply_schema(conn, early, with_locks=True)
            for migration in known:
                if migration.version in done:
                    continue
                before, _ = _parts(migration)
                if "-- dockping: no-transaction" in before:
                    for statement in _split_statements(before):
                        conn.execute(statement.encode())
                    _record(conn, migration, chosen)
                else:
                    with conn.transaction():
                        conn.execute(before.encode())
                        _record(conn, migration, chosen)
                applied_now.append(migration.version)
            with conn.transaction():
                _apply_schema(conn, late)
                for migration in known:
                    if migration.version > settled and (after := _parts(migration)[1]):
                        conn.execute(after.encode())
                conn.execute("UPDATE dockping_schema SET settled = %s", (known[-1].version,))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (locks.MIGRATE.key,))
    return chosen, applied_now


def _schema_phases(backend: Backend) -> tuple[list[Path], list[Path]]:
    """The schema files applied before the pending migrations (00_), and those after."""
    files = schema_files(backend)
    early = [path for path in files if path.name.startswith("00_")]
    return early, [path for path in files if path not in early]


def _apply_schema(conn: psycopg.Connection, files: list[Path], with_locks: bool = False) -> None:
    """CREATE OR REPLACE each object (and dockping_lock(), with the first phase), in one
    transaction. Function bodies are checked when called, not here, so that functions may
    name each other in any order."""
    with conn.transaction():
        conn.execute("SET LOCAL check_function_bodies = off")
        if with_locks:
            conn.execute(locks.function_sql())
        for path in files:
            conn.execute(path.read_bytes())


def _parts(migration: Migration) -> tuple[str, str]:
    """A migration's text before its `-- after schema --` line, and after it."""
    before, _, after = migration.path.read_text(encoding="utf-8").partition(_AFTER_SCHEMA)
    return before, after.strip()


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
