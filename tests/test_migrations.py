"""Migrations: applied in order on an empty database, once, safely in parallel."""

from __future__ import annotations

import threading

import psycopg
import pytest

from db.connector import SchemaError
from db.migrate import check_schema, latest_version, migrate, migrations
from tests.schema_history import historical


def tables(url: str) -> set[str]:
    """Ordinary and partitioned tables of the public schema."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        ).fetchall()
    return {row[0] for row in rows}


def test_migrations_build_the_schema_on_an_empty_database(empty_database_url: str) -> None:
    """Every table, view and function exists after migrating an empty database."""
    backend, applied = migrate(empty_database_url, "postgres")
    assert backend == "postgres"
    assert applied == [m.version for m in migrations("postgres")]
    assert {
        "agents",
        "containers",
        "targets",
        "probe_events",
        "container_events",
        "heartbeats",
        "target_state",
        "container_state",
        "agent_state",
        "dockping_migrations",
    } <= tables(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        views = {
            r[0]
            for r in conn.execute(
                "SELECT viewname FROM pg_views WHERE schemaname = 'public'"
            ).fetchall()
        }
        kind = conn.execute(
            "SELECT relkind FROM pg_class WHERE relname = 'probe_events'"
        ).fetchone()
    assert {"latest_state", "probe_history", "container_history"} <= views
    assert kind == ("p",)  # range-partitioned by time


def test_every_unique_index_on_event_tables_includes_time(empty_database_url: str) -> None:
    """Event tables are ready to become hypertables: each unique index has the time column."""
    migrate(empty_database_url, "postgres")
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute(
            "SELECT t.relname, i.indexrelid::regclass::text,"
            " bool_or(a.attname = 'time')"
            " FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid"
            " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indisunique AND t.relname IN ('probe_events', 'container_events', 'heartbeats')"
            " GROUP BY 1, 2"
        ).fetchall()
    assert rows
    assert all(has_time for _, _, has_time in rows)


def test_migrating_twice_applies_nothing_the_second_time(empty_database_url: str) -> None:
    """Applied migrations are recorded and skipped."""
    migrate(empty_database_url, "postgres")
    _, applied = migrate(empty_database_url, "postgres")
    assert applied == []


def test_two_processes_migrating_at_once_are_safe(empty_database_url: str) -> None:
    """The advisory lock lets one apply and the other find everything done."""
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(empty_database_url, "postgres")[1])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 0, len(migrations("postgres"))]


def test_a_newer_schema_is_refused(empty_database_url: str) -> None:
    """A database migrated by a newer dockping is not touched by this one."""
    migrate(empty_database_url, "postgres")
    with psycopg.connect(empty_database_url) as conn:
        conn.execute(
            "INSERT INTO dockping_migrations (version, name, backend)"
            " VALUES (%s, 'future', 'postgres')",
            (latest_version() + 1,),
        )
    with pytest.raises(SchemaError, match="newer"):
        migrate(empty_database_url, "postgres")
    with psycopg.connect(empty_database_url) as conn, pytest.raises(SchemaError, match="newer"):
        check_schema(conn)


def test_a_missing_schema_is_named(empty_database_url: str) -> None:
    """Services refuse to start on a database that was never migrated."""
    with psycopg.connect(empty_database_url) as conn, pytest.raises(SchemaError):
        check_schema(conn)


def test_partitions_are_made_ahead_and_dropped_whole(empty_database_url: str) -> None:
    """dockping_ensure_partitions makes aligned partitions; dropping removes whole ones only."""
    migrate(empty_database_url, "postgres")
    with psycopg.connect(empty_database_url) as conn:
        made = conn.execute(
            "SELECT dockping_ensure_partitions('2026-01-01', '2026-01-03', '1 day')"
        ).fetchone()
        # Two days of five event tables (probe_details and inventories among them) and of the
        # two rollups.
        assert made == (14,)
        conn.execute("INSERT INTO agents (name) VALUES ('a')")
        conn.execute(
            "INSERT INTO probe_events VALUES ('2026-01-01 12:00+00', 1, 5),"
            " ('2026-01-02 12:00+00', 1, 5)"
        )
        dropped = conn.execute("SELECT dockping_drop_partitions('2026-01-02 06:00+00')").fetchone()
        assert dropped == (7,)  # only the first day, which ended before the cutoff
        left = conn.execute("SELECT count(*) FROM probe_events").fetchone()
    assert left == (1,)


def test_a_version_10_database_gets_the_event_key_on_each_partition(
    empty_database_url: str,
) -> None:
    """Migration 11 moves probe_events' unique key onto each partition: events stay, each
    still once, and a partition compacted the old way is compacted again."""
    every = migrations("postgres")
    historical(empty_database_url, "postgres", upto=10)
    days = ["probe_events_p20260101t0000", "probe_events_p20260102t0000"]
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("SELECT dockping_ensure_partitions('2026-01-01', '2026-01-03', '1 day')")
        conn.execute(
            "INSERT INTO probe_events VALUES ('2026-01-01 12:00+00', 1, 5),"
            " ('2026-01-02 12:00+00', 1, 5)"
        )
        conn.execute(f"COMMENT ON TABLE {days[0]} IS 'dockping: compacted'")
    # Every later migration applies (11 and 12 among them), whatever others were added since.
    assert migrate(empty_database_url, "postgres")[1] == [
        m.version for m in every if m.version > 10
    ]
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        keys = conn.execute(
            "SELECT indrelid::regclass::text FROM pg_index"
            " WHERE indisunique AND indisvalid AND indexrelid::regclass::text LIKE '%%_key'"
            " AND indrelid::regclass::text LIKE 'probe_events_p%%' ORDER BY 1"
        ).fetchall()
        comments = conn.execute(
            "SELECT obj_description(c::regclass, 'pg_class') FROM unnest(%s::text[]) c", (days,)
        ).fetchall()
        for day in ("2026-01-01", "2026-01-02"):
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute(f"INSERT INTO probe_events VALUES ('{day} 12:00+00', 1, 6)")
        # A partition made after the migration gets its key too.
        conn.execute("SELECT dockping_ensure_partitions('2026-01-03', '2026-01-04', '1 day')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO probe_events VALUES ('2026-01-03 12:00+00', 1, 5),"
                " ('2026-01-03 12:00+00', 1, 6)"
            )
        count = conn.execute("SELECT count(*) FROM probe_events").fetchone()
    assert keys == [(days[0],), (days[1],)]
    assert comments == [(None,), (None,)]
    assert count == (2,)


def test_auto_picks_plain_postgresql_without_the_extension(empty_database_url: str) -> None:
    """Where timescaledb cannot be created, "auto" migrates the plain PostgreSQL path."""
    with psycopg.connect(empty_database_url) as conn:
        available = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
    if available != (0,):
        pytest.skip("this server has the timescaledb extension: the plain path is not chosen")
    backend, _ = migrate(empty_database_url, "auto")
    with psycopg.connect(empty_database_url) as conn:
        rollup = conn.execute(
            "SELECT relkind FROM pg_class WHERE relname = 'probe_minute'"
        ).fetchone()
    assert backend == "postgres"
    assert rollup == ("p",)  # a partitioned table kept by the refresher


def test_auto_picks_timescaledb_where_the_extension_exists() -> None:
    """On a TimescaleDB server "auto" makes hypertables and continuous aggregates, once."""
    from tests.test_storage_contract import timescaledb_store

    for store in timescaledb_store():
        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
            conn.execute("DROP EXTENSION IF EXISTS timescaledb CASCADE")
        backend, applied = migrate(store.url, "auto")
        again = migrate(store.url, "auto")
        with psycopg.connect(store.url) as conn:
            hypertables = conn.execute(
                "SELECT hypertable_name::text FROM timescaledb_information.hypertables ORDER BY 1"
            ).fetchall()
            caggs = conn.execute(
                "SELECT view_name::text FROM timescaledb_information.continuous_aggregates"
                " ORDER BY 1"
            ).fetchall()
    assert backend == "timescaledb"
    assert applied == [m.version for m in migrations("timescaledb")]
    assert again == ("timescaledb", [])
    assert hypertables == [
        ("container_events",),
        ("heartbeats",),
        ("inventories",),
        ("probe_details",),
        ("probe_events",),
    ]
    assert caggs == [("probe_hour",), ("probe_minute",)]
