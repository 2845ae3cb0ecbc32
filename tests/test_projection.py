"""The latest-state projection is order-independent and equals a rebuild from the events."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import anyio
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.append import EventWriter
from db.rebuild import rebuild
from dockping.contract import Batch, ProbeEvent
from dockping.projection import encode_latency
from tests.projection_support import (
    BASE,
    Probe,
    TargetState,
    agent_numbers,
    fold,
    probe_data,
    probe_events,
    resent_and_shuffled,
    stored_states,
)


def reference(events: list[tuple[int, datetime, int]]) -> dict[int, TargetState]:
    """The plain fold of the sorted, de-duplicated events: what the store must hold."""
    by_target: dict[int, dict[datetime, int]] = {}
    for target, time, latency in events:
        by_target.setdefault(target, {})[time] = latency
    result = {}
    for target, probes in by_target.items():
        state = fold(None, [Probe(t, v) for t, v in probes.items()])
        assert state is not None
        result[target] = state
    return result


def reference_minutes(
    events: list[tuple[int, datetime, int]],
) -> dict[
    tuple[int, datetime], tuple[int, int, float | None, float | None, float | None, float | None]
]:
    """Per target and minute: probes, failures, avg, p50, p95 and max in ms, folded in Python."""
    unique = {(target, time): latency for target, time, latency in events}
    minutes: dict[tuple[int, datetime], list[int]] = {}
    for (target, time), latency in unique.items():
        minutes.setdefault((target, time.replace(second=0, microsecond=0)), []).append(latency)
    result = {}
    for key, latencies in minutes.items():
        ok = sorted(v for v in latencies if v >= 0)

        def rank(q: float, ok: list[int] = ok) -> float | None:
            # percentile_disc: the first value whose position reaches the fraction q.
            return ok[max(math.ceil(q * len(ok)), 1) - 1] / 1000 if ok else None

        result[key] = (
            len(latencies),
            len(latencies) - len(ok),
            round(float(sum(ok)) / len(ok) / 1000, 6) if ok else None,
            rank(0.5),
            rank(0.95),
            ok[-1] / 1000 if ok else None,
        )
    return result


def test_fold_tracks_status_since_and_failures() -> None:
    """A worked example of the fold."""
    t = [BASE + timedelta(seconds=s) for s in range(5)]
    state = fold(None, [Probe(t[0], 100), Probe(t[1], -1), Probe(t[2], -2), Probe(t[3], 50)])
    assert state == TargetState(t[3], 50, t[3], t[3], 0, 2, t[2])
    state = fold(state, [Probe(t[4], -1)])
    assert state is not None
    assert (state.status_since, state.consecutive_failures, state.last_ok_at) == (t[4], 1, t[3])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=probe_data(2, 300, 60),
    seed=st.randoms(use_true_random=False),
    batches=st.integers(1, 6),
    duplicate_share=st.floats(0, 1),
)
def test_any_order_batching_and_duplication_give_the_same_state(
    module_database_url: str,
    data: list[tuple[int, int, tuple[bool, float | None, str | None]]],
    seed: random.Random,
    batches: int,
    duplicate_share: float,
) -> None:
    """Shuffled, re-sent, batched events give the state and minute rollup of a plain fold."""
    agent = f"prop-{next(agent_numbers)}"
    events = probe_events(data)
    sent = resent_and_shuffled(events, seed, duplicate_share)
    cuts = sorted(seed.sample(range(1, len(sent)), min(batches - 1, len(sent) - 1)))
    chunks = [sent[a:b] for a, b in zip([0, *cuts], [*cuts, len(sent)], strict=True)]

    async def run() -> None:
        writer = EventWriter("postgres", 86400)
        async with await psycopg.AsyncConnection.connect(module_database_url) as conn:
            for chunk in chunks:
                await writer.append(conn, Batch(agent=agent, events=list(chunk)))

    anyio.run(run)
    stored = {
        int(c[1:]): state for c, (_, state) in stored_states(module_database_url, agent).items()
    }
    with psycopg.connect(module_database_url) as conn:
        minute_rows = conn.execute(
            "SELECT c.container_id, m.bucket, m.probes, m.failures, round(m.avg_ms::numeric, 6),"
            " m.p50_ms, m.p95_ms, m.max_ms"
            " FROM latency_minute m JOIN targets USING (target_id)"
            " JOIN containers c USING (container_key) JOIN agents a USING (agent_id)"
            " WHERE a.name = %s",
            (agent,),
        ).fetchall()
    encoded = [
        (int(e.container_id[1:]), e.time, encode_latency(e.ok, e.latency_ms, e.error))
        for e in events
    ]
    assert reference(encoded) == stored
    stored_minutes = {
        (int(row[0][1:]), row[1]): (
            row[2],
            row[3],
            None if row[4] is None else float(row[4]),
            *row[5:],
        )
        for row in minute_rows
    }
    assert reference_minutes(encoded) == stored_minutes


def test_rebuild_equals_the_incremental_projection(module_database_url: str) -> None:
    """`dockping rebuild` refolds every target, minute and hour to exactly what ingest and the refresher kept."""
    rng = random.Random(7)
    agent = "rebuild-check"
    events = [
        ProbeEvent(
            time=BASE + timedelta(seconds=rng.randrange(0, 3000)),
            container_id=f"r{rng.randrange(5)}",
            ip="10.0.0.9",
            port=rng.choice([80, 81]),
            ok=(ok := rng.random() < 0.7),
            latency_ms=1.0 if ok else None,
            error=None if ok else "timeout",
        )
        for _ in range(400)
    ]

    async def run() -> None:
        writer = EventWriter("postgres", 86400)
        async with await psycopg.AsyncConnection.connect(module_database_url) as conn:
            for start in range(0, len(events), 37):
                await writer.append(conn, Batch(agent=agent, events=events[start : start + 37]))

    anyio.run(run)
    query = "SELECT * FROM target_state ORDER BY target_id"
    views = (
        "SELECT * FROM latency_minute ORDER BY target_id, bucket",
        "SELECT * FROM latency_hour ORDER BY target_id, bucket",
    )
    tables = (
        "SELECT * FROM probe_minute ORDER BY target_id, bucket",
        "SELECT * FROM probe_hour ORDER BY target_id, bucket",
    )
    with psycopg.connect(module_database_url) as conn:
        before = conn.execute(query).fetchall()
        pending = [conn.execute(v).fetchall() for v in views]  # computed from the events
        conn.execute("SELECT dockping_refresh_rollups('infinity')")
        conn.commit()
        refreshed = [conn.execute(v).fetchall() for v in views]  # read from the rollups
        stored = [conn.execute(q).fetchall() for q in tables]
    counts = rebuild(module_database_url)
    with psycopg.connect(module_database_url) as conn:
        after = conn.execute(query).fetchall()
        rebuilt = [conn.execute(q).fetchall() for q in tables]
        rebuilt_views = [conn.execute(v).fetchall() for v in views]
    assert counts["targets"] == len(before)
    assert before == after
    assert pending == refreshed == rebuilt_views
    assert (counts["minutes"], counts["hours"]) == (len(stored[0]), len(stored[1]))
    assert all(stored)  # minutes and hours were stored
    assert stored == rebuilt
