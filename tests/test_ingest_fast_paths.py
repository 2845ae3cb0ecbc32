"""Ingest's fast paths decide exactly as the general ones: one event per target, no NUL escape."""

from __future__ import annotations

import json
import random
import typing
from datetime import timedelta
from typing import Any

import anyio
import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.append import EventWriter, Int4Array
from db.connector import DatabaseUnavailable, connection, open_pool, run_on_connection
from dockping.contract import (
    Batch,
    ContainerEvent,
    DecodeError,
    HeartbeatEvent,
    InventoryEvent,
    ProbeEvent,
    decode_batch,
)
from tests.projection_support import (
    BASE,
    agent_numbers,
    append_batch,
    check_like_reference,
    probe_data,
    probe_events,
    resent_and_shuffled,
)


def one_per_target(sent: list[ProbeEvent], rng: random.Random) -> list[list[ProbeEvent]]:
    """Cut events, in their order, into batches that hold each target at most once."""
    batches: list[list[ProbeEvent]] = [[]]
    for event in sent:
        current = batches[-1]
        full = len(current) >= rng.randint(1, 12)
        if full or any(e.container_id == event.container_id for e in current):
            batches.append([])
        batches[-1].append(event)
    return batches


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=probe_data(7, 200, 80),
    seed=st.randoms(use_true_random=False),
    duplicate_share=st.floats(0, 1),
    restarts=st.floats(0, 1),
)
def test_batches_of_one_event_per_target_fold_like_the_reference(
    module_database_url: str,
    data: list[tuple[int, int, tuple[bool, float | None, str | None]]],
    seed: random.Random,
    duplicate_share: float,
    restarts: float,
) -> None:
    """Shuffled and re-sent events, each batch one per target, give a plain fold's state and counts."""
    agent = f"once-{next(agent_numbers)}"
    events = probe_events(data)
    sent = resent_and_shuffled(events, seed, duplicate_share)
    batches = one_per_target(sent, seed)
    results = []

    async def run() -> None:
        writer = EventWriter("postgres", 86400)
        async with await psycopg.AsyncConnection.connect(module_database_url) as conn:
            for batch in batches:
                if seed.random() < restarts:
                    # As after an ingest restart: nothing remembered, every duplicate asked for.
                    writer = EventWriter("postgres", 86400)
                results.append(await writer.append(conn, Batch(agent=agent, events=[*batch])))

    anyio.run(run)
    check_like_reference(module_database_url, agent, events, batches, results)


def _probe(container: str, second: int, ok: bool = True) -> ProbeEvent:
    """A probe of one port of a container, `second` seconds after BASE."""
    return ProbeEvent(
        time=BASE + timedelta(seconds=second),
        container_id=container,
        ip="10.0.0.2",
        port=443,
        ok=ok,
        latency_ms=2.0 if ok else None,
        error=None if ok else "timeout",
    )


# The target of an agent's container, as a subquery on (agent name, container id).
_TARGET_OF = (
    "SELECT target_id FROM targets JOIN containers c USING (container_key)"
    " JOIN agents a USING (agent_id) WHERE a.name = %s AND c.container_id = %s"
)


def _send(url: str, writer: EventWriter, agent: str, events: list[ProbeEvent]) -> tuple[int, int]:
    """Append one batch; its (accepted, duplicates)."""
    result = append_batch(url, writer, agent, events)
    return result.accepted, result.duplicates


def test_a_late_event_and_a_duplicate_in_one_batch_are_told_apart(module_database_url: str) -> None:
    """In a batch of one event per target, the late event is refolded and the duplicate skipped."""
    agent = f"late-{next(agent_numbers)}"
    writer = EventWriter("postgres", 86400)
    first = [_probe("a", 10), _probe("b", 10)]
    # a: the same event again; b: an older failure, which changes b's last error.
    second = [_probe("a", 10), _probe("b", 5, ok=False)]
    sent = [_send(module_database_url, writer, agent, batch) for batch in (first, second)]
    assert sent == [(2, 0), (1, 1)]
    with psycopg.connect(module_database_url) as conn:
        row = conn.execute(
            "SELECT last_error_at, last_error, status_since FROM target_state"
            f" WHERE target_id = ({_TARGET_OF})",
            (agent, "b"),
        ).fetchone()
    assert (BASE + timedelta(seconds=5), 2, BASE + timedelta(seconds=10)) == row


def test_a_state_behind_its_events_costs_a_retry_not_a_failure(module_database_url: str) -> None:
    """An event newer than its (edited-back) state but stored already is a duplicate all the same."""
    agent = f"behind-{next(agent_numbers)}"
    writer = EventWriter("postgres", 86400)
    assert _send(module_database_url, writer, agent, [_probe("a", 10), _probe("b", 10)]) == (2, 0)
    with psycopg.connect(module_database_url) as conn:
        conn.execute(
            f"UPDATE target_state SET last_probe_at = %s WHERE target_id = ({_TARGET_OF})",
            (BASE + timedelta(seconds=5), agent, "a"),
        )
    # a at 10 s is newer than its state now, yet stored: the plain insert fails on the unique
    # index, and the batch is written again with every event checked. (A new writer, as after
    # a restart: this one remembers a at 10 s as stored and would not ask the database.)
    again = EventWriter("postgres", 86400)
    assert _send(module_database_url, again, agent, [_probe("a", 10), _probe("b", 20)]) == (1, 1)
    with psycopg.connect(module_database_url) as conn:
        stored = conn.execute(
            f"SELECT count(*) FROM probe_events WHERE target_id = ({_TARGET_OF})", (agent, "a")
        ).fetchone()
        b_state = conn.execute(
            f"SELECT last_probe_at FROM target_state WHERE target_id = ({_TARGET_OF})",
            (agent, "b"),
        ).fetchone()
    assert stored == (1,)
    assert b_state == (BASE + timedelta(seconds=20),)


class _Watched(psycopg.AsyncConnection[Any]):
    """A real connection that keeps the text of each statement, and can fail one of them."""

    statements: list[str]
    fail_on: str | None = None

    async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        text = str(query)
        self.statements.append(text)
        if self.fail_on is not None and self.fail_on in text:
            raise psycopg.OperationalError(f"injected failure at {self.fail_on!r}")
        return await super().execute(query, *args, **kwargs)


def _send_watched(
    url: str, writer: EventWriter, agent: str, events: list[ProbeEvent], fail_on: str | None = None
) -> tuple[tuple[int, int] | None, list[str]]:
    """Append one batch on a watched connection: (accepted, duplicates), or None if it failed,
    and the statements sent."""

    async def run() -> tuple[tuple[int, int] | None, list[str]]:
        async with await _Watched.connect(url) as conn:
            conn.statements, conn.fail_on = [], fail_on
            try:
                result = await writer.append(conn, Batch(agent=agent, events=[*events]))
            except psycopg.OperationalError:
                return None, conn.statements
            return (result.accepted, result.duplicates), conn.statements

    return anyio.run(run)


def _appends(statements: list[str]) -> int:
    """Statements that append probe events: an insert, or the function that inserts them."""
    return sum(
        "INSERT INTO probe_events" in text or "dockping_append_probes_once(" in text
        for text in statements
    )


def test_a_batch_sent_again_is_told_duplicate_without_asking_the_database(
    module_database_url: str,
) -> None:
    """Events this writer saw committed as its targets' newest are duplicates before any insert."""
    agent = f"again-{next(agent_numbers)}"
    writer = EventWriter("postgres", 86400)
    batch = [_probe("a", 10), _probe("b", 10)]
    assert _send_watched(module_database_url, writer, agent, batch)[0] == (2, 0)
    # The same batch (its answer lost), then half of it with a new event of b.
    counts, statements = _send_watched(module_database_url, writer, agent, batch)
    assert (counts, _appends(statements)) == ((0, 2), 0)
    counts, statements = _send_watched(
        module_database_url, writer, agent, [_probe("a", 10), _probe("b", 20)]
    )
    assert (counts, _appends(statements)) == ((1, 1), 1)
    with psycopg.connect(module_database_url) as conn:
        stored = conn.execute(
            f"SELECT count(*) FROM probe_events WHERE target_id IN ({_TARGET_OF} UNION {_TARGET_OF})",
            (agent, "a", agent, "b"),
        ).fetchone()
    assert stored == (3,)


def test_the_usual_batch_is_one_statement_with_its_notification(module_database_url: str) -> None:
    """Once a writer knows the agent and the targets, a batch of one event per target is one
    statement, a transaction of its own, and notifies listeners as every batch does."""
    agent = f"alone-{next(agent_numbers)}"
    writer = EventWriter("postgres", 86400)
    assert _send(module_database_url, writer, agent, [_probe("a", 10), _probe("b", 10)]) == (2, 0)
    with psycopg.connect(module_database_url, autocommit=True) as listener:
        listener.execute("LISTEN dockping_events")
        counts, statements = _send_watched(
            module_database_url, writer, agent, [_probe("a", 20), _probe("b", 20, ok=False)]
        )
        notes = list(listener.notifies(timeout=5, stop_after=1))
        ids = listener.execute(
            f"SELECT array[({_TARGET_OF}), ({_TARGET_OF})]", (agent, "a", agent, "b")
        ).fetchone()
        state = listener.execute(
            f"SELECT consecutive_failures, last_error_at FROM target_state"
            f" WHERE target_id = ({_TARGET_OF})",
            (agent, "b"),
        ).fetchone()
    assert counts == (2, 0)
    assert len(statements) == 1
    assert "dockping_append_probes_once(" in statements[0]
    assert ids is not None
    assert json.loads(notes[0].payload) == {
        "agent": agent,
        "targets": sorted(ids[0]),
        "containers": [],
    }
    assert state == (1, BASE + timedelta(seconds=20))


def test_a_state_behind_its_events_in_the_one_statement_path(module_database_url: str) -> None:
    """The one-statement path meets a state behind its events as the transaction path does:
    the stored event is a duplicate, the batch is not lost."""
    agent = f"behind-alone-{next(agent_numbers)}"
    writer = EventWriter("postgres", 86400)
    for second in (10, 12):
        assert _send(module_database_url, writer, agent, [_probe("a", second)]) == (1, 0)
    with psycopg.connect(module_database_url) as conn:
        conn.execute(
            f"UPDATE target_state SET last_probe_at = %s WHERE target_id = ({_TARGET_OF})",
            (BASE + timedelta(seconds=5), agent, "a"),
        )
    # The writer remembers a at 12 s, not at 10 s: the database is asked, and its key answers.
    counts, statements = _send_watched(module_database_url, writer, agent, [_probe("a", 10)])
    assert counts == (0, 1)
    assert "dockping_append_probes_once(" in statements[0]
    assert len(statements) > 1
    with psycopg.connect(module_database_url) as conn:
        stored = conn.execute(
            f"SELECT count(*) FROM probe_events WHERE target_id = ({_TARGET_OF})", (agent, "a")
        ).fetchone()
    assert stored == (2,)


def test_a_batch_rolled_back_is_not_remembered_as_stored(module_database_url: str) -> None:
    """A batch whose transaction failed after its insert is appended in full when sent again."""
    agent = f"rolled-{next(agent_numbers)}"
    writer = EventWriter("postgres", 86400)
    batch = [_probe("a", 10), _probe("b", 10)]
    # The notification is the batch's last statement, after the events' insert.
    counts, statements = _send_watched(module_database_url, writer, agent, batch, "pg_notify")
    assert (counts, _appends(statements)) == (None, 1)
    assert _send_watched(module_database_url, writer, agent, batch)[0] == (2, 0)


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


@pytest.mark.parametrize("values", [[], [0], [1, -1, 2**31 - 1, -(2**31)], list(range(-500, 500))])
def test_prepacked_int4_arrays_reach_the_database_unchanged(
    database_url: str, values: list[int]
) -> None:
    """An Int4Array parameter reads back in SQL as the same integers, in order."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT %(a)b::integer[]", {"a": Int4Array.of(values)}).fetchone()
    assert row is not None
    assert row[0] == values


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
