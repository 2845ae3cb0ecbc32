"""Every advisory lock dockping takes: its name, its key, and why it exists.

SQL takes a lock by name, `pg_advisory_xact_lock(dockping_lock('rollups'))`: `dockping
migrate` makes the function dockping_lock() from this table, so that the keys are written
here alone. Only the migration lock is taken by key, before that function exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql


@dataclass(frozen=True)
class Lock:
    """One advisory lock: the key every process agrees on, and the race it prevents."""

    name: str
    key: int
    reason: str


MIGRATE = Lock(
    "migrate",
    0x646F636B70696E67,  # "dockping"
    "One `dockping migrate` at a time (a session lock): several services may start together,"
    " and each migration and the schema must be applied once, in order.",
)
LOCKS = (
    MIGRATE,
    Lock(
        "storage",
        7001,
        "One ingest replica at a time makes partitions and configures storage, so that two never"
        " race on CREATE TABLE of a partition or on the policies.",
    ),
    Lock(
        "agent",
        7002,
        "One agent's batches one after another (the two-key form, with the agent's id): every"
        " target belongs to one agent, so no other transaction writes the projection rows of"
        " a batch's targets meanwhile; one lock instead of a row lock (and a WAL record) each.",
    ),
    Lock(
        "rollups",
        7003,
        "The rollup refresher and `dockping rebuild` (plain PostgreSQL): the rebuild recomputes"
        " every rollup from the events, and a refresh meanwhile would write rows it replaces.",
    ),
    Lock(
        "compaction",
        7004,
        "One ingest replica at a time compacts closed partitions (a session lock, tried: the"
        " others skip the round).",
    ),
    Lock(
        "notifier",
        7008,
        "One notifier at a time follows the events and delivers (a session lock, tried: a"
        " second replica waits as a standby).",
    ),
)


def function_sql() -> sql.Composed:
    """CREATE OR REPLACE FUNCTION dockping_lock(name) from the table above; an unknown name is
    an error, never a null key (which would take no lock at all)."""
    cases = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN RETURN {};").format(sql.Literal(lock.name), sql.Literal(lock.key))
        for lock in LOCKS
    )
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION dockping_lock(name text) RETURNS bigint"
        " LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$ BEGIN CASE name {}"
        " ELSE RAISE EXCEPTION 'no advisory lock is named % (db/locks.py)', name;"
        " END CASE; END $$"
    ).format(cases)
