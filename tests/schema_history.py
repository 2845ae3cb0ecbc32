"""Databases as earlier dockping versions left them: the migrations of tests/fixtures/schema_v12/
(db/migrations as they stood at schema version 12, when views and functions were still defined
there), applied the way that version's migrate applied them."""

from __future__ import annotations

from pathlib import Path

import psycopg

from db.migrate import Backend, migrations

V12 = Path(__file__).parent / "fixtures" / "schema_v12"


def historical(url: str, backend: Backend, upto: int = 12) -> list[int]:
    """Migrate an empty database to version `upto` as dockping did then; the versions applied."""
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
        for migration in migrations(backend, V12):
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
