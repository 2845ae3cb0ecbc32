"""The address listing's own table (address_listing) and its page query, against latest_state.

The listing pages read address_listing and target_state instead of the latest_state view; the
triggers on the dimension and lifecycle tables keep address_listing current. These tests drive
random event histories through the real ingest app and check that every page shows exactly
what latest_state says, before and after a rebuild.
"""

from __future__ import annotations

import random
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from db.migrate import check_schema
from db.queries import sql
from db.rebuild import rebuild
from dockping.settings import Settings
from ingest.app import create_app as ingest_app
from query.addresses import NEVER_OK, Address
from query.app import create_app as query_app
from query.charts import sparkline
from query.cursor import Cursor, encode
from tests.events import NOW, batch, lifecycle, probe
from tests.test_storage_contract import timescaledb_store

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer test-token"}
SORTS = ["name", "status", "latency", "last_ok"]
ACTIONS = [
    "start",
    "stop",
    "die",
    "kill",
    "oom",
    "pause",
    "unpause",
    "restart",
    "destroy",
    "rename",
    "health_status",
    "network_disconnect",
]
LATEST = """
SELECT l.target_id, l.agent, l.container_id, l.container_name, l.image, l.compose_project,
       l.network, l.ip, l.port, l.protocol, l.status, l.latency_ms::float8 AS latency_ms, l.error,
       l.last_probe_at, l.last_ok_at, l.status_since, l.consecutive_failures, l.last_error,
       l.stale_since,
       (SELECT d.http_status FROM target_detail d WHERE d.target_id = l.target_id) AS http_status,
       (SELECT cs.health FROM targets t JOIN container_state cs USING (container_key)
        WHERE t.target_id = l.target_id) AS health
FROM latest_state l WHERE l.status <> 'gone'
"""


@pytest.fixture(params=["postgres"])
def backend_url(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    """A fresh database of one backend: plain PostgreSQL unless a test asks for more."""
    if request.param == "postgres":
        yield database_url
    else:
        yield from (store.url for store in timescaledb_store())


@pytest.fixture
async def clients(
    settings: Settings, backend_url: str
) -> AsyncIterator[tuple[AsyncTestClient, AsyncTestClient]]:
    """An ingest and a query app on one fresh database."""
    async with (
        AsyncTestClient(app=ingest_app(settings, backend_url)) as ingest,
        AsyncTestClient(app=query_app(settings, backend_url)) as query,
    ):
        yield ingest, query


def history(seed: int) -> list[list[dict[str, Any]]]:
    """A random history of probes and lifecycle events over a few containers, in batches."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    names = {f"c{i}": rng.choice(["web", "Web", "db", "ÄPI_1"]) for i in range(5)}
    addresses = [
        (container, f"10.5.{i}.{j + 2}", port)
        for i, container in enumerate(names)
        for j, port in enumerate(rng.sample([80, 443, None], rng.randint(1, 2)))
    ]
    for step in range(rng.randint(20, 60)):
        t = -600 + step * 5
        if rng.random() < 0.65:
            container, ip, port = rng.choice(addresses)
            events.append(
                probe(
                    t,
                    ok=rng.random() < 0.6,
                    container=container,
                    name=names[container],
                    ip=ip,
                    port=port,
                    protocol="tcp" if port else "icmp",
                    latency=rng.choice([0.4, 1.5, 1.5, 9.0]),
                    error=rng.choice(["refused", "timeout"]),
                )
            )
            continue
        container = rng.choice(list(names))
        action = rng.choice(ACTIONS)
        extra: dict[str, Any] = {}
        if action == "rename":
            names[container] = rng.choice(["web", "db", "50% cache", "Zeta"])
        if action == "die":
            extra["exit_code"] = 1
        if action == "health_status":
            extra["health"] = "healthy"
        if action == "network_disconnect":
            extra["network"] = rng.choice(["bridge", "other"])
        events.append(
            lifecycle(
                t,
                action,
                container=container,
                name=names[container],
                image=rng.choice(["img:1", "img:2"]),
                **extra,
            )
        )
    batches: list[list[dict[str, Any]]] = []
    while events:
        size = rng.randint(1, 8)
        batches.append(events[:size])
        events = events[size:]
    return batches


def latest(url: str) -> dict[int, dict[str, Any]]:
    """latest_state's current rows as the API writes them, by target id."""
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute(LATEST).fetchall()
    return {row["target_id"]: msgspec.to_builtins(msgspec.convert(row, Address)) for row in rows}


def matching(url: str, text: str) -> list[int]:
    """The ids latest_state's text filter finds: ILIKE on name, image or IP, text taken literally."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            LATEST + " AND (container_name ILIKE %(q)s OR image ILIKE %(q)s OR ip ILIKE %(q)s)",
            {"q": pattern},
        ).fetchall()
    return sorted(row[0] for row in rows)


async def listed(query: AsyncTestClient, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every row of the listing with these parameters, following Next."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        response = await query.get(
            "/api/v1/addresses",
            params={**params, "limit": "4", **({"cursor": cursor} if cursor else {})},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def check_against_latest_state(query: AsyncTestClient, url: str) -> None:
    """Each sort and each status filter shows exactly latest_state's rows, field by field."""
    expected = latest(url)
    for sort in SORTS:
        rows = await listed(query, {"sort": sort})
        assert sorted(expected) == sorted(r["target_id"] for r in rows), sort
        for row in rows:
            assert expected[row["target_id"]] == msgspec.to_builtins(
                msgspec.json.decode(msgspec.json.encode(row), type=Address)
            )
    for status in ("up", "down", "stale", "stopped", "unknown"):
        rows = await listed(query, {"status": status})
        wanted = sorted(i for i, row in expected.items() if row["status"] == status)
        assert wanted == sorted(r["target_id"] for r in rows), status
    with psycopg.connect(url) as conn:
        gone = conn.execute(
            "SELECT target_id FROM latest_state WHERE status = 'gone' ORDER BY 1"
        ).fetchall()
    rows = await listed(query, {"status": "gone"})
    assert [row[0] for row in gone] == sorted(r["target_id"] for r in rows)
    for text in ("web", "WEB", "Zeta", "10.5.1", "IMG:2", "%", "_", "\\", "äpi_", "0% C"):
        rows = await listed(query, {"q": text})
        assert matching(url, text) == sorted(r["target_id"] for r in rows), text


# Both listing tables, row by row (as JSON: gone_at may be 'infinity').
LISTING = (
    "SELECT to_jsonb(a)::text, to_jsonb(lc)::text FROM address_listing a"
    " FULL JOIN address_lifecycle lc USING (target_id) ORDER BY target_id"
)


def listing_table(url: str) -> list[tuple[Any, ...]]:
    """address_listing and address_lifecycle as stored, in target order."""
    with psycopg.connect(url) as conn:
        return conn.execute(LISTING).fetchall()


def recomputed(url: str) -> list[tuple[Any, ...]]:
    """The listing tables as computed afresh from the tables they come from (then rolled back)."""
    with psycopg.connect(url) as conn:
        conn.execute("SELECT dockping_refresh_listing(NULL), dockping_refresh_lifecycle(NULL)")
        rows = conn.execute(LISTING).fetchall()
        conn.rollback()
    return rows


@pytest.mark.parametrize(
    ("backend_url", "seed"),
    [*(("postgres", seed) for seed in range(6)), *(("timescaledb", seed) for seed in range(2))],
    indirect=["backend_url"],
)
async def test_the_listing_shows_what_latest_state_says(
    clients: tuple[AsyncTestClient, AsyncTestClient], backend_url: str, seed: int
) -> None:
    """After any history of probes, renames, pauses, stops, detachments and removals, every sort and status filter lists exactly latest_state's current rows, and a rebuild keeps it so."""
    ingest, query = clients
    for events in history(seed):
        response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
        assert response.status_code == 202, response.text
    assert listing_table(backend_url), "the history made no target"
    assert await listed(query, {"q": "web"}), "the history named no container web"
    assert recomputed(backend_url) == listing_table(backend_url)
    await check_against_latest_state(query, backend_url)
    rebuild(backend_url)
    assert recomputed(backend_url) == listing_table(backend_url)
    await check_against_latest_state(query, backend_url)


async def test_a_rebuild_runs_while_a_batch_adds_a_target(
    clients: tuple[AsyncTestClient, AsyncTestClient], database_url: str
) -> None:
    """A rebuild neither waits for nor deadlocks with an open transaction that added a target and then writes target_state, and both rows come out right."""
    ingest, query = clients
    events = [probe(-30, container="k1", name="alpha"), lifecycle(-20, "stop", container="k1")]
    response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
    assert response.status_code == 202, response.text
    with psycopg.connect(database_url) as adder:
        row = adder.execute(
            "INSERT INTO targets (container_key, ip, port, protocol)"
            " SELECT container_key, '10.8.0.9', 81, 'tcp' FROM targets RETURNING target_id"
        ).fetchone()
        assert row is not None
        failures: list[BaseException] = []

        def run() -> None:
            try:
                rebuild(database_url)
            except BaseException as exc:  # handed to the test thread
                failures.append(exc)

        rebuilder = threading.Thread(target=run)
        rebuilder.start()
        rebuilder.join(timeout=30)
        assert not rebuilder.is_alive(), "the rebuild waits for the open transaction"
        assert failures == []
        adder.execute(
            "INSERT INTO target_state (target_id, last_probe_at, latency_us, status_since,"
            " consecutive_failures) VALUES (%s, now(), 500, now(), 0)",
            (row[0],),
        )
        adder.commit()
    assert recomputed(database_url) == listing_table(database_url)
    await check_against_latest_state(query, database_url)
    statuses = {r["port"]: r["status"] for r in await listed(query, {})}
    assert statuses == {80: "stopped", 81: "up"}


async def test_truncating_lifecycle_state_refreshes_the_listing(
    clients: tuple[AsyncTestClient, AsyncTestClient], database_url: str
) -> None:
    """A stopped container's address is up again in the listing once container_state is truncated."""
    ingest, query = clients
    events = [probe(-20, container="k1", name="alpha"), lifecycle(-10, "stop", container="k1")]
    response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
    assert response.status_code == 202, response.text
    assert [r["status"] for r in await listed(query, {})] == ["stopped"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE container_state")
    assert [r["status"] for r in await listed(query, {})] == ["up"]
    assert recomputed(database_url) == listing_table(database_url)


async def test_a_never_probed_target_pages_by_last_success(
    clients: tuple[AsyncTestClient, AsyncTestClient], database_url: str
) -> None:
    """Targets that never succeeded come last in the last-success order, and paging reaches them."""
    ingest, query = clients
    events = [
        probe(-30, container="k1", name="a", ip="10.6.0.2"),
        probe(-20, ok=False, container="k2", name="b", ip="10.6.0.3"),
        probe(-10, container="k3", name="c", ip="10.6.0.4"),
    ]
    response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
    assert response.status_code == 202, response.text
    response = await query.get("/api/v1/addresses", params={"sort": "last_ok", "limit": "2"})
    first = response.json()
    assert [r["container_name"] for r in first["items"]] == ["c", "a"]
    response = await query.get(
        "/api/v1/addresses",
        params={"sort": "last_ok", "limit": "2", "cursor": first["next_cursor"]},
    )
    assert [r["container_name"] for r in response.json()["items"]] == ["b"]
    assert response.json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("sort", "key"),
    [
        ("last_ok", [2**62]),  # past year 9999
        ("last_ok", [-(2**63)]),
        ("latency", [2**70]),
        ("status", [1.5]),
        ("name", ["a", "b", 2**64]),
    ],
)
async def test_a_cursor_key_out_of_range_is_a_400(
    clients: tuple[AsyncTestClient, AsyncTestClient], sort: str, key: list[Any]
) -> None:
    """A made-up cursor whose key has no value in its sort's type is refused with 400, naming the cursor."""
    _, query = clients
    cursor = encode(Cursor(sort, "next", key, 1))
    response = await query.get("/api/v1/addresses", params={"sort": sort, "cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "cursor"


async def test_a_cursor_for_never_succeeded_rows_is_accepted(
    clients: tuple[AsyncTestClient, AsyncTestClient],
) -> None:
    """The last-success stand-in for "never" is a valid cursor position."""
    _, query = clients
    cursor = encode(Cursor("last_ok", "next", [NEVER_OK], 1))
    response = await query.get("/api/v1/addresses", params={"sort": "last_ok", "cursor": cursor})
    assert response.status_code == 200, response.text


def test_a_sparkline_splits_at_missing_minutes_and_marks_failures() -> None:
    """A minute without a value or a gap of more than a minute ends a line; a lone minute is a dot; failed minutes get a tick."""
    svg = str(
        sparkline(
            [0.0, 60.0, 120.0, 300.0, 360.0, 420.0],
            [1.0, 2.0, None, 4.0, 2.0, 1.0],
            [0, 0, 3, 1, 0, 0],
            3600.0,
        )
    )
    assert svg.count("<polyline") == 2
    assert svg.count("<circle") == 0
    assert svg.count('class="spark-fail"') == 2
    # The axis tops at 5 ms: 1 ms is at y 21 - 19/5, 2 ms at 21 - 2 * 19/5; a minute is 2 wide.
    assert 'points="0,17.2 2,13.4"' in svg
    lone = str(sparkline([600.0], [3.0], [0], 3600.0))
    assert '<circle class="spark-line" cx="20" cy="9.6" r="1"/>' in lone


@pytest.mark.parametrize("backend_url", ["postgres", "timescaledb"], indirect=True)
async def test_uptime_from_hours_and_minutes_equals_the_minute_sum(
    clients: tuple[AsyncTestClient, AsyncTestClient], backend_url: str
) -> None:
    """The 24 h counts read from whole hours plus the minutes before them equal the sum of every minute."""
    ingest, _ = clients
    now = datetime.now(UTC)
    events = [
        probe((now - timedelta(minutes=m) - NOW).total_seconds(), ok=m % 7 != 0, name="u")
        for m in range(1, 26 * 60, 9)
    ]
    for start in range(0, len(events), 50):
        response = await ingest.post(
            "/api/v1/events", headers=AUTH, json=batch(*events[start : start + 50])
        )
        assert response.status_code == 202, response.text
    since = now - timedelta(hours=24)
    hour = since.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    with psycopg.connect(backend_url, autocommit=True) as conn:
        # Store the settled minutes and hours, as the refresher would (on TimescaleDB its
        # policies, whose first run may have stored some minutes before the older batches came
        # in); the views read the rest from the events.
        if check_schema(conn) == "timescaledb":
            for view, settled in (("probe_minute", "1 minute"), ("probe_hour", "1 hour")):
                conn.execute(
                    "CALL refresh_continuous_aggregate(%s, NULL,"
                    " date_trunc('minute', now()) - %s::interval)",
                    (view, settled),
                )
        else:
            conn.execute("SELECT dockping_refresh_rollups()")
        hourly = conn.execute(
            sql("addresses_uptime"), {"target_ids": [1], "since": since, "hour": hour}
        ).fetchall()
        minutes = conn.execute(
            "SELECT target_id, sum(probes)::bigint, sum(failures)::bigint FROM latency_minute"
            " WHERE target_id = 1 AND bucket >= %(since)s GROUP BY target_id",
            {"since": since},
        ).fetchall()
    assert minutes == hourly
    assert minutes[0][1] > 100
