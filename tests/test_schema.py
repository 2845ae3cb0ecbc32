"""One current schema: db/schema/ defines every view, function and trigger once, the migrations
only tables, indexes and data moves, and a database upgraded from schema version 12 ends with
the catalogue of a fresh one (procrastinate's migration test, on pg_catalog)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from db import locks
from db.migrate import MIGRATION_DIR, SCHEMA_DIR, Backend, migrate, schema_files
from tests import required
from tests.conftest import _replace_database, drop_database
from tests.schema_history import historical
from tests.test_storage_contract import NO_TIMESCALEDB, TIMESCALEDB_URL

# What a database holds, object by object, as text that is equal where the objects are.
CATALOGUE = {
    "columns": """
        SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition""",
    "relations": """
        SELECT c.relname || ' ' || c.relkind::text FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND NOT c.relispartition""",
    "indexes": """
        SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND NOT c.relispartition""",
    "constraints": """
        SELECT c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND NOT c.relispartition""",
    "functions": """
        SELECT pg_get_functiondef(p.oid) FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.prokind = 'f'
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')""",
    "views": """
        SELECT c.relname || ': ' || pg_get_viewdef(c.oid) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'v'""",
    "triggers": """
        SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND NOT t.tgisinternal AND NOT c.relispartition""",
    "rows of the lookup tables": """
        SELECT 'probe_errors ' || code || ' ' || error FROM probe_errors
        UNION ALL SELECT 'target_vantages ' || code || ' ' || vantage FROM target_vantages""",
}
TIMESCALEDB_CATALOGUE = {
    "hypertables": """
        SELECT hypertable_name || ' ' || column_name || ' ' || coalesce(time_interval::text, '')
        FROM timescaledb_information.dimensions""",
    "compression": """
        SELECT hypertable_name || ' ' || attname || ' ' || coalesce(segmentby_column_index, 0)
               || ' ' || coalesce(orderby_column_index, 0)
        FROM timescaledb_information.compression_settings""",
    "continuous aggregates": """
        SELECT view_name || ' ' || materialized_only || ': ' || view_definition
        FROM timescaledb_information.continuous_aggregates""",
}


def catalogue(url: str, backend: Backend) -> dict[str, list[str]]:
    """Every object of the database's public schema, by kind, in order."""
    queries = CATALOGUE | (TIMESCALEDB_CATALOGUE if backend == "timescaledb" else {})
    with psycopg.connect(url) as conn:
        return {
            kind: sorted(str(row[0]) for row in conn.execute(query.encode()).fetchall())
            for kind, query in queries.items()
        }


def two_databases(admin_url: str) -> Iterator[tuple[str, str]]:
    """Two empty databases on one server, dropped after."""
    names = [f"s_{uuid.uuid4().hex[:16]}" for _ in range(2)]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield _replace_database(admin_url, names[0]), _replace_database(admin_url, names[1])
    finally:
        for name in names:
            drop_database(admin_url, name)


def assert_upgrade_equals_fresh(admin_url: str, backend: Backend) -> None:
    """Fresh: every migration and the schema. Upgraded: version 12 as it was, then migrate."""
    for fresh, upgraded in two_databases(admin_url):
        migrate(fresh, backend)
        assert historical(upgraded, backend, upto=12) == [1, 2, 3, 4, 5, 6, 10, 11, 12]
        _, applied = migrate(upgraded, backend)
        assert applied
        assert min(applied) == 13
        before, after = catalogue(fresh, backend), catalogue(upgraded, backend)
        for kind in before:
            assert before[kind] == after[kind], kind
        assert all(before[kind] for kind in ("functions", "views", "triggers"))


def test_a_database_upgraded_from_version_12_equals_a_fresh_one(pg_admin_url: str) -> None:
    """Plain PostgreSQL: the same tables, columns, indexes, constraints, functions, views and
    triggers, whichever way the database came to the current version."""
    assert_upgrade_equals_fresh(pg_admin_url, "postgres")


def test_a_timescaledb_database_upgraded_from_version_12_equals_a_fresh_one() -> None:
    """TimescaleDB: the same again, and the same hypertables, compression and continuous
    aggregates."""
    if not TIMESCALEDB_URL:
        required.unavailable("timescaledb", NO_TIMESCALEDB)
    assert_upgrade_equals_fresh(TIMESCALEDB_URL, "timescaledb")


_DEFINES = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|VIEW|TRIGGER)\s+(\w+)", re.I | re.M
)


def defined_in(path: Path) -> list[str]:
    """The views, functions and triggers a SQL file creates, outside comments."""
    text = "\n".join(line.split("--")[0] for line in path.read_text(encoding="utf-8").splitlines())
    return [match.group(2) for match in _DEFINES.finditer(text)]


@pytest.mark.parametrize("backend", ["postgres", "timescaledb"])
def test_every_view_and_function_has_one_file_of_db_schema(backend: Backend) -> None:
    """Each schema file defines the function or view it is named after (and a trigger
    function its triggers); no migration defines a view, function or trigger."""
    files = schema_files(backend)
    assert files
    for path in files:
        name = path.name.split(".")[0][3:]
        defined = defined_in(path)
        # The object first, then only the triggers that call it.
        assert defined[0] == name, path.name
        assert not [d for d in defined[1:] if d.startswith("dockping_") or d == name], path.name
    for path in sorted(MIGRATION_DIR.glob("*.sql")):
        assert defined_in(path) == [], path.name
    assert SCHEMA_DIR.is_dir()


def test_the_database_holds_exactly_the_functions_and_views_of_db_schema(
    database_url: str,
) -> None:
    """What migrate made is what db/schema/ names (and dockping_lock, made from db/locks.py):
    no function or view is left from an older definition, and none is missing."""
    named = {path.name.split(".")[0][3:] for path in schema_files("postgres")} | {"dockping_lock"}
    with psycopg.connect(database_url) as conn:
        made = {
            str(row[0])
            for row in conn.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = 'public' AND p.prokind = 'f' AND NOT EXISTS"
                " (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"
                " UNION SELECT c.relname FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind = 'v'"
            ).fetchall()
        }
    assert named == made


def test_every_advisory_lock_is_taken_by_its_name(database_url: str) -> None:
    """No SQL or module takes an advisory lock by a bare number: each names one of db/locks.py,
    whose keys are distinct, and an unknown name is an error rather than no lock."""
    keys = [lock.key for lock in locks.LOCKS]
    assert len(set(keys)) == len(keys)
    bare = re.compile(r"advisory_(?:xact_)?(?:un)?lock\(\s*\d")
    root = SCHEMA_DIR.parent.parent
    files = [*root.glob("db/**/*.sql"), *root.glob("*/**/*.py")]
    found = [
        str(path.relative_to(root))
        for path in files
        if ".venv" not in path.parts
        and "fixtures" not in path.parts
        and bare.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []
    with psycopg.connect(database_url) as conn:
        for lock in locks.LOCKS:
            row = conn.execute("SELECT dockping_lock(%s)", (lock.name,)).fetchone()
            assert row == (lock.key,)
        with pytest.raises(psycopg.errors.RaiseException, match="no advisory lock is named"):
            conn.execute("SELECT dockping_lock('nonesuch')")
