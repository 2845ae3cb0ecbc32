"""An inventory of 10,000 containers every resync interval: its size on the wire and in the store, and ingest's time for it, against the probes of the same interval.

One agent with DOCKPING_BENCH_INVENTORY_CONTAINERS (default 10,000) containers of one target
each, written through the real EventWriter: a batch of one probe per target (what an agent
sends per probe interval) is the baseline; the inventory of every container is the figure,
sent again and again with the same set (the steady state) and once with one container gone.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime, timedelta

import anyio
import psycopg
import psycopg.sql

from bench import Figure
from bench.storage_support import database, server
from db.append import EventWriter
from dockping.contract import Batch, Event, InventoryEvent, ProbeEvent, encode

ROUNDS = 10
INTERVAL = 20.0  # seconds: agent.resync_interval's default


def _probes(containers: int, at: datetime) -> list[Event]:
    return [
        ProbeEvent(
            time=at,
            container_id=f"{n:064x}",
            container_name=f"web-{n}",
            ip=f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
            port=80,
            ok=True,
            latency_ms=0.5,
            interval_ms=20_000,
            timeout_ms=2_000,
        )
        for n in range(containers)
    ]


async def _measure(url: str, containers: int) -> dict[str, float]:
    writer = EventWriter("postgres", 86400)
    start = datetime.now(UTC) - timedelta(hours=1)
    ids = [f"{n:064x}" for n in range(containers)]
    figures: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(url) as conn:
        probe_times = []
        for round_ in range(ROUNDS + 1):
            events = _probes(containers, start + timedelta(seconds=20 * round_))
            began = time.perf_counter()
            for first in range(0, containers, 1000):
                await writer.append(conn, Batch(agent="bench", events=events[first : first + 1000]))
            if round_:  # the first round made the targets
                probe_times.append(time.perf_counter() - began)
        figures["probes_s"] = statistics.median(probe_times)
        figures["probes_bytes"] = len(encode(Batch(agent="bench", events=events)))
        inventory_times = []
        for round_ in range(ROUNDS + 1):
            at = start + timedelta(seconds=20 * round_ + 10)
            batch = Batch(agent="bench", events=[InventoryEvent(time=at, container_ids=ids)])
            began = time.perf_counter()
            await writer.append(conn, batch)
            if round_:  # the first made no key, but folded a first inventory
                inventory_times.append(time.perf_counter() - began)
        figures["inventory_s"] = statistics.median(inventory_times)
        figures["inventory_bytes"] = len(encode(batch))
        at = start + timedelta(seconds=20 * ROUNDS + 15)
        began = time.perf_counter()
        gone = Batch(agent="bench", events=[InventoryEvent(time=at, container_ids=ids[1:])])
        result = await writer.append(conn, gone)
        figures["one_gone_s"] = time.perf_counter() - began
        assert result.changed_containers, "the missing container's absence was not folded"
        figures["stored_bytes"] = await _bytes_per_row(conn, "inventories")
        figures["probe_bytes"] = await _bytes_per_row(conn, "probe_events") * containers
    return figures


async def _bytes_per_row(conn: psycopg.AsyncConnection, table: str) -> float:
    """Bytes on disk (heap, indexes, TOAST) per row of a partitioned table."""
    cursor = await conn.execute(
        "SELECT sum(pg_total_relation_size(i.inhrelid))::float8 FROM pg_inherits i"
        " WHERE i.inhparent = %s::regclass",
        (table,),
    )
    row = await cursor.fetchone()
    total = float(row[0]) if row and row[0] else 0.0
    cursor = await conn.execute(
        psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))
    )
    count = await cursor.fetchone()
    return total / max(1, int(count[0]) if count else 1)


def run() -> list[Figure]:
    """The inventory's cost per resync interval against one interval's probes."""
    containers = int(os.environ.get("DOCKPING_BENCH_INVENTORY_CONTAINERS", "10000"))
    with server() as admin_url, database(admin_url) as url:
        got = anyio.run(_measure, url, containers)
    per_day = 86400 / INTERVAL
    return [
        Figure(
            f"ingest: inventory of {containers:,} (same set)",
            got["inventory_s"] * 1000,
            "ms",
            got["probes_s"] * 1000,
            f"{containers:,} probes",
        ),
        Figure(
            f"ingest: inventory of {containers:,} (one gone)",
            got["one_gone_s"] * 1000,
            "ms",
            got["probes_s"] * 1000,
            f"{containers:,} probes",
        ),
        Figure(
            "wire: inventory JSON",
            got["inventory_bytes"] / 1024,
            "KiB",
            got["probes_bytes"] / 1024,
            f"{containers:,} probes' JSON",
        ),
        Figure(
            "store: inventory per day at 20 s",
            got["stored_bytes"] * per_day / 2**20,
            "MiB",
            got["probe_bytes"] * per_day / 2**20,
            "probes per day at 20 s",
        ),
    ]
