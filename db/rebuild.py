"""Rebuild every projection from the events, in one transaction."""

from __future__ import annotations

import psycopg

from db.connector import translate_errors
from db.queries import sql


def rebuild(url: str) -> dict[str, int]:
    """Refold target, container and agent state from the event tables; return row counts."""
    counts: dict[str, int] = {}
    with translate_errors(), psycopg.connect(url) as conn, conn.transaction():
        # Ingest takes these row locks too; taking the tables whole keeps the rebuild consistent.
        conn.execute("LOCK TABLE target_state, container_state, agent_state IN EXCLUSIVE MODE")
        conn.execute(sql("delete_target_states"))
        rows = conn.execute(sql("rebuild_target_states"), {"target_ids": None}).fetchall()
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO target_state (target_id, last_probe_at, latency_us, last_ok_at,"
                " status_since, consecutive_failures, last_error, last_error_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        counts["targets"] = len(rows)
        conn.execute(sql("delete_container_states"))
        counts["containers"] = conn.execute(sql("rebuild_container_states")).rowcount
        conn.execute(sql("delete_agent_states"))
        counts["agents"] = conn.execute(sql("rebuild_agent_states")).rowcount
    return counts
