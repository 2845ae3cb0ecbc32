"""Ingest's decoder fast path (a body without a NUL escape) decides as the general one; pooled
connections broken while idle are replaced."""

from __future__ import annotations

import json
import typing
from typing import Any

import msgspec
import psycopg
import pytest

from db.connector import DatabaseUnavailable, connection, open_pool, run_on_connection
from dockping.contract import (
    ContainerEvent,
    DecodeError,
    HeartbeatEvent,
    InventoryEvent,
    ProbeEvent,
    decode_batch,
)


def _string_fields(cls: type[msgspec.Struct]) -> list[str]:
    """The fields of a contract type whose values are (or hold) strings."""
    names = []
    for info in msgspec.structs.fields(cls):
        if "str" in repr(info.type) and "Literal" not in repr(info.type):
            names.append(info.name)
    return names


VALID: dict[type[msgspec.Struct], dict[str, Any]] = {
    ProbeEvent: {
        "type": "probe",
        "time": "2026-11-27T20:00:00Z",
        "container_id": "c",
        "ip": "10.0.0.1",
        "port": 80,
        "ok": True,
        "latency_ms": 1.0,
    },
    ContainerEvent: {
        "type": "container",
        "time": "2026-11-27T20:00:00Z",
        "container_id": "c",
        "action": "start",
    },
    HeartbeatEvent: {"type": "heartbeat", "time": "2026-11-27T20:00:00Z"},
    InventoryEvent: {"type": "inventory", "time": "2026-11-27T20:00:00Z", "container_ids": ["c"]},
}


@pytest.mark.parametrize(
    ("cls", "field"),
    [(cls, field) for cls in VALID for field in _string_fields(cls)],
)
def test_a_nul_in_any_string_field_is_refused_naming_it(
    cls: type[msgspec.Struct], field: str
) -> None:
    """Every string field of every event type refuses NUL and names the field."""
    event = dict(VALID[cls])
    hint = typing.get_type_hints(cls, include_extras=True)[field]
    if "dict" in repr(hint):
        event[field] = {"k": "v\u0000"}
    elif "list" in repr(hint):
        event[field] = ["ok", "a\u0000b"]
    else:
        event[field] = "a\u0000b"
    with pytest.raises(DecodeError) as caught:
        decode_batch(json.dumps({"agent": "a", "events": [event]}).encode())
    assert (caught.value.field or "").startswith(f"$.events[0].{field}")


def test_a_nul_in_the_agent_name_is_refused_naming_it() -> None:
    """The agent name refuses NUL like every event string."""
    body = json.dumps({"agent": "a\u0000", "events": [VALID[HeartbeatEvent]]}).encode()
    with pytest.raises(DecodeError) as caught:
        decode_batch(body)
    assert caught.value.field == "$.agent"


def test_the_first_bad_field_is_named_whether_or_not_a_nul_follows() -> None:
    """An error before a NUL is the one named; so is a NUL before another error."""
    bad_port = {**VALID[ProbeEvent], "port": 0}
    nul = {**VALID[ProbeEvent], "container_id": "\u0000"}
    for events, field in (
        ([bad_port, nul], "$.events[0].port"),
        ([nul, bad_port], "$.events[0].container_id"),
    ):
        with pytest.raises(DecodeError) as caught:
            decode_batch(json.dumps({"agent": "a", "events": events}).encode())
        assert field == caught.value.field


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul() -> None:
    """The six characters \\u0000 written with an escaped backslash are accepted as text."""
    event = {**VALID[ProbeEvent], "container_name": "\\u0000"}
    batch = decode_batch(json.dumps({"agent": "a", "events": [event]}).encode())
    assert isinstance(batch.events[0], ProbeEvent)
    assert batch.events[0].container_name == "\\u0000"


async def _pid(conn: psycopg.AsyncConnection) -> int:
    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    await conn.rollback()
    assert row is not None
    return int(row[0])


async def _backend_pid(pool: Any) -> int:
    async with connection(pool) as conn:
        return await _pid(conn)


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


@pytest.mark.anyio
async def test_a_connection_broken_while_idle_is_replaced_before_use(database_url: str) -> None:
    """A pooled connection broken while idle is noticed and replaced before a caller gets it."""
    pool = open_pool(database_url, 1, "test")
    await pool.open(wait=True)
    try:
        broken = await _backend_pid(pool)
        _terminate(database_url, broken)
        assert broken != await _backend_pid(pool)
    finally:
        await pool.close()


@pytest.mark.anyio
async def test_an_unchecked_pool_runs_a_call_again_past_a_broken_connection(
    database_url: str,
) -> None:
    """Ingest's pool does not check a connection before each batch: one broken while idle (both,
    here, as after a server restart) fails the call once, and it runs again on a fresh one."""
    pool = open_pool(database_url, 2, "test", check=False)
    await pool.open(wait=True)
    try:
        pids = [await run_on_connection(pool, _pid) for _ in range(2)]
        async with pool.connection() as one, pool.connection() as two:
            held = {await _pid(one), await _pid(two)}
        for pid in held:
            _terminate(database_url, pid)
        calls: list[int] = []

        async def counted(conn: psycopg.AsyncConnection) -> int:
            calls.append(1)
            return await _pid(conn)

        fresh = await run_on_connection(pool, counted)
        assert len(calls) == 2
        assert fresh not in held | set(pids)
        # An operational error that leaves the connection working (a statement cancelled by
        # its timeout) is not run again.
        calls.clear()

        async def cancelled(conn: psycopg.AsyncConnection) -> None:
            calls.append(1)
            await conn.execute("SET statement_timeout = '10ms'")
            await conn.execute("SELECT pg_sleep(1)")

        with pytest.raises(DatabaseUnavailable):
            await run_on_connection(pool, cancelled)
        assert len(calls) == 1
    finally:
        await pool.close()


@pytest.mark.anyio
async def test_every_pooled_connection_runs_without_jit_and_then_its_own_setup(
    database_url: str,
) -> None:
    """A service's pooled connection has JIT compilation off (a notifier's lateral over every
    partition compiled for a second each run) and still runs the service's own setup, idle."""
    configured: list[int] = []

    async def connected(conn: psycopg.AsyncConnection) -> None:
        configured.append(await _pid(conn))

    pool = open_pool(database_url, 1, "test", connected)
    await pool.open(wait=True)
    try:
        async with connection(pool) as conn:
            row = await (await conn.execute("SHOW jit")).fetchone()
            assert row == ("off",)
            assert configured == [await _pid(conn)]
    finally:
        await pool.close()
