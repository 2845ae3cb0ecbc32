"""GET /api/v1/targets/{id}/latency: bucket arithmetic against the raw events, and its limits."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import mean

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from dockping.settings import Settings
from ingest.app import create_app as ingest_app
from query.app import create_app as query_app
from query.latency import align_down, align_up

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer test-token"}
NOW = datetime.now(UTC).replace(microsecond=0)
SPAN = timedelta(hours=3)
BUCKETS = {"10s": 10, "45s": 45, "1m": 60, "5m": 300, "7m": 420, "1h": 3600}


@dataclass(frozen=True)
class Sent:
    """One probe as sent: its time, and its latency in ms (None: it failed)."""

    time: datetime
    latency_ms: float | None


@dataclass(frozen=True)
class Seeded:
    """A query client over one target whose every probe is known."""

    query: AsyncTestClient
    target_id: int
    sent: list[Sent]


def rfc3339(moment: datetime) -> str:
    """RFC 3339 text of a time."""
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
async def seeded(settings: Settings, database_url: str) -> AsyncIterator[Seeded]:
    """1,500 probes of one target at random instants over three hours, a fifth of them failed."""
    rng = random.Random(5)
    offsets = sorted(rng.sample(range(int(SPAN.total_seconds() * 1000)), 1500))
    sent = [
        Sent(
            NOW - SPAN + timedelta(milliseconds=offset),
            None if rng.random() < 0.2 else round(rng.uniform(0.1, 40.0), 3),
        )
        for offset in offsets
    ]
    events = [
        {
            "type": "probe",
            "time": rfc3339(s.time),
            "container_id": "c1",
            "container_name": "web",
            "network": "bridge",
            "ip": "10.3.0.2",
            "port": 80,
            "protocol": "tcp",
            "ok": s.latency_ms is not None,
            "latency_ms": s.latency_ms,
            "error": None if s.latency_ms is not None else "timeout",
        }
        for s in sent
    ]
    async with (
        AsyncTestClient(app=ingest_app(settings, database_url)) as ingest,
        AsyncTestClient(app=query_app(settings, database_url)) as query,
    ):
        # Several batches, out of order, so that the rollup merges into minutes it already has.
        chunks = [events[i::4] for i in range(4)]
        for chunk in chunks:
            response = await ingest.post(
                "/api/v1/events", headers=AUTH, json={"agent": "host-a", "events": chunk}
            )
            assert response.status_code == 202, response.text
        target_id = (await query.get("/api/v1/addresses")).json()["items"][0]["target_id"]
        yield Seeded(query, target_id, sent)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bucket=st.sampled_from(sorted(BUCKETS)),
    start=st.integers(min_value=-600, max_value=int(SPAN.total_seconds())),
    length=st.integers(min_value=1, max_value=int(SPAN.total_seconds()) + 600),
)
async def test_buckets_add_up_to_the_raw_events(
    seeded: Seeded, bucket: str, start: int, length: int
) -> None:
    """Every bucket holds exactly the probes and failures sent within it, whether read from the rollup or the raw events."""
    first = NOW - SPAN + timedelta(seconds=start)
    last = first + timedelta(seconds=length)
    width = timedelta(seconds=BUCKETS[bucket])
    response = await seeded.query.get(
        f"/api/v1/targets/{seeded.target_id}/latency",
        params={"from": rfc3339(first), "to": rfc3339(last), "bucket": bucket},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["target_id"], body["bucket"]) == (seeded.target_id, bucket)
    assert body["source"] == ("raw" if BUCKETS[bucket] % 60 else "rollup")
    low, high = align_down(first, width), align_up(last, width)
    expected: dict[datetime, list[Sent]] = {}
    for s in seeded.sent:
        if low <= s.time < high:
            expected.setdefault(align_down(s.time, width), []).append(s)
    points = {datetime.fromisoformat(p["time"]): p for p in body["points"]}
    assert sorted(expected) == sorted(points)
    for moment, probes in expected.items():
        point = points[moment]
        successes = [s.latency_ms for s in probes if s.latency_ms is not None]
        assert (len(probes), len(probes) - len(successes)) == (point["probes"], point["failures"])
        if successes:
            assert point["avg_ms"] == pytest.approx(mean(successes), abs=1e-3)
            assert point["max_ms"] == pytest.approx(max(successes), abs=1e-3)
            assert min(successes) - 1e-3 <= point["p50_ms"] <= point["max_ms"] + 1e-3
            assert point["p50_ms"] <= point["p95_ms"] + 1e-3
        else:
            assert point["avg_ms"] is None
    total = sum(p["probes"] for p in body["points"])
    failed = sum(p["failures"] for p in body["points"])
    assert sum(len(v) for v in expected.values()) == total
    assert sum(1 for v in expected.values() for s in v if s.latency_ms is None) == failed


def percentile_disc(values: list[float], q: float) -> float:
    """The first value whose cumulative share reaches q (PostgreSQL's percentile_disc)."""
    return sorted(values)[max(math.ceil(q * len(values)), 1) - 1]


@pytest.mark.parametrize("bucket", ["1m", "1h"])
async def test_rollup_width_buckets_carry_exact_percentiles(seeded: Seeded, bucket: str) -> None:
    """At 1m and 1h the points are the rollups' own rows: p50 and p95 are exactly those of the bucket's successes."""
    width = timedelta(seconds=BUCKETS[bucket])
    response = await seeded.query.get(
        f"/api/v1/targets/{seeded.target_id}/latency",
        params={"from": rfc3339(NOW - SPAN), "to": rfc3339(NOW), "bucket": bucket},
    )
    points = response.json()["points"]
    by_bucket: dict[datetime, list[float]] = {}
    for s in seeded.sent:
        if s.latency_ms is not None:
            by_bucket.setdefault(align_down(s.time, width), []).append(s.latency_ms)
    checked = 0
    for point in points:
        values = by_bucket.get(datetime.fromisoformat(point["time"]), [])
        if values:
            assert point["p50_ms"] == pytest.approx(percentile_disc(values, 0.5), abs=1e-3)
            assert point["p95_ms"] == pytest.approx(percentile_disc(values, 0.95), abs=1e-3)
            checked += 1
    assert checked >= (3 if bucket == "1h" else 100)


async def test_stored_rollups_read_like_pending_ones(seeded: Seeded, database_url: str) -> None:
    """Once the refresher has stored the rollups, every bucket width answers what it answered from the events."""
    params = {"from": rfc3339(NOW - SPAN), "to": rfc3339(NOW), "bucket": ""}
    path = f"/api/v1/targets/{seeded.target_id}/latency"

    async def read(bucket: str) -> list[dict[str, object]]:
        points: list[dict[str, object]] = (
            await seeded.query.get(path, params={**params, "bucket": bucket})
        ).json()["points"]
        return points

    before = [await read(b) for b in BUCKETS]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT dockping_refresh_rollups('infinity')")
        row = await cursor.fetchone()
    assert row is not None
    assert row[0] > 0  # minutes and hours were stored
    after = [await read(b) for b in BUCKETS]
    assert all(before)
    # Averages are summed in another order once stored: equal to a nanosecond.
    assert after == [
        [
            {k: pytest.approx(v, abs=1e-6) if isinstance(v, float) else v for k, v in p.items()}
            for p in points
        ]
        for points in before
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bucket": "1s", "from": "2020-01-01T00:00:00Z"}, "bucket"),  # too many points
        ({"bucket": "10"}, "bucket"),
        ({"bucket": "0s"}, "bucket"),
        ({"bucket": "1y"}, "bucket"),
        ({"bucket": "-1m"}, "bucket"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-11-27T20:00:00"}, "from"),  # no zone
        ({"to": "2026-13-40T00:00:00Z"}, "to"),
        ({"from": "2026-11-27T20:00:00Z", "to": "2026-11-27T19:00:00Z"}, "from"),
    ],
)
async def test_bad_latency_parameters_are_400_naming_them(
    seeded: Seeded, params: dict[str, str], field: str
) -> None:
    """A bad range or bucket, or one that would return more than query.max_points points, is a 400 naming it."""
    response = await seeded.query.get(f"/api/v1/targets/{seeded.target_id}/latency", params=params)
    assert response.status_code == 400
    assert field == response.json()["field"]


async def test_the_point_limit_is_query_max_points(seeded: Seeded) -> None:
    """A range of exactly query.max_points buckets is served; one bucket more is refused."""
    limit = 5000
    end = datetime(2026, 11, 1, tzinfo=UTC)
    ok = await seeded.query.get(
        f"/api/v1/targets/{seeded.target_id}/latency",
        params={
            "from": rfc3339(end - timedelta(minutes=limit)),
            "to": rfc3339(end),
            "bucket": "1m",
        },
    )
    assert ok.status_code == 200
    over = await seeded.query.get(
        f"/api/v1/targets/{seeded.target_id}/latency",
        params={
            "from": rfc3339(end - timedelta(minutes=limit + 1)),
            "to": rfc3339(end),
            "bucket": "1m",
        },
    )
    assert over.status_code == 400
    assert "query.max_points" in over.json()["detail"]
