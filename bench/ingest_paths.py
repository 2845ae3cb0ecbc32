"""The append step alone: binary arrays through unnest (what ingest does) against COPY into a temporary table, with what the projection and the rollup cost.

One database, one connection, batches of 1,000 events over 1,000 targets. The methods take
turns batch by batch (a paired design), so that load from other work on the machine weighs
on each alike; each batch is committed. The baseline is raw binary COPY of the same kind of
rows into probe_events, in the same rotation. Methods:
  - raw COPY: the baseline;
  - insert alone: the de-duplicating insert, no projection, no rollup;
  - insert + projection: append_probes without the rollup (as on TimescaleDB);
  - arrays (kept): append_probes with the rollup log, events sent as three binary arrays;
  - once (kept): dockping_append_probes_once(), what ingest runs for a batch of one event per
    target (a plain insert for the events newer than their target's state, the rest checked);
  - COPY + log: raw COPY and the rollup log, no projection: what the state update costs;
  - COPY to temp: the same statement reading a temporary table filled by COPY.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psycopg

from bench import Figure
from bench.storage_support import (
    TARGETS_PER_AGENT,
    database,
    prepare_partitions,
    raw_rows,
    server,
    start_time,
)
from db.append import Int4Array, append_query
from db.queries import parse, sql

BATCH = 1000
_SQL = parse((Path(__file__).parent / "ingest_paths.sql").read_text(encoding="utf-8"))
Rows = list[tuple[datetime, int, int]]


def _copy(conn: psycopg.Connection, statement: str, rows: Rows) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(["timestamptz", "int4", "int4"])
        for row in rows:
            copy.write_row(row)


def _methods(conn: psycopg.Connection) -> dict[str, Callable[[Rows], None]]:
    full = append_query("postgres", sql("incoming_arrays"))
    no_rollup = append_query("timescaledb", sql("incoming_arrays"))
    from_temp = append_query("postgres", "incoming_probes AS incoming")

    def params(rows: Rows) -> dict[str, list[object]]:
        times, ids, latencies = (list(c) for c in zip(*rows, strict=True))
        return {"times": times, "target_ids": ids, "latencies": latencies}

    def raw(rows: Rows) -> None:
        _copy(
            conn, "COPY probe_events (time, target_id, latency_us) FROM STDIN (FORMAT BINARY)", rows
        )

    def insert_alone(rows: Rows) -> None:
        conn.execute(_SQL["insert_only"], params(rows), prepare=False)

    def statement(query: str) -> Callable[[Rows], None]:
        def run(rows: Rows) -> None:
            conn.execute(sql("lock_agent"), {"agent_id": 1})
            conn.execute(query, params(rows), prepare=False).fetchall()

        return run

    def temp(rows: Rows) -> None:
        conn.execute(sql("lock_agent"), {"agent_id": 1})
        _copy(conn, _SQL["copy_incoming"], rows)
        conn.execute(from_temp, prepare=False).fetchall()

    def copy_fast(rows: Rows) -> None:
        conn.execute(sql("lock_agent"), {"agent_id": 1})
        raw(rows)
        conn.execute(_SQL["log_minutes"], params(rows), prepare=False)

    def once_per_target(rows: Rows) -> None:
        times, ids, latencies = (list(c) for c in zip(*rows, strict=True))
        arrays = {
            "agent_id": 1,
            "agent": "",
            "times": times,
            "target_ids": Int4Array.of(ids),
            "latencies": Int4Array.of(latencies),
            "log_minutes": True,
            "notify": False,
            "refuse_late": False,
        }
        conn.execute(sql("append_probes_once"), arrays, prepare=True).fetchall()

    return {
        "once (kept)": once_per_target,
        "COPY + log": copy_fast,
        "raw COPY": raw,
        "insert alone": insert_alone,
        "insert + projection": statement(no_rollup),
        "arrays (kept)": statement(full),
        "COPY to temp": temp,
    }


def rates(admin_url: str, count: int) -> dict[str, float]:
    """Events per second of each method, taking turns batch by batch."""
    start = start_time(count)
    rows = raw_rows(0, count, start)
    with database(admin_url) as url:
        prepare_partitions(url, start, datetime.now(start.tzinfo))
        with psycopg.connect(url) as conn:
            conn.execute(_SQL["make_targets"], {"n": TARGETS_PER_AGENT})
            conn.execute(_SQL["create_incoming"])
            conn.commit()
            methods = _methods(conn)
            spent = dict.fromkeys(methods, 0.0)
            done = dict.fromkeys(methods, 0)
            names = list(methods)
            for number, offset in enumerate(range(0, count, BATCH)):
                name = names[number % len(names)]
                batch = rows[offset : offset + BATCH]
                began = time.perf_counter()
                methods[name](batch)
                conn.commit()
                spent[name] += time.perf_counter() - began
                done[name] += len(batch)
    return {name: done[name] / spent[name] for name in names if spent[name]}


def run() -> list[Figure]:
    """Each append method against raw COPY, and COPY-to-temp against the arrays."""
    count = int(os.environ.get("DOCKPING_BENCH_EVENTS", "100000")) * 2
    with server() as admin_url:
        measured = rates(admin_url, count)
    raw = measured["raw COPY"]
    figures = [Figure("raw COPY, 1 connection", raw, "rows/s")]
    for name in (
        "insert alone",
        "insert + projection",
        "arrays (kept)",
        "once (kept)",
        "COPY + log",
    ):
        figures.append(Figure(f"append: {name}", measured[name], "events/s", raw, "raw COPY"))
    figures.append(
        Figure(
            "append: COPY to temp + INSERT SELECT",
            measured["COPY to temp"],
            "events/s",
            measured["arrays (kept)"],
            "arrays",
        )
    )
    return figures
