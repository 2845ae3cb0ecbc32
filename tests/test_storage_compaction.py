"""Closed probe_events partitions trade their unique index for a small one (plain PostgreSQL),
and events stay stored once."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import anyio
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.append import EventWriter
from db.compaction import COMPACTED, compact_closed_partitions
from db.queries import sql
from dockping.contract import ProbeEvent
from query import history
from tests.projection_support import (
    BASE,
    agent_numbers,
    append_batch,
    check_like_reference,
    probe_data,
    probe_events,
    resent_and_shuffled,
)

DAY = datetime(2026, 1, 1, tzinfo=UTC)


def indexes(conn: psycopg.Connection, table: str) -> dict[str, tuple[bool, bool]]:
    """A table's indexes: name -> (unique, valid)."""
    rows = conn.execute(
        "SELECT indexrelid::regclass::text, indisunique, indisvalid FROM pg_index"
        " WHERE indrelid = %s::regclass",
        (table,),
    ).fetchall()
    return {name: (unique, valid) for name, unique, valid in rows}


def index_bytes(conn: psycopg.Connection, table: str) -> int:
    """The size of a table's indexes."""
    row = conn.execute("SELECT pg_indexes_size(%s::regclass)", (table,)).fetchone()
    assert row is not None
    return int(row[0])


def compact(url: str, before: datetime) -> list[str]:
    """Compact the partitions that ended before a time, as ingest's maintenance does."""

    async def run() -> list[str]:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            return await compact_closed_partitions(conn, before)

    return anyio.run(run)


def test_a_closed_partition_is_compacted_once_and_keeps_its_events(database_url: str) -> None:
    """A past partition's unique index becomes a smaller one on (target_id, bucket), once;
    its events stay, and the open partition keeps its unique index."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT dockping_ensure_partitions(%s, %s, '1 day')", (DAY, DAY + timedelta(days=2))
        )
        # As ingest writes: time-ordered batches over many targets, each sorted by target.
        for step in range(60):
            conn.execute(
                "INSERT INTO probe_events SELECT %s::timestamptz + make_interval(secs => %s), t, 5"
                " FROM generate_series(1, 500) t ORDER BY t",
                (DAY, step * 20),
            )
        conn.execute(
            "INSERT INTO probe_events VALUES (%s, 1, 7)", (DAY + timedelta(days=1, hours=1),)
        )
        closed, open_ = "probe_events_p20260101t0000", "probe_events_p20260102t0000"
        before = index_bytes(conn, closed)
        count = conn.execute(f"SELECT count(*) FROM {closed}").fetchone()

    first = compact(database_url, DAY + timedelta(days=1, hours=12))
    second = compact(database_url, DAY + timedelta(days=1, hours=12))
    with psycopg.connect(database_url) as conn:
        after = index_bytes(conn, closed)
        count_after = conn.execute(f"SELECT count(*) FROM {closed}").fetchone()
        comment = conn.execute(
            "SELECT obj_description(%s::regclass, 'pg_class')", (closed,)
        ).fetchone()
        closed_indexes, open_indexes = indexes(conn, closed), indexes(conn, open_)
    assert first == [closed]  # the open day after it is left alone
    assert second == []
    assert after < before / 2
    assert count_after == count == (30000,)
    assert comment == (COMPACTED,)
    assert closed_indexes[f"{closed}_target"] == (False, True)
    assert f"{closed}_key" not in closed_indexes
    assert open_indexes[f"{open_}_key"] == (True, True)


def test_a_failed_compaction_is_done_again(database_url: str) -> None:
    """An index that a failed concurrent build left invalid is built again at the next round."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT dockping_ensure_partitions(%s, %s, '1 day')", (DAY, DAY + timedelta(hours=1))
        )
        conn.execute("INSERT INTO probe_events VALUES (%s, 1, 5), (%s, 2, 6)", (DAY, DAY))
        closed = "probe_events_p20260101t0000"
        # A concurrent build that fails (here on two events of one time) leaves its index
        # behind, invalid.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {closed}_target ON {closed} (time)")
        assert indexes(conn, closed)[f"{closed}_target"] == (True, False)
    assert compact(database_url, DAY + timedelta(days=1)) == [closed]
    with psycopg.connect(database_url) as conn:
        after = indexes(conn, closed)
    assert after[f"{closed}_target"] == (False, True)
    assert f"{closed}_key" not in after


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=probe_data(4, 240, 60),
    seed=st.randoms(use_true_random=False),
    duplicate_share=st.floats(0, 1),
)
def test_events_into_compacted_partitions_are_stored_once_and_fold_like_the_reference(
    module_database_url: str,
    data: list[tuple[int, int, tuple[bool, float | None, str | None]]],
    seed: random.Random,
    duplicate_share: float,
) -> None:
    """Shuffled and re-sent events over one-minute partitions, compacted at random between
    batches: each event is stored once, and the states are a plain fold's."""
    agent = f"compacted-{next(agent_numbers)}"
    events = probe_events(data)
    sent = resent_and_shuffled(events, seed, duplicate_share)
    batches: list[list[ProbeEvent]] = []
    while len(sent) > sum(map(len, batches)):
        start = sum(map(len, batches))
        batches.append(sent[start : start + seed.randint(1, 12)])
    results = []
    for batch in batches:
        # A new writer each time, so that every duplicate is looked for in the database.
        results.append(append_batch(module_database_url, EventWriter("postgres", 60), agent, batch))
        if seed.random() < 0.3:
            compact(module_database_url, BASE + timedelta(seconds=seed.randint(0, 300)))
    check_like_reference(module_database_url, agent, events, batches, results)


# Raw latency ranges: both days, one from a bucket's bound to the middle of a bucket, and
# one across the partitions' bound, from and to the middle of a bucket.
RANGES = [
    (DAY, DAY + timedelta(days=2)),
    (DAY + timedelta(minutes=10), DAY + timedelta(minutes=75)),
    (DAY + timedelta(hours=23, minutes=55), DAY + timedelta(days=1, minutes=5)),
]


def test_reads_through_compacted_partitions_give_what_they_gave_before(
    database_url: str,
) -> None:
    """A target's event pages and raw latency points are the same before and after its
    partitions are compacted, across bucket and partition bounds."""
    rng = random.Random(7)
    # One target probed at uneven times over two days, and right at each range's ends (a
    # bucket's and a partition's bounds among them); others around it.
    times = sorted(
        {DAY + timedelta(seconds=rng.randint(0, 2 * 86400 - 1)) for _ in range(400)}
        | {start for start, _ in RANGES}
        | {end - timedelta(seconds=1) for _, end in RANGES}
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT dockping_ensure_partitions(%s, %s, '1 day')", (DAY, DAY + timedelta(days=2))
        )
        for target in (1, 2, 3):
            with conn.cursor().copy("COPY probe_events FROM STDIN") as copy:
                for when in times:
                    copy.write_row((when, target, rng.choice([-1, rng.randint(100, 9000)])))

    def reads() -> tuple[list[list[datetime]], list[tuple[object, ...]]]:
        async def run() -> tuple[list[list[datetime]], list[tuple[object, ...]]]:
            pages: list[list[datetime]] = []
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                before = None
                while True:
                    page = await history.probes(conn, 2, before, 37)
                    pages.append([item.time for item in page.items])
                    if page.next_cursor is None:
                        break
                    before = page.items[-1].time
                points: list[tuple[object, ...]] = []
                for start, end in RANGES:
                    cursor = await conn.execute(
                        sql("latency_raw"),
                        {
                            "target_id": 2,
                            "bucket": timedelta(minutes=5),
                            "start": start,
                            "end": end,
                        },
                    )
                    points += await cursor.fetchall()
            return pages, points

        return anyio.run(run)

    before_pages, before_points = reads()
    assert compact(database_url, DAY + timedelta(days=3)) == [
        "probe_events_p20260101t0000",
        "probe_events_p20260102t0000",
    ]
    after_pages, after_points = reads()
    assert [t for page in before_pages for t in page] == sorted(times, reverse=True)
    assert after_pages == before_pages
    assert sum(row[1] for row in before_points) == sum(
        start <= t < end for start, end in RANGES for t in times
    )
    assert after_points == before_points


def test_one_compactor_at_a_time(database_url: str) -> None:
    """While another session compacts (holds the compactor's lock), a round does nothing."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT dockping_ensure_partitions(%s, %s, '1 day')", (DAY, DAY + timedelta(hours=1))
        )
        conn.execute(sql("compaction_try_lock"))
        busy = compact(database_url, DAY + timedelta(days=1))
        conn.execute(sql("compaction_unlock"))
        free = compact(database_url, DAY + timedelta(days=1))
    assert busy == []
    assert free == ["probe_events_p20260101t0000"]


@settings(max_examples=50, deadline=None)
@given(
    seconds=st.lists(st.integers(-(10**9), 4 * 10**9), min_size=1, max_size=50),
    offsets=st.lists(st.sampled_from([-1, 0, 1, 299_999_999, 300_000_000]), min_size=1),
)
def test_the_bucket_of_a_time_is_its_ten_minutes_and_keeps_the_order(
    module_database_url: str, seconds: list[int], offsets: list[int]
) -> None:
    """dockping_bucket() is the ten minutes a time falls in (but at a microsecond from a
    bound), and a later time never falls in an earlier bucket."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    # Times on and around ten-minute bounds, and in the middle of buckets.
    times = sorted(
        epoch + timedelta(seconds=600 * (s // 600), microseconds=o)
        for s in seconds
        for o in offsets
    )
    with psycopg.connect(module_database_url) as conn:
        rows = conn.execute(
            "SELECT dockping_bucket(t) FROM unnest(%s::timestamptz[]) WITH ORDINALITY u(t, n)"
            " ORDER BY n",
            (times,),
        ).fetchall()
    buckets = [row[0] for row in rows]
    assert buckets == sorted(buckets)
    for when, bucket in zip(times, buckets, strict=True):
        micros = (when - epoch) // timedelta(microseconds=1)
        exact = micros // 600_000_000
        near_bound = min(micros % 600_000_000, 600_000_000 - micros % 600_000_000) <= 1
        assert bucket == exact or (near_bound and abs(bucket - exact) <= 1)
