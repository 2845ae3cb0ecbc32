"""One set of storage contract tests, run against plain PostgreSQL and against TimescaleDB.

The TimescaleDB server is named by DOCKPING_TIMESCALEDB_URL (a URL to its `postgres`
database). Without it the TimescaleDB cases skip, saying so (or fail, where
DOCKPING_REQUIRE_TIMESCALEDB=1 says the server must be there); with it they must run.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import msgspec
import psycopg
import pytest

from db.append import EventWriter
from db.migrate import migrate
from db.rebuild import rebuild
from dockping.contract import Batch, ContainerEvent, Event, HeartbeatEvent, ProbeEvent
from tests import required
from tests.conftest import TEMPLATE, drop_database, fresh_database

TIMESCALEDB_URL = os.environ.get("DOCKPING_TIMESCALEDB_URL", "")
NO_TIMESCALEDB = "DOCKPING_TIMESCALEDB_URL is not set: no TimescaleDB server to test against"


@dataclass(frozen=True)
class Store:
    """A fresh, migrated database of one backend."""

    backend: str
    url: str

    def append(self, *batches: Batch) -> list[tuple[int, int]]:
        """Append batches through the ingest write path; (accepted, duplicates) per batch."""

        async def run() -> list[tuple[int, int]]:
            writer = EventWriter(self.backend, 86400)
            done = []
            async with await psycopg.AsyncConnection.connect(self.url) as conn:
                for batch in batches:
                    result = await writer.append(conn, batch)
                    done.append((result.accepted, result.duplicates))
            return done

        return anyio.run(run)

    def rows(self, query: str, params: dict[str, object] | None = None) -> list[tuple[object, ...]]:
        """Every row of a query."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query.encode(), params).fetchall()  # type: ignore[arg-type]

    def materialize(self) -> None:
        """Store every rollup bucket: refresh the continuous aggregates, or run the refresher."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            if self.backend == "timescaledb":
                conn.execute("CALL refresh_continuous_aggregate('probe_minute', NULL, NULL)")
                conn.execute("CALL refresh_continuous_aggregate('probe_hour', NULL, NULL)")
            else:
                conn.execute("SELECT dockping_refresh_rollups('infinity')")


def batch(agent: str, *events: Event) -> Batch:
    """A batch of events from one agent."""
    return Batch(agent=agent, events=list(events))


def _with_database(url: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=name)


def timescaledb_store() -> Iterator[Store]:
    """A fresh database on the TimescaleDB server, migrated for TimescaleDB, dropped after."""
    if not TIMESCALEDB_URL:
        required.unavailable("timescaledb", NO_TIMESCALEDB)
    name = f"dockping_ts_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(TIMESCALEDB_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(TIMESCALEDB_URL, name)
    try:
        backend, _ = migrate(url, "timescaledb")
        assert backend == "timescaledb"
        yield Store("timescaledb", url)
    finally:
        with psycopg.connect(TIMESCALEDB_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["postgres", "timescaledb"])
def store(request: pytest.FixtureRequest, pg_admin_url: str, template_url: str) -> Iterator[Store]:
    """A fresh store of each backend."""
    if request.param == "postgres":
        name, url = fresh_database(pg_admin_url, TEMPLATE)
        try:
            yield Store("postgres", url)
        finally:
            drop_database(pg_admin_url, name)
    else:
        yield from timescaledb_store()


NOW = datetime.now(UTC).replace(second=0, microsecond=0)
PUBLIC_VIEWS = {
    "latest_state",
    "probe_history",
    "container_history",
    "latency_minute",
    "latency_hour",
}
LATENCY_MINUTE = [
    ("target_id", "integer"),
    ("bucket", "timestamp with time zone"),
    ("probes", "bigint"),
    ("failures", "bigint"),
    ("avg_ms", "double precision"),
    ("p50_ms", "double precision"),
    ("p95_ms", "double precision"),
    ("max_ms", "double precision"),
]


def probe(
    seconds: float,
    *,
    container: str = "c1",
    port: int = 80,
    latency_ms: float | None = 1.0,
    error: str | None = None,
) -> ProbeEvent:
    """A probe event `seconds` after NOW: a success with latency_ms, or a failure with error."""
    ok = error is None
    return ProbeEvent(
        time=NOW + timedelta(seconds=seconds),
        container_id=container,
        container_name=f"name-{container}",
        ip="10.1.0.2",
        port=port,
        ok=ok,
        latency_ms=latency_ms if ok else None,
        error=error,  # type: ignore[arg-type]
    )


def columns(store: Store, view: str) -> list[tuple[object, ...]]:
    """A view's columns and their types, in order."""
    return store.rows(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %(view)s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        {"view": view},
    )


def exact_minutes(store: Store, width: str = "1 minute") -> list[tuple[object, ...]]:
    """latency_minute (or latency_hour) computed straight from probe_events, for comparison."""
    return store.rows(
        "SELECT target_id, date_bin(%(width)s::interval, time, timestamptz 'epoch') AS bucket,"
        " count(*), count(*) FILTER (WHERE latency_us < 0),"
        " avg(latency_us) FILTER (WHERE latency_us >= 0)::float8 / 1000,"
        " (percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_us)"
        "    FILTER (WHERE latency_us >= 0))::float8 / 1000,"
        " (percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_us)"
        "    FILTER (WHERE latency_us >= 0))::float8 / 1000,"
        " max(latency_us) FILTER (WHERE latency_us >= 0)::float8 / 1000"
        " FROM probe_events GROUP BY 1, 2 ORDER BY 1, 2",
        {"width": width},
    )


def view_minutes(store: Store, view: str = "latency_minute") -> list[tuple[object, ...]]:
    """Every row of latency_minute (or another rollup view), in order."""
    return store.rows(f"SELECT * FROM {view} ORDER BY target_id, bucket")


def rounded(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Rows with floats rounded to a nanosecond, so that float sums in any order compare."""
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows]


def test_both_backends_have_the_same_public_views(store: Store) -> None:
    """latest_state, probe_history, container_history, latency_minute and latency_hour exist with one shape."""
    views = {
        row[0]
        for row in store.rows("SELECT viewname::text FROM pg_views WHERE schemaname = 'public'")
    }
    assert views >= PUBLIC_VIEWS
    assert columns(store, "latency_minute") == LATENCY_MINUTE
    assert columns(store, "latency_hour") == LATENCY_MINUTE


def test_event_tables_are_split_by_time(store: Store) -> None:
    """Probe events live in time partitions (plain PostgreSQL) or chunks (TimescaleDB)."""
    store.append(batch("a", probe(-86400 * 2), probe(-10)))
    if store.backend == "postgres":
        parts = store.rows(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'probe_events'::regclass"
        )
    else:
        parts = store.rows(
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'probe_events'"
        )
    assert parts[0][0] >= 2


def test_an_event_is_stored_once_and_readable(store: Store) -> None:
    """Re-sent events are duplicates; probe_history shows each stored one, readable."""
    first = batch("a", probe(0, latency_ms=2.5), probe(1, error="timeout"))
    again = batch("a", probe(1, error="timeout"), probe(2, latency_ms=0.5))
    assert store.append(first, again) == [(2, 0), (1, 1)]
    rows = store.rows(
        "SELECT agent, container_name, ip, port, ok, latency_ms::float8, error"
        " FROM probe_history ORDER BY time"
    )
    assert rows == [
        ("a", "name-c1", "10.1.0.2", 80, True, 2.5, None),
        ("a", "name-c1", "10.1.0.2", 80, False, None, "timeout"),
        ("a", "name-c1", "10.1.0.2", 80, True, 0.5, None),
    ]


def test_latency_minute_and_hour_match_the_raw_events(store: Store) -> None:
    """Per target and minute or hour: probes, failures, avg, p50, p95 and max of the stored events, before and after the rollups are stored."""
    rng = random.Random(11)
    events = [
        probe(
            rng.uniform(-7200, 0),
            container=f"c{rng.randrange(3)}",
            latency_ms=round(rng.lognormvariate(0, 1), 3),
            error="refused" if rng.random() < 0.2 else None,
        )
        for _ in range(400)
    ]
    late = sorted(events, key=lambda e: e.time)  # sent newest first, then resent in part
    store.append(batch("a", *late[150:300]), batch("a", *late[:150]), batch("a", *late[100:200]))

    def check() -> None:
        expected = exact_minutes(store)
        assert len(expected) > 10
        assert rounded(expected) == rounded(view_minutes(store))
        hours = exact_minutes(store, "1 hour")
        assert len(hours) >= 6  # three targets over two hours and more
        assert rounded(hours) == rounded(view_minutes(store, "latency_hour"))

    check()
    store.materialize()
    check()
    # Late events land in minutes and hours already stored. Plain PostgreSQL reads them
    # exactly at once; TimescaleDB shows a materialised bucket as it was until its policy
    # refreshes it. After a refresh both store them.
    store.append(batch("a", *late[250:]))
    if store.backend == "postgres":
        check()
    store.materialize()
    check()


def test_rebuild_equals_the_incremental_projections(store: Store) -> None:
    """`dockping rebuild` gives the same states and the same rollup as ingest kept."""
    rng = random.Random(5)
    events = [
        probe(
            rng.uniform(-900, 0),
            container=f"c{rng.randrange(4)}",
            port=rng.choice([80, 443]),
            latency_ms=round(rng.uniform(0.1, 40), 3),
            error="timeout" if rng.random() < 0.3 else None,
        )
        for _ in range(400)
    ]
    lifecycle = ContainerEvent(time=NOW - timedelta(seconds=5), container_id="c2", action="stop")
    beat = HeartbeatEvent(
        time=NOW, version="1", docker_ok=True, targets=8, spool_bytes=0, dropped=0
    )
    batches = [batch("a", *events[i : i + 37]) for i in range(0, len(events), 37)]
    store.append(*batches, batch("a", lifecycle, beat))
    store.materialize()
    snapshot = (
        "SELECT * FROM target_state ORDER BY target_id",
        "SELECT * FROM container_state ORDER BY container_key",
        "SELECT * FROM agent_state ORDER BY agent_id",
        "SELECT * FROM latest_state ORDER BY target_id",
    )
    before = [store.rows(q) for q in snapshot]
    minutes_before = rounded(view_minutes(store))
    counts = rebuild(store.url)
    assert [store.rows(q) for q in snapshot] == before
    assert rounded(view_minutes(store)) == minutes_before
    assert counts["targets"] == len(before[0]) == 8
    assert counts["minutes"] == len(minutes_before)


def test_retention_drops_whole_partitions_and_their_minutes(store: Store) -> None:
    """Past the cutoff, events and their rollup minutes go a whole partition at a time."""
    old = NOW - timedelta(days=3)
    store.append(batch("a", probe(-3 * 86400), probe(-3 * 86400 + 60), probe(-30)))
    store.materialize()
    cutoff = old.replace(hour=0, minute=0) + timedelta(days=2)
    dropped = store.rows("SELECT dockping_drop_partitions(%(cutoff)s)", {"cutoff": cutoff})
    assert dropped[0][0] >= 2
    assert store.rows("SELECT count(*) FROM probe_events") == [(1,)]
    assert store.rows("SELECT count(*) FROM latency_minute") == [(1,)]
    kept = store.rows("SELECT min(time) FROM probe_events")
    assert kept[0][0] == NOW - timedelta(seconds=30)


def test_timescaledb_policies_follow_the_settings() -> None:
    """dockping_configure_storage sets chunk interval, compression, retention and refresh."""
    for store in timescaledb_store():
        store.rows("SELECT dockping_configure_storage('6 hours', '2 days', '10 days')")
        store.rows("SELECT dockping_configure_storage('6 hours', '3 days', '12 days')")
        jobs = store.rows(
            "SELECT proc_name::text, hypertable_name::text, config::text"
            " FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
            " ORDER BY 1, 2"
        )
        interval = store.rows(
            "SELECT time_interval FROM timescaledb_information.dimensions"
            " WHERE hypertable_name = 'probe_events'"
        )
    names = [(proc, table) for proc, table, _ in jobs]
    assert names == [
        ("policy_compression", "container_events"),
        ("policy_compression", "heartbeats"),
        ("policy_compression", "probe_details"),
        ("policy_compression", "probe_events"),
        ("policy_refresh_continuous_aggregate", "probe_hour"),
        ("policy_refresh_continuous_aggregate", "probe_minute"),
        ("policy_retention", "container_events"),
        ("policy_retention", "heartbeats"),
        ("policy_retention", "probe_details"),
        ("policy_retention", "probe_events"),
        ("policy_retention", "probe_hour"),
        ("policy_retention", "probe_minute"),
    ]
    configs = {(proc, table): config for proc, table, config in jobs}
    assert '"3 days"' in str(configs[("policy_compression", "probe_events")])
    assert '"12 days"' in str(configs[("policy_retention", "probe_events")])
    assert [(timedelta(hours=6),)] == interval


def test_timescaledb_compression_keeps_events_and_duplicates_out() -> None:
    """A compressed chunk reads the same, and an event re-sent into it is still a duplicate."""
    for store in timescaledb_store():
        events = [probe(-2 * 86400 + i, latency_ms=1 + i % 7) for i in range(500)]
        store.append(batch("a", *events))
        before = store.rows("SELECT * FROM probe_history ORDER BY time")
        compressed = store.rows(
            "SELECT count(compress_chunk(c)) FROM show_chunks('probe_events') c"
        )
        assert compressed[0][0] >= 1
        after = store.rows("SELECT * FROM probe_history ORDER BY time")
        result = store.append(batch("a", *events[:10], probe(-10)))
        count = store.rows("SELECT count(*) FROM probe_events")
    assert before == after
    assert result == [(1, 10)]
    assert count == [(501,)]


def test_the_readme_example_queries_run(store: Store) -> None:
    """Every example query of the README's SQL section runs and returns rows."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    sql_at = readme.index("\n### SQL\n")
    section = readme[sql_at : readme.index("\n## ", sql_at)]
    code = section[section.index("```sql") + len("```sql") : section.rindex("```")]
    queries = [q.strip() for q in code.split(";") if q.strip()]
    web = [
        probe(-400 + 20 * i, container="web-id", error="refused" if i > 3 else None)
        for i in range(20)
    ]
    web = [msgspec.structs.replace(e, container_name="web") for e in web]
    start = ContainerEvent(
        time=NOW - timedelta(seconds=500), container_id="web-id", action="start", name="web"
    )
    store.append(batch("a", *web, start))
    answered = [bool(store.rows(query)) for query in queries]
    assert len(queries) >= 6
    assert all(answered), answered
