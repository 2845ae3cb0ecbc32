"""The rollup refresher (plain PostgreSQL): logged minutes become stored rollups, none missed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import msgspec
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from db.append import EventWriter
from dockping.contract import Batch, ProbeEvent
from dockping.settings import Duration, Settings
from ingest.app import create_app as ingest_app

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
AUTH = {"Authorization": "Bearer test-token"}


def probe(at: datetime, latency_ms: float = 1.0) -> ProbeEvent:
    """A successful probe of one target at a time."""
    return ProbeEvent(
        time=at, container_id="c1", ip="10.0.0.1", port=80, ok=True, latency_ms=latency_ms
    )


def append(url: str, *events: ProbeEvent) -> None:
    """Append a batch through the ingest write path."""

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await EventWriter("postgres", 86400).append(conn, Batch(agent="a", events=list(events)))

    anyio.run(run)


def stored_minutes(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    """Every stored minute: bucket and probe count."""
    return conn.execute("SELECT bucket, probes FROM probe_minute ORDER BY bucket").fetchall()


def test_a_batch_open_during_a_refresh_is_stored_by_the_next(database_url: str) -> None:
    """Events committed after a refresh read their minute are not lost: their log row waits for the next refresh."""
    minute = NOW - timedelta(minutes=10)
    append(database_url, probe(minute + timedelta(seconds=1)))
    with (
        psycopg.connect(database_url) as batch,
        psycopg.connect(database_url, autocommit=True) as refresher,
    ):
        # A batch in flight: its event and its log row, not yet committed.
        target_id = batch.execute("SELECT target_id FROM targets").fetchone()
        batch.execute(
            "INSERT INTO probe_events VALUES (%s, %s, 2000)",
            (minute + timedelta(seconds=2), target_id[0] if target_id else None),
        )
        batch.execute("INSERT INTO rollup_log VALUES (%s)", (minute,))
        refresher.execute("SELECT dockping_refresh_rollups()")
        assert stored_minutes(refresher) == [(minute, 1)]
        batch.commit()
        # Read from the events until the next refresh stores it.
        view = "SELECT bucket, probes FROM latency_minute"
        assert refresher.execute(view).fetchall() == [(minute, 2)]
        assert refresher.execute("SELECT count(*) FROM rollup_log").fetchone() == (1,)
        refresher.execute("SELECT dockping_refresh_rollups()")
        assert stored_minutes(refresher) == [(minute, 2)]
        assert refresher.execute("SELECT count(*) FROM rollup_log").fetchone() == (0,)
        assert refresher.execute(view).fetchall() == [(minute, 2)]


def test_minutes_and_hours_wait_until_they_have_ended(database_url: str) -> None:
    """A refresh stores only buckets that have ended; the current minute and hour stay logged."""
    # Mid-minute, so that a second later is still the same minute.
    now = datetime.now(UTC).replace(second=30)
    append(database_url, probe(now - timedelta(hours=2)), probe(now))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT dockping_refresh_rollups(%s)", (now + timedelta(seconds=1),))
        minutes = stored_minutes(conn)
        hours = conn.execute("SELECT bucket FROM probe_hour").fetchall()
        logged = conn.execute("SELECT bucket FROM rollup_log").fetchall()
        hour_logged = conn.execute("SELECT bucket FROM rollup_hour_log").fetchall()
    old = now - timedelta(hours=2)
    assert minutes == [(old.replace(second=0, microsecond=0), 1)]
    assert hours == [(old.replace(minute=0, second=0, microsecond=0),)]
    assert logged == [(now.replace(second=0, microsecond=0),)]
    assert hour_logged == []  # the old hour is stored; the current one is logged at minute level


@pytest.mark.anyio
async def test_ingest_runs_the_refresher(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """Ingest refreshes the rollups by itself every database.rollup_interval."""
    fast = msgspec.structs.replace(
        settings,
        database=msgspec.structs.replace(settings.database, rollup_interval=Duration(0.2)),
    )
    at = NOW - timedelta(minutes=5)
    body = {
        "agent": "a",
        "events": [
            {
                "type": "probe",
                "time": at.isoformat(),
                "container_id": "c1",
                "ip": "10.0.0.1",
                "port": 80,
                "ok": True,
                "latency_ms": 3.0,
            },
        ],
    }
    async with AsyncTestClient(app=ingest_app(fast, database_url)) as ingest:
        response = await ingest.post("/api/v1/events", headers=AUTH, json=body)
        assert response.status_code == 202, response.text
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            with anyio.fail_after(30):
                while True:
                    cursor = await conn.execute("SELECT bucket, probes FROM probe_minute")
                    rows = await cursor.fetchall()
                    if rows:
                        break
                    await anyio.sleep(0.1)
    assert rows == [(at, 1)]
