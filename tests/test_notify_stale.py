"""The notifier says when dockping loses sight of a target (its status goes stale) and when
it sees it again, through the real ingest, PostgreSQL and an Apprise webhook."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from dockping.settings import Duration, Settings
from ingest.app import create_app as ingest_app
from notify.api import create_app as notify_app
from tests.events import batch
from tests.test_notify_flow import AUTH, Webhook, eventually, notify_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A webhook served by the test."""
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()


def fresh_probe(interval_ms: int) -> dict[str, Any]:
    """A successful probe made now, with its interval and timeout."""
    return {
        "type": "probe",
        "time": datetime.now(UTC).isoformat(),
        "container_id": "c-stale",
        "container_name": "web-1",
        "ip": "10.9.0.7",
        "port": 80,
        "ok": True,
        "latency_ms": 1.0,
        "interval_ms": interval_ms,
        "timeout_ms": 100,
    }


async def test_a_target_gone_stale_is_told_once_and_its_return_once(
    settings: Settings, database_url: str, webhook: Webhook
) -> None:
    """No probe within interval + timeout + stale_after: one "lost sight of web-1"; the next
    probe: one "sees web-1 again"."""
    config = notify_settings(settings, webhook.url)
    config = msgspec.structs.replace(
        config, query=msgspec.structs.replace(config.query, stale_after=Duration(0.5))
    )
    async with (
        AsyncTestClient(app=ingest_app(config, database_url)) as ingest,
        AsyncTestClient(app=notify_app(config, database_url)),
    ):
        response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(fresh_probe(200)))
        assert response.status_code == 202, response.text
        lost = await eventually(
            lambda: [t for t in webhook.titles() if "lost sight" in t], "the lost-sight message"
        )
        assert lost == ["dockping lost sight of web-1"]
        response = await ingest.post(
            "/api/v1/events", headers=AUTH, json=batch(fresh_probe(60_000))
        )
        assert response.status_code == 202, response.text
        back = await eventually(
            lambda: [t for t in webhook.titles() if "again" in t], "the back-in-sight message"
        )
        assert back == ["dockping sees web-1 again"]
        assert [t for t in webhook.titles() if "lost" in t] == ["dockping lost sight of web-1"]
