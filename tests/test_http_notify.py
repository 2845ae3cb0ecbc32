"""Notification rules on what HTTP(S) probes and Docker add: certificate expiry, health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import psycopg_pool
import pytest
from litestar.testing import AsyncTestClient

from dockping.settings import Duration, NotifyRule, NotifySettings, Settings
from ingest.app import create_app as ingest_app
from notify.follower import Follower
from notify.rules import TLS_EXPIRING, UNHEALTHY, outcome, params
from tests.events import NOW, batch, lifecycle, probe

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer test-token"}


def rule(**fields: Any) -> NotifyRule:
    """A rule down after one failure, to a channel never delivered in these tests."""
    return NotifyRule(
        **{"name": "ops", "urls": ["json://127.0.0.1:9/hook"], "down_after": 1, **fields}
    )


def test_a_certificate_expiring_within_the_window_fails_the_probe() -> None:
    """With tls_expires_within 14d, a certificate 10 days from expiry fails, one 20 days not."""
    p = params(rule(tls_expires_within=Duration.parse("14d")), 4, 600)
    soon, later = NOW + timedelta(days=10), NOW + timedelta(days=20)
    assert outcome(p, NOW, 1500, soon) == -TLS_EXPIRING
    assert outcome(p, NOW, 1500, later) == 1500
    assert outcome(p, NOW, -2, soon) == -2  # a failure stays what it was
    off = params(rule(), 4, 600)
    assert outcome(off, NOW, 1500, soon) == 1500


def test_an_unhealthy_container_fails_only_under_a_rule_that_says_so() -> None:
    """unhealthy = true makes a successful probe of an unhealthy container fail; the default not."""
    on = params(rule(unhealthy=True), 4, 600)
    off = params(rule(), 4, 600)
    assert outcome(on, NOW, 1500, None, "unhealthy") == -UNHEALTHY
    assert outcome(on, NOW, 1500, None, "healthy") == 1500
    assert outcome(off, NOW, 1500, None, "unhealthy") == 1500


@pytest.fixture
async def ingest(settings: Settings, database_url: str) -> AsyncIterator[AsyncTestClient]:
    """The real ingest app on a fresh database."""
    async with AsyncTestClient(app=ingest_app(settings, database_url)) as client:
        yield client


async def fold(settings: Settings, database_url: str, *rules: NotifyRule) -> list[tuple[str, str]]:
    """Fold every stored probe through the rules; the (channel, body) queued, oldest first."""
    config = msgspec.structs.replace(settings, notify=NotifySettings(rules=list(rules)))
    async with psycopg_pool.AsyncConnectionPool(database_url, min_size=1, open=False) as pool:
        await Follower(config).fold(pool, None)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT channel, body FROM notify_outbox ORDER BY delivery_id")
        return [(str(channel).partition("#")[0], str(body)) for channel, body in rows]


def https_probe(t: float, not_after: datetime) -> dict[str, Any]:
    """A successful https probe event with a certificate expiry."""
    return {
        **probe(t, port=443, protocol="https"),
        "http_status": 200,
        "connect_ms": 0.4,
        "tls_not_after": not_after.isoformat(),
    }


async def test_a_rule_tells_of_a_certificate_about_to_expire(
    settings: Settings, database_url: str, ingest: AsyncTestClient
) -> None:
    """Stored https probes with a certificate 3 days from expiry make a down message saying so."""
    expiry = datetime.now(UTC) + timedelta(days=3)
    response = await ingest.post(
        "/api/v1/events", headers=AUTH, json=batch(https_probe(-2, expiry), https_probe(-1, expiry))
    )
    assert response.status_code == 202, response.text
    queued = await fold(
        settings, database_url, rule(), rule(name="tls", tls_expires_within=Duration.parse("14d"))
    )
    assert [channel for channel, _ in queued] == ["tls"]
    assert "DOWN" in queued[0][1]
    assert "certificate expiring" in queued[0][1]


async def test_a_rule_tells_of_an_unhealthy_container(
    settings: Settings, database_url: str, ingest: AsyncTestClient
) -> None:
    """Successful probes after a health_status unhealthy event make a down message saying so."""
    events = [
        lifecycle(-5, "start"),
        probe(-4),
        lifecycle(-3, "health_status", health="unhealthy"),
        probe(-2),
    ]
    response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
    assert response.status_code == 202, response.text
    queued = await fold(settings, database_url, rule(), rule(name="health", unhealthy=True))
    assert [channel for channel, _ in queued] == ["health"]
    assert "DOWN" in queued[0][1]
    assert "unhealthy" in queued[0][1]
