"""Keyset paging of /api/v1/addresses: properties over random data, and inserts while paging."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from dockping.settings import Settings
from ingest.app import create_app as ingest_app
from query.app import create_app as query_app
from tests.events import batch, probe

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer test-token"}
SORTS = ["name", "status", "latency", "last_ok"]
BASE = datetime(2026, 1, 1, tzinfo=UTC)

# A target as Hypothesis draws it: few distinct values, so that sort keys tie often.
target_rows = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["a", "B", "b", "web", "db", ""]),
            "agent": st.sampled_from(["host-a", "host-b"]),
            "state": st.sampled_from(["up", "down", "never", "stopped"]),
            "latency_us": st.sampled_from([0, 1500, 1500, 20000]),
            "last_ok": st.sampled_from([None, 0, 60, 60]),
            "port": st.sampled_from([None, 80, 443]),
        }
    ),
    max_size=30,
)


def load_rows(conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> None:
    """Replace every target with these, written straight into the dimension and state tables."""
    conn.execute(
        "TRUNCATE target_state, container_state, targets, containers, agents RESTART IDENTITY CASCADE"
    )
    for index, row in enumerate(rows):
        agent = conn.execute(
            "INSERT INTO agents (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name "
            "RETURNING agent_id",
            (row["agent"],),
        ).fetchone()
        assert agent is not None
        container = conn.execute(
            "INSERT INTO containers (agent_id, container_id, name) VALUES (%s, %s, %s) "
            "RETURNING container_key",
            (agent[0], f"c{index}", row["name"]),
        ).fetchone()
        assert container is not None
        target = conn.execute(
            "INSERT INTO targets (container_key, ip, port, protocol) VALUES (%s, %s, %s, 'tcp') "
            "RETURNING target_id",
            (container[0], f"10.0.{index // 250}.{index % 250 + 1}", row["port"]),
        ).fetchone()
        assert target is not None
        if row["state"] == "never":
            continue
        probed = BASE + timedelta(seconds=120)
        last_ok = None if row["last_ok"] is None else BASE + timedelta(seconds=row["last_ok"])
        latency_us = row["latency_us"] if row["state"] != "down" else -1
        conn.execute(
            "INSERT INTO target_state (target_id, last_probe_at, latency_us, last_ok_at, "
            "status_since, consecutive_failures) VALUES (%s, %s, %s, %s, %s, %s)",
            (target[0], probed, latency_us, last_ok, BASE, 0 if latency_us >= 0 else 1),
        )
        if row["state"] == "stopped":
            conn.execute(
                "INSERT INTO container_state (container_key, action, action_at) VALUES (%s, 'stop', %s)",
                (container[0], probed + timedelta(seconds=1)),
            )


async def walk(
    query: AsyncTestClient, params: dict[str, Any], limit: int
) -> tuple[list[int], list[dict[str, Any]]]:
    """Follow next_cursor from the first page to the last; the ids in order, and the pages."""
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        response = await query.get(
            "/api/v1/addresses",
            params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})},
        )
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return [i["target_id"] for p in pages for i in p["items"]], pages
        assert len(pages) < 1000, "paging does not end"


@pytest.fixture
async def query(settings: Settings, database_url: str) -> AsyncIterator[AsyncTestClient]:
    """A query app on a fresh database."""
    async with AsyncTestClient(app=query_app(settings, database_url)) as client:
        yield client


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=target_rows,
    sort=st.sampled_from(SORTS),
    limit=st.integers(min_value=1, max_value=7),
    status=st.sampled_from([None, "up", "down,stopped", "unknown"]),
    agent=st.sampled_from([None, "host-b"]),
    text=st.sampled_from([None, "b", "10.0.0.1"]),
)
async def test_pages_join_up_to_one_full_ordered_read(
    query: AsyncTestClient,
    database_url: str,
    rows: list[dict[str, Any]],
    sort: str,
    limit: int,
    status: str | None,
    agent: str | None,
    text: str | None,
) -> None:
    """Walking Next from the first page gives exactly the rows of one full read, in its order, and Previous walks back the same pages."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_rows(conn, rows)
    params = {
        k: v for k, v in {"sort": sort, "status": status, "agent": agent, "q": text}.items() if v
    }
    full = (await query.get("/api/v1/addresses", params={**params, "limit": 500})).json()
    expected = [item["target_id"] for item in full["items"]]
    walked, pages = await walk(query, params, limit)
    assert expected == walked
    assert all(len(p["items"]) <= limit for p in pages)
    back = pages[-1]
    for page in reversed(pages[:-1]):
        response = await query.get(
            "/api/v1/addresses", params={**params, "limit": limit, "cursor": back["prev_cursor"]}
        )
        back = response.json()
        assert [i["target_id"] for i in page["items"]] == [i["target_id"] for i in back["items"]]
    assert back["prev_cursor"] is None


@pytest.mark.parametrize("sort", SORTS)
async def test_inserts_while_paging_never_repeat_or_skip_existing_rows(
    settings: Settings, database_url: str, sort: str
) -> None:
    """New targets arriving between pages neither repeat nor hide any row that existed when paging began."""
    rng = random.Random(sort)
    names = ["alpha", "beta", "gamma", "delta", "omega", "zeta"]

    def some(start: int, count: int) -> list[dict[str, Any]]:
        return [
            probe(
                -rng.randint(0, 100),
                ok=rng.random() > 0.3,
                container=f"k{start + i}",
                name=rng.choice(names),
                ip=f"10.7.{(start + i) // 200}.{(start + i) % 200 + 1}",
                latency=rng.choice([1.0, 2.5, 7.0]),
            )
            for i in range(count)
        ]

    async with (
        AsyncTestClient(app=ingest_app(settings, database_url)) as ingest,
        AsyncTestClient(app=query_app(settings, database_url)) as query,
    ):
        assert (
            await ingest.post("/api/v1/events", headers=AUTH, json=batch(*some(0, 40)))
        ).status_code == 202
        before = (await query.get("/api/v1/addresses", params={"sort": sort, "limit": 500})).json()
        existing = [item["target_id"] for item in before["items"]]
        seen: list[int] = []
        cursor = None
        added = 40
        while True:
            params = {"sort": sort, "limit": 6, **({"cursor": cursor} if cursor else {})}
            page = (await query.get("/api/v1/addresses", params=params)).json()
            seen.extend(item["target_id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            response = await ingest.post(
                "/api/v1/events", headers=AUTH, json=batch(*some(added, 5))
            )
            assert response.status_code == 202
            added += 5
        assert len(seen) == len(set(seen))
        assert set(existing) <= set(seen)
        # The rows that existed keep their relative order.
        assert existing == [target_id for target_id in seen if target_id in set(existing)]
