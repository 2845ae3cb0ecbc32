"""Rebuild every projection and rollup from the events."""

from __future__ import annotations

import time

import psycopg

from db.connector import translate_errors
from db.migrate import check_schema
from db.queries import sql


def rebuild(url: str) -> dict[str, int]:
    """Refold target, container, agent and inventory state and the latency rollups; return row
    counts."""
    counts: dict[str, int] = {}
    with translate_errors(), psycopg.connect(url) as conn:
        backend = check_schema(conn)
        conn.commit()
        with conn.transaction():
            if backend == "postgres":
                # The rollup refresher waits meanwhile (it takes this lock first too).
                conn.execute("SELECT pg_advisory_xact_lock(dockping_lock('rollups'))")
            # Batches wait while the rebuild runs. The tables are locked in the order in
            # which a batch writes them, so that neither waits for the other in a circle.
            tables = (
                "target_state, target_detail, container_state, network_state, agent_state,"
                " agent_inventory, container_absence"
            )
            if backend == "postgres":
                tables = f"rollup_log, {tables}, probe_minute, rollup_hour_log, probe_hour"
            conn.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
            conn.execute(sql("delete_target_states"))
            # The same fold as every batch's, over every stored event.
            conn.execute(sql("refold_target_states"))
            row = conn.execute(sql("count_target_states")).fetchone()
            counts["targets"] = int(row[0]) if row else 0
            conn.execute(sql("delete_target_details"))
            conn.execute(sql("rebuild_target_details"))
            conn.execute(sql("delete_container_states"))
            counts["containers"] = conn.execute(sql("rebuild_container_states")).rowcount
            conn.execute(sql("delete_network_states"))
            counts["networks"] = conn.execute(sql("rebuild_network_states")).rowcount
            conn.execute(sql("delete_agent_states"))
            counts["agents"] = conn.execute(sql("rebuild_agent_states")).rowcount
            conn.execute(sql("delete_agent_inventories"))
            counts["inventories"] = conn.execute(sql("rebuild_agent_inventories")).rowcount
            conn.execute(sql("rebuild_absence"))
            if backend == "postgres":
                conn.execute(sql("delete_rollups"))
                conn.execute(sql("log_every_minute"))
                # Every logged minute and hour, the current ones too.
                conn.execute(sql("refresh_every_rollup"))
    if backend == "timescaledb":
        # A continuous aggregate is refreshed outside any transaction.
        with translate_errors(), psycopg.connect(url, autocommit=True) as conn:
            for name in ("refresh_probe_minutes", "refresh_probe_hours"):
                _refresh_aggregate(conn, name)
    with translate_errors(), psycopg.connect(url) as conn:
        row = conn.execute(sql("count_rollups")).fetchone()
        counts["minutes"], counts["hours"] = (int(row[0]), int(row[1])) if row else (0, 0)
    return counts


# A refresh of the same continuous aggregate by ingest's refresher (or its policy) makes
# TimescaleDB refuse ours at once; it ends within a refresh, so ours waits for it.
_AGGREGATE_WAIT = 60.0


def _refresh_aggregate(conn: psycopg.Connection, name: str) -> None:
    """Refresh one continuous aggregate, waiting out a concurrent refresh of it."""
    deadline = time.monotonic() + _AGGREGATE_WAIT
    while True:
        try:
            conn.execute(sql(name))
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
