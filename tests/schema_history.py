"""Databases as earlier dockping versions left them: the migrations of
tests/fixtures/schema_v12.tar.gz (db/migrations as released at schema version 12, when views and
functions were still defined there; an archive, since it is history and not code to change),
applied the way that version's migrate applied them."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

import psycopg

from db.migrate import Backend, migrations

V12 = Path(__file__).parent / "fixtures" / "schema_v12.tar.gz"


def historical(url: str, backend: Backend, upto: int = 12) -> list[int]:
    """Migrate an empty database to version `upto` as dockping did then; the versions applied."""
    with tempfile.TemporaryDirectory() as directory:
        with tarfile.open(V12) as archive:
            for member in archive.getmembers():
                read = archive.extractfile(member) if member.isfile() else None
                if read is not None:  # by its base name: nothing lands outside the directory
                    (Path(directory) / Path(member.name).name).write_bytes(read.read())
        return _apply(url, backend, upto, Path(directory))


def _apply(url: str, backend: Backend, upto: int, directory: Path) -> list[int]:
    applied = []
    with psycopg.connect(url, autocommit=True) as conn:
        if backend == "timescaledb":
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute(
            """CREATE TABLE dockping_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   backend    text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for migration in migrations(backend, directory):
            if migration.version > upto:
                break
            text = migration.path.read_text(encoding="utf-8")
            record = (
                "INSERT INTO dockping_migrations (version, name, backend) VALUES (%s, %s, %s)",
                (migration.version, migration.name, backend),
            )
            if "-- dockping: no-transaction" in text:
                for statement in text.split("-- statement --"):
                    if statement.strip():
                        conn.execute(statement.encode())
                conn.execute(*record)
            else:
                with conn.transaction():
                    conn.execute(text.encode())
                    conn.execute(*record)
            applied.append(migration.version)
    return applied
