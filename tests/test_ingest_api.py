"""POST /api/v1/events against a real PostgreSQL: accepted once, refused with reasons."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import psycopg
import pytest
import structlog
from litestar.testing import AsyncTestClient

from db.embedded import EmbeddedPostgres
from db.migrate import migrate
from dockping.settings import Settings, load
from ingest.app import create_app
from tests.conftest import TEMPLATE
from tests.events import at, batch, lifecycle, probe

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture
async def client(settings: Settings, database_url: str) -> AsyncIterator[AsyncTestClient]:
    """An ingest app on a fresh database."""
    async with AsyncTestClient(app=create_app(settings, database_url)) as client:
        yield client


def count(url: str, table: str) -> int:
    """Rows in a table."""
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


async def test_a_batch_is_accepted_and_stored(client: AsyncTestClient, database_url: str) -> None:
    """A valid batch answers 202 with the count, and its events are in the store."""
    response = await client.post(
        "/api/v1/events",
        headers=AUTH,
        json=batch(probe(0), probe(1, ok=False), lifecycle(2, "start")),
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": 3, "duplicates": 0}
    assert count(database_url, "probe_events") == 2
    assert count(database_url, "container_events") == 1


async def test_a_duplicate_batch_is_stored_once(client: AsyncTestClient, database_url: str) -> None:
    """Sending the same events again is a no-op counted as duplicates."""
    body = batch(probe(0), probe(1), lifecycle(2, "start"))
    first = await client.post("/api/v1/events", headers=AUTH, json=body)
    again = await client.post("/api/v1/events", headers=AUTH, json=body)
    assert first.json() == {"accepted": 3, "duplicates": 0}
    assert again.json() == {"accepted": 0, "duplicates": 3}
    assert count(database_url, "probe_events") == 2


async def test_duplicates_inside_one_batch_are_stored_once(
    client: AsyncTestClient, database_url: str
) -> None:
    """The same event twice in one batch counts once."""
    response = await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0), probe(0)))
    assert response.json() == {"accepted": 1, "duplicates": 1}
    assert count(database_url, "probe_events") == 1


async def test_the_projection_follows_the_events(
    client: AsyncTestClient, database_url: str
) -> None:
    """latest_state shows the last probe, the last success and when the status began."""
    await client.post(
        "/api/v1/events",
        headers=AUTH,
        json=batch(
            probe(0, latency=2.0),
            probe(10, latency=3.0),
            probe(20, ok=False, error="timeout"),
            probe(30, ok=False, error="refused"),
        ),
    )
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT status, error, last_ok_at, status_since, consecutive_failures, last_probe_at"
            " FROM latest_state"
        ).fetchone()
    assert row is not None
    status, error, last_ok_at, since, failures, last_probe_at = row
    assert (status, error, failures) == ("down", "refused", 2)
    assert last_ok_at.isoformat().replace("+00:00", "Z") == at(10)
    assert since.isoformat().replace("+00:00", "Z") == at(20)
    assert last_probe_at.isoformat().replace("+00:00", "Z") == at(30)


async def test_a_stop_after_the_last_probe_shows_stopped(
    client: AsyncTestClient, database_url: str
) -> None:
    """A stopped container's targets are `stopped`, not `down`."""
    await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0), lifecycle(5, "stop")))
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM latest_state").fetchone()
    assert row == ("stopped",)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer test-toke"},
        {"Authorization": "Basic dGVzdC10b2tlbg=="},
        {"Authorization": "Bearer "},
    ],
)
async def test_a_missing_or_wrong_token_is_401(
    client: AsyncTestClient, database_url: str, headers: dict[str, str]
) -> None:
    """Without the right bearer token nothing is stored."""
    response = await client.post("/api/v1/events", headers=headers, json=batch(probe(0)))
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert count(database_url, "probe_events") == 0


async def test_a_bad_event_rejects_the_whole_batch(
    client: AsyncTestClient, database_url: str
) -> None:
    """One bad event: 400 naming it, and nothing of the batch is stored."""
    bad = probe(1)
    bad["ip"] = "300.1.1.1"
    response = await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0), bad))
    assert response.status_code == 400
    assert response.json()["field"] == "$.events[1].ip"
    assert count(database_url, "probe_events") == 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", None),
        (b'{"agent": "a", "events": [{"type": "rumour"}]}', "$.events[0].type"),
        (b'{"agent": "a"}', "$.events"),
        (b'{"agent": 5, "events": []}', "$.agent"),
    ],
)
async def test_malformed_bodies_are_400_with_json(
    client: AsyncTestClient, raw: bytes, field: str | None
) -> None:
    """Malformed JSON, unknown types and missing fields are 400 with a JSON body."""
    response = await client.post(
        "/api/v1/events", headers={**AUTH, "Content-Type": "application/json"}, content=raw
    )
    assert response.status_code == 400
    assert response.json().get("field") == field


async def test_too_many_events_is_413(tmp_path: Any, database_url: str) -> None:
    """More events than ingest.max_events is refused by name."""
    settings = load(
        None,
        {
            "DOCKPING_DATA_DIR": str(tmp_path),
            "DOCKPING_INGEST__TOKEN": "test-token",
            "DOCKPING_INGEST__MAX_EVENTS": "3",
        },
    )
    async with AsyncTestClient(app=create_app(settings, database_url)) as client:
        response = await client.post(
            "/api/v1/events", headers=AUTH, json=batch(*(probe(i) for i in range(4)))
        )
    assert response.status_code == 413
    assert response.json()["field"] == "$.events"


async def test_a_body_too_large_is_413(tmp_path: Any, database_url: str) -> None:
    """A body over ingest.max_body_bytes is refused before it is read whole."""
    settings = load(
        None,
        {
            "DOCKPING_DATA_DIR": str(tmp_path),
            "DOCKPING_INGEST__TOKEN": "test-token",
            "DOCKPING_INGEST__MAX_BODY_BYTES": "2048",
        },
    )
    async with AsyncTestClient(app=create_app(settings, database_url)) as client:
        response = await client.post(
            "/api/v1/events", headers=AUTH, json=batch(*(probe(i) for i in range(40)))
        )
    assert response.status_code == 413


async def test_events_far_in_the_future_are_refused(client: AsyncTestClient) -> None:
    """An event more than max_future_skew ahead is 422 naming its time."""
    response = await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0), probe(3600)))
    assert response.status_code == 422
    assert response.json()["field"] == "$.events[1].time"


async def test_events_older_than_retention_are_refused(client: AsyncTestClient) -> None:
    """An event older than database.retention is 422 naming its time."""
    response = await client.post("/api/v1/events", headers=AUTH, json=batch(probe(-40 * 86400)))
    assert response.status_code == 422
    assert response.json()["field"] == "$.events[0].time"


async def test_per_agent_tokens_bind_an_agent(tmp_path: Any, database_url: str) -> None:
    """An agent with its own token cannot be impersonated with another's."""
    settings = load(
        None,
        {
            "DOCKPING_DATA_DIR": str(tmp_path),
            "DOCKPING_INGEST__TOKEN": "shared",
            "DOCKPING_INGEST__AGENT_TOKENS": '{host-a = "a-secret", host-b = "b-secret"}',
        },
    )
    async with AsyncTestClient(app=create_app(settings, database_url)) as client:
        own = await client.post(
            "/api/v1/events",
            headers={"Authorization": "Bearer a-secret"},
            json=batch(probe(0), agent="host-a"),
        )
        other = await client.post(
            "/api/v1/events",
            headers={"Authorization": "Bearer b-secret"},
            json=batch(probe(1), agent="host-a"),
        )
        shared = await client.post(
            "/api/v1/events",
            headers={"Authorization": "Bearer shared"},
            json=batch(probe(2), agent="host-a"),
        )
    assert own.status_code == 202
    assert other.status_code == 401
    assert shared.status_code == 401


async def test_healthz_answers_once_the_database_does(client: AsyncTestClient) -> None:
    """/healthz is 200 with a reachable database."""
    response = await client.get("/healthz")
    assert response.status_code == 200


async def test_an_unreachable_database_is_503_with_retry_after(settings: Settings) -> None:
    """A database that cannot be reached gives 503 and Retry-After, never a 500."""
    url = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"
    app = create_app(settings, url)
    async with AsyncTestClient(app=app) as client:
        app.state.pool.timeout = 1.0
        response = await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0)))
    assert response.status_code == 503
    assert "Retry-After" in response.headers


async def test_metrics_count_batches_and_events(client: AsyncTestClient) -> None:
    """/metrics exposes accepted and duplicate counts."""
    await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0)))
    await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0)))
    text = (await client.get("/metrics")).text
    assert 'dockping_ingest_events_total{result="accepted"} 1.0' in text
    assert 'dockping_ingest_events_total{result="duplicate"} 1.0' in text
    assert "dockping_ingest_batches_total 2.0" in text


async def test_a_database_restart_gives_503_then_recovers(
    tmp_path: Any, settings: Settings
) -> None:
    """While the database is down a batch gets 503 with Retry-After; after it, it is stored."""
    server = EmbeddedPostgres(tmp_path / "restarting")
    url = server.start()
    port = server.port
    try:
        migrate(url, "auto")
        app = create_app(settings, url)
        async with AsyncTestClient(app=app) as client:
            app.state.pool.timeout = 2.0
            before = await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0)))
            server.stop()
            during = await client.post("/api/v1/events", headers=AUTH, json=batch(probe(1)))
            server.start(port=port)
            after = None
            for _ in range(60):  # the pool reconnects by itself, with a backoff
                after = await client.post("/api/v1/events", headers=AUTH, json=batch(probe(1)))
                if after.status_code != 503:
                    break
                await anyio.sleep(0.5)
        assert before.status_code == 202
        assert during.status_code == 503
        assert during.headers.get("Retry-After") is not None
        assert during.json()["error"] == "unavailable"
        assert after is not None
        assert after.status_code == 202
        assert after.json() == {"accepted": 1, "duplicates": 0}
        assert count(url, "probe_events") == 2
    finally:
        server.stop()


async def test_a_database_replaced_behind_ingest_gets_the_events_sent_again(
    client: AsyncTestClient, database_url: str, pg_admin_url: str
) -> None:
    """A database restored from an older backup while ingest runs: nothing ingest remembered
    of the old one (ids, events stored) keeps a batch sent again from being stored."""
    body = batch(probe(0), probe(1), lifecycle(2, "start"))
    first = await client.post("/api/v1/events", headers=AUTH, json=body)
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        # Every ingest connection is cut, and the database comes back as it was before.
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    again = await client.post("/api/v1/events", headers=AUTH, json=body)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == {"accepted": 3, "duplicates": 0}
    assert (count(database_url, "probe_events"), count(database_url, "target_state")) == (2, 1)


async def test_metrics_name_rejections_write_latency_and_the_pool(client: AsyncTestClient) -> None:
    """/metrics counts rejections by reason and exposes the write histogram and pool gauges."""
    await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0)))
    await client.post("/api/v1/events", headers={"Authorization": "Bearer nope"}, json=batch())
    await client.post("/api/v1/events", headers=AUTH, json=batch(probe(3600)))
    text = (await client.get("/metrics")).text
    assert 'dockping_ingest_rejected_total{reason="unauthorized"} 1.0' in text
    assert 'dockping_ingest_rejected_total{reason="time_skew"} 1.0' in text
    assert "dockping_ingest_write_seconds_count 1.0" in text
    assert 'dockping_ingest_pool_connections{state="total"}' in text


async def test_tokens_never_reach_the_logs(
    client: AsyncTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither a right nor a wrong token appears in any log event, even before redaction."""
    with structlog.testing.capture_logs() as events, caplog.at_level(logging.DEBUG):
        await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0)))
        await client.post(
            "/api/v1/events", headers={"Authorization": "Bearer wrong-secret-x"}, json=batch()
        )
        await client.post(
            "/api/v1/events", headers={"Authorization": "Bearer test-token"}, content=b"{bad"
        )
    logged = repr(events) + caplog.text
    assert "test-token" not in logged
    assert "wrong-secret-x" not in logged


async def test_a_network_disconnect_removes_that_networks_addresses(
    client: AsyncTestClient, database_url: str
) -> None:
    """After a disconnect, the address on that network is gone; the other network's stays."""
    first = probe(0, ip="10.9.0.2")
    second = probe(0, ip="10.8.0.2")
    second["network"] = "backend"
    await client.post("/api/v1/events", headers=AUTH, json=batch(first, second))
    await client.post(
        "/api/v1/events",
        headers=AUTH,
        json=batch(lifecycle(5, "network_disconnect", network="backend")),
    )
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT ip, status = 'gone' FROM latest_state ORDER BY ip").fetchall()
    assert rows == [("10.8.0.2", True), ("10.9.0.2", False)]
    reconnected = probe(10, ip="10.8.0.2")
    reconnected["network"] = "backend"
    await client.post("/api/v1/events", headers=AUTH, json=batch(reconnected))
    with psycopg.connect(database_url) as conn:
        again = conn.execute(
            "SELECT status = 'gone' FROM latest_state WHERE ip = '10.8.0.2'"
        ).fetchone()
    assert again == (False,)


async def test_a_paused_container_is_down_from_the_pause_on(
    client: AsyncTestClient, database_url: str
) -> None:
    """A pause newer than any stop makes the address down (error `paused`) until it unpauses."""
    await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0), lifecycle(5, "pause")))
    await client.post("/api/v1/events", headers=AUTH, json=batch(probe(6)))
    with psycopg.connect(database_url) as conn:
        paused = conn.execute("SELECT status, error, status_since FROM latest_state").fetchone()
    assert paused is not None
    assert paused[:2] == ("down", "paused")
    assert paused[2].isoformat().replace("+00:00", "Z") == at(5)
    await client.post("/api/v1/events", headers=AUTH, json=batch(lifecycle(8, "unpause")))
    with psycopg.connect(database_url) as conn:
        resumed = conn.execute("SELECT status, error FROM latest_state").fetchone()
    assert resumed == ("up", None)


async def test_a_stopping_container_leaving_its_network_is_stopped_not_gone(
    client: AsyncTestClient, database_url: str
) -> None:
    """Docker disconnects a stopping container from its networks; the address shows stopped."""
    await client.post("/api/v1/events", headers=AUTH, json=batch(probe(0)))
    await client.post(
        "/api/v1/events",
        headers=AUTH,
        json=batch(
            lifecycle(5, "die", exit_code=0),
            lifecycle(6, "network_disconnect", network="bridge"),
            lifecycle(7, "stop"),
        ),
    )
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM latest_state").fetchone()
    assert row == ("stopped",)
