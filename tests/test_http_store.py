"""HTTP(S) details and Docker's health through ingest, the store, the API, /metrics and a rebuild."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from db.rebuild import rebuild
from dockping.settings import Settings
from tests.events import NOW, batch, lifecycle, probe
from tests.services import Clients, apps

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer test-token"}
EXPIRY = (datetime.now(UTC) + timedelta(days=40)).replace(microsecond=0)


@pytest.fixture
async def clients(settings: Settings, database_url: str) -> AsyncIterator[Clients]:
    """An ingest and a query app on one fresh database."""
    async with apps(settings, database_url) as both:
        yield both


def http_probe(t: float, status: int | None, ok: bool = True, **fields: Any) -> dict[str, Any]:
    """An https probe of web:443 with a status code (and a certificate, unless told)."""
    event = {
        **probe(t, ok, port=443, protocol="https", error="http_status"),
        "http_status": status,
        "connect_ms": 0.25,
        "tls_not_after": EXPIRY.isoformat(),
    }
    return {**event, **fields}


async def post(ingest: AsyncTestClient, *events: dict[str, Any]) -> None:
    """Post a batch and check it was taken."""
    response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
    assert response.status_code == 202, response.text


def details(url: str) -> list[tuple[Any, ...]]:
    """target_detail as stored."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT target_id, changed_at, http_status, tls_not_after"
            " FROM target_detail ORDER BY target_id"
        ).fetchall()


async def test_the_last_status_and_certificate_show_in_the_api_and_metrics(
    clients: tuple[AsyncTestClient, AsyncTestClient], database_url: str
) -> None:
    """The last probe's status code is listed; a later probe without one clears it, the expiry stays."""
    ingest, query = clients
    await post(ingest, lifecycle(-9, "start"), http_probe(-8, 200))
    await post(ingest, http_probe(-7, 503, ok=False))
    [item] = (await query.get("/api/v1/addresses")).json()["items"]
    assert (item["protocol"], item["status"], item["error"], item["http_status"]) == (
        "https",
        "down",
        "http_status",
        503,
    )
    metrics = (await query.get("/metrics")).text
    assert 'dockping_target_http_status{agent="host-a",container="web"' in metrics
    assert f"{EXPIRY.timestamp():.0f}" in metrics
    page = (await query.get(f"/targets/{item['target_id']}")).text
    assert "Certificate expires" in page
    await post(ingest, probe(-6, False, port=443, protocol="https", error="timeout"))
    [item] = (await query.get("/api/v1/addresses")).json()["items"]
    assert (item["error"], item["http_status"]) == ("timeout", None)
    assert (await query.get(f"/api/v1/targets/{item['target_id']}")).json()["http_status"] is None
    assert "Certificate expires" in (await query.get(f"/targets/{item['target_id']}")).text


async def test_a_rebuild_refolds_the_details_as_ingest_did(
    clients: tuple[AsyncTestClient, AsyncTestClient], database_url: str
) -> None:
    """target_detail rebuilt from probe_details equals the one ingest kept, batch by batch."""
    ingest, _ = clients
    await post(ingest, http_probe(-8, 200), http_probe(-8, 204, ip="10.9.0.3"))
    await post(ingest, http_probe(-7, 404, ok=False, tls_not_after=None))
    await post(ingest, http_probe(-6, 200), http_probe(-5, 200))  # two of one target at once
    await post(ingest, http_probe(-6, 200))  # sent again: a duplicate
    kept = details(database_url)
    assert [row[2] for row in kept] == [200, 204]
    rebuild(database_url)
    assert details(database_url) == kept


async def test_health_is_listed_and_filtered(
    clients: tuple[AsyncTestClient, AsyncTestClient],
) -> None:
    """Each address carries its container's health; ?health= keeps those containers only."""
    ingest, query = clients
    await post(
        ingest,
        lifecycle(-9, "start", container="c1", name="sick"),
        lifecycle(-9, "start", container="c2", name="well"),
        lifecycle(-9, "start", container="c3", name="plain"),
        lifecycle(-8, "health_status", container="c1", name="sick", health="unhealthy"),
        lifecycle(-8, "health_status", container="c2", name="well", health="healthy"),
        probe(-7, container="c1", name="sick"),
        probe(-7, container="c2", name="well", ip="10.9.0.3"),
        probe(-7, container="c3", name="plain", ip="10.9.0.4"),
    )
    items = (await query.get("/api/v1/addresses")).json()["items"]
    assert {i["container_name"]: i["health"] for i in items} == {
        "sick": "unhealthy",
        "well": "healthy",
        "plain": None,
    }
    sick = (await query.get("/api/v1/addresses?health=unhealthy")).json()["items"]
    assert [i["container_name"] for i in sick] == ["sick"]
    page = (await query.get("/addresses?health=unhealthy")).text
    assert "sick" in page
    assert "well" not in page
    bad = await query.get("/api/v1/addresses?health=poorly")
    assert (bad.status_code, bad.json()["field"]) == (400, "health")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"protocol": "tcp", "port": 80}, "$.events[0].http_status"),
        ({"port": None}, "$.events[0].port"),
        ({"http_status": 99}, "$.events[0].http_status"),
        (
            {"http_status": None, "tls_not_after": None, "connect_ms": None},
            "$.events[0].http_status",
        ),
        ({"connect_ms": -1}, "$.events[0].connect_ms"),
        ({"tls_not_after": "soon"}, "$.events[0].tls_not_after"),
    ],
)
async def test_bad_http_fields_are_refused_by_name(
    clients: tuple[AsyncTestClient, AsyncTestClient], fields: dict[str, Any], field: str
) -> None:
    """A detail on a tcp probe, a missing port or code, or a bad value is a 400 naming it."""
    ingest, _ = clients
    event = {**http_probe(0, 503, ok=False), **fields}
    response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(event))
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


def changes(url: str) -> list[tuple[Any, ...]]:
    """probe_details as stored: (status, whether it holds an expiry), in time order."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT http_status, tls_not_after IS NOT NULL FROM probe_details ORDER BY time"
        ).fetchall()


async def test_the_store_keeps_changes_not_every_probe(
    clients: tuple[AsyncTestClient, AsyncTestClient], database_url: str
) -> None:
    """Repeated answers add no row; a new status, an answer lost, a new certificate, and a new UTC day each add one."""
    ingest, _ = clients
    await post(ingest, *(http_probe(-60 + i, 200) for i in range(3)))
    await post(ingest, http_probe(-50, 200), http_probe(-49, 200))
    await post(ingest, http_probe(-50, 200))  # sent again
    assert changes(database_url) == [(200, True)]
    await post(ingest, http_probe(-40, 503, ok=False), http_probe(-39, 503, ok=False))
    await post(ingest, probe(-38, False, port=443, protocol="https", error="timeout"))
    await post(ingest, http_probe(-37, 200))
    renewed = (EXPIRY + timedelta(days=90)).isoformat()
    await post(ingest, http_probe(-36, 200), http_probe(-35, 200, tls_not_after=renewed))
    assert changes(database_url) == [
        (200, True),
        (503, False),
        (None, False),
        (200, False),
        (200, True),
    ]
    midnight = NOW.replace(hour=0, minute=0, second=0)
    before = (midnight - NOW).total_seconds()
    await post(ingest, http_probe(before - 2, 200, ip="10.9.0.7"))
    await post(ingest, http_probe(before + 1, 200, ip="10.9.0.7"))
    assert changes(database_url)[:2] == [(200, True), (200, True)]
    assert len(changes(database_url)) == 7
