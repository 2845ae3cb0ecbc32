"""The write path, two batch shapes, against raw COPY on the same connection in the same run.

One database, one connection. Batches of 1,000 events go through EventWriter.append (what
ingest runs per batch, ids resolved, arrays built, one transaction) in two shapes:
  - one event per target: 1,000 targets of one agent, each probed once a batch (the usual
    batch);
  - many events per target: the spool-replay shape, each batch 1,000 events of one target
    (of another agent).
The baseline is raw binary COPY of as many (time, target_id, latency_us) rows into
probe_events, a batch a transaction. The three take turns batch by batch (a paired design),
so that load from other work on the machine weighs on each alike. DOCKPING_BENCH_EVENTS sets
the batches of each (a thousandth of twice it; default 200).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import anyio
import msgspec
import psycopg

from bench import Figure
from bench.storage_support import (
    PROBE_SPACING,
    TARGETS_PER_AGENT,
    database,
    prepare_partitions,
    probe_json,
    server,
    start_time,
)
from db.append import EventWriter
from dockping.contract import Batch

BATCH = 1000
_COPY = "COPY probe_events (time, target_id, latency_us) FROM STDIN (FORMAT BINARY)"
_ONE_PER_TARGET, _REPLAY = 0, 1  # the benchmark's two agents


def _batch(agent: int, events: list[dict[str, object]]) -> Batch:
    return msgspec.convert({"agent": f"bench-{agent}", "events": events}, Batch)


def _per_target(start: datetime, number: int) -> Batch:
    """The number-th batch of one event per target."""
    first = (number + 1) * TARGETS_PER_AGENT
    return _batch(
        _ONE_PER_TARGET,
        [probe_json(_ONE_PER_TARGET, i, start) for i in range(first, first + BATCH)],
    )


def _replay(start: datetime, number: int) -> Batch:
    """The number-th replay batch: BATCH events of one target, in time order."""
    target = number % TARGETS_PER_AGENT
    events = []
    for n in range(BATCH):
        # The target's n-th event of this batch, after its warm-up event and earlier batches.
        index = TARGETS_PER_AGENT + (number // TARGETS_PER_AGENT * BATCH + n) * TARGETS_PER_AGENT
        event = probe_json(_REPLAY, index + target, start)
        events.append(event)
    return _batch(_REPLAY, events)


def _copy_rows(start: datetime, number: int) -> list[tuple[datetime, int, int]]:
    """The number-th batch of raw rows, of targets no other method writes."""
    base = 10 * TARGETS_PER_AGENT
    rows = []
    for i in range(number * BATCH, (number + 1) * BATCH):
        ok = i % 17 != 0
        rows.append((start + PROBE_SPACING * i, base + i % TARGETS_PER_AGENT, 1000 if ok else -1))
    return rows


async def _rates(url: str, batches: int, start: datetime) -> dict[str, float]:
    writer = EventWriter("postgres", timedelta(days=1).total_seconds())
    async with await psycopg.AsyncConnection.connect(url) as conn:
        # Every target and container made once, as a running system has, outside the timing.
        for agent in (_ONE_PER_TARGET, _REPLAY):
            warm = [probe_json(agent, i, start) for i in range(TARGETS_PER_AGENT)]
            await writer.append(conn, _batch(agent, warm))
        per_target = [_per_target(start, n) for n in range(batches)]
        replay = [_replay(start, n) for n in range(batches)]
        rows = [_copy_rows(start, n) for n in range(batches)]

        async def copy(number: int) -> int:
            async with conn.cursor() as cur, cur.copy(_COPY) as out:
                out.set_types(["timestamptz", "int4", "int4"])
                for row in rows[number]:
                    await out.write_row(row)
            await conn.commit()
            return BATCH

        def appending(shape: list[Batch]) -> Callable[[int], Awaitable[int]]:
            async def run(number: int) -> int:
                result = await writer.append(conn, shape[number])
                if result.accepted != BATCH:
                    raise RuntimeError(f"a batch accepted {result.accepted} of {BATCH} events")
                return BATCH

            return run

        methods = {
            "raw COPY": copy,
            "one event per target": appending(per_target),
            "many events per target": appending(replay),
        }
        spent = dict.fromkeys(methods, 0.0)
        done = dict.fromkeys(methods, 0)
        for number in range(batches):
            for name, method in methods.items():
                began = time.perf_counter()
                done[name] += await method(number)
                spent[name] += time.perf_counter() - began
    return {name: done[name] / spent[name] for name in methods}


def rates(admin_url: str, batches: int) -> dict[str, float]:
    """Events per second of each method, taking turns batch by batch."""
    start = start_time((batches + 2) * BATCH * 2)
    with database(admin_url) as url:
        prepare_partitions(url, start, datetime.now(start.tzinfo))
        return anyio.run(_rates, url, batches, start)


def run() -> list[Figure]:
    """Both batch shapes through the write path against raw COPY on one connection."""
    batches = int(os.environ.get("DOCKPING_BENCH_EVENTS", "100000")) * 2 // BATCH
    with server() as admin_url:
        measured = rates(admin_url, batches)
    raw = measured["raw COPY"]
    return [
        Figure("raw COPY, 1 connection", raw, "rows/s"),
        Figure(
            "append: one event per target",
            measured["one event per target"],
            "events/s",
            raw,
            "raw COPY",
        ),
        Figure(
            "append: many events per target (replay)",
            measured["many events per target"],
            "events/s",
            raw,
            "raw COPY",
            target=">= 0.4",
            met=measured["many events per target"] / raw >= 0.4,
        ),
    ]


if __name__ == "__main__":
    for figure in run():
        print(figure.line())
