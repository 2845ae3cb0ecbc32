"""The write path: one call per batch appends probe events once and folds them like the reference."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import anyio
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.append import EventWriter, Int4Array, ProjectionBehind
from db.rebuild import rebuild
from dockping.contract import Batch, ProbeEvent
from dockping.projection import encode_latency
from tests.projection_support import (
    BASE,
    Probe,
    agent_numbers,
    append_batch,
    check_like_reference,
    fold,
    probe_data,
    probe_events,
    resent_and_shuffled,
    stored_states,
)
from tests.test_storage_contract import Store, store

__all__ = ["store"]  # the fixture of every backend, used below


def split(sent: list[ProbeEvent], rng: random.Random) -> list[list[ProbeEvent]]:
    """Cut events, in their order, into batches of random sizes (a target any number of
    times in one), some of them sorted by target and time as a spool replays them."""
    batches: list[list[ProbeEvent]] = []
    start = 0
    while start < len(sent):
        size = rng.choice([1, 2, 3, 5, 8, 20, 60])
        batch = sent[start : start + size]
        if rng.random() < 0.3:
            batch.sort(key=lambda e: (e.container_id, e.time))
        batches.append(batch)
        start += size
    return batches


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=probe_data(5, 400, 120),
    seed=st.randoms(use_true_random=False),
    duplicate_share=st.floats(0, 1),
    restarts=st.floats(0, 1),
)
def test_any_split_and_order_folds_like_the_reference(
    module_database_url: str,
    data: list[tuple[int, int, tuple[bool, float | None, str | None]]],
    seed: random.Random,
    duplicate_share: float,
    restarts: float,
) -> None:
    """Events in any order, re-sent, cut into batches of any shape, give the reference fold's
    state, each event stored once, and each batch's counts and changed targets."""
    agent = f"split-{next(agent_numbers)}"
    events = probe_events(data)
    batches = split(resent_and_shuffled(events, seed, duplicate_share), seed)
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


def test_replayed_batches_of_one_target_fold_like_the_reference(store: Store) -> None:
    """Batches of many events of one target, one of them late, fold like the reference on
    every backend."""
    agent = f"replay-{next(agent_numbers)}"
    rng = random.Random(19)
    events = [_probe("a", second, ok=rng.random() < 0.6) for second in range(0, 600)]
    batches = [events[100:400], events[400:], events[:100]]  # the last batch is all late
    writer = EventWriter(store.backend, 86400)
    sent = [_send(store.url, writer, agent, batch) for batch in batches]
    assert sent == [(300, 0), (200, 0), (100, 0)]
    expected = fold(
        None, [Probe(e.time, encode_latency(e.ok, e.latency_ms, e.error)) for e in events]
    )
    assert expected == stored_states(store.url, agent)["a"][1]


def test_a_run_goes_on_across_batches_of_any_shape(module_database_url: str) -> None:
    """A status that goes on across batches keeps its start, and failures count on; a flip
    inside a batch starts a run there."""
    agent = f"run-{next(agent_numbers)}"
    writer = EventWriter("postgres", 86400)
    down = [[_probe("a", 1, ok=False), _probe("a", 2, ok=False)], [_probe("a", 3, ok=False)]]
    for batch in down:
        _send(module_database_url, writer, agent, batch)
    state = stored_states(module_database_url, agent)["a"][1]
    assert (state.status_since, state.consecutive_failures) == (BASE + timedelta(seconds=1), 3)
    flip = [_probe("a", 4, ok=False), _probe("a", 5), _probe("a", 6, ok=False)]
    _send(module_database_url, writer, agent, flip)
    state = stored_states(module_database_url, agent)["a"][1]
    assert (state.status_since, state.consecutive_failures) == (BASE + timedelta(seconds=6), 1)
    assert state.last_ok_at == BASE + timedelta(seconds=5)


def test_a_late_event_and_a_duplicate_in_one_batch_are_told_apart(module_database_url: str) -> None:
    """In one batch, the late event is refolded and the duplicate skipped."""
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
    """Statements that append probe events."""
    return sum(
        "INSERT INTO probe_events" in s or "dockping_append_probes(" in s for s in statements
    )


def test_every_batch_shape_appends_its_probes_in_one_call(module_database_url: str) -> None:
    """A batch of new targets, one of many events per target, and one with a late event each
    append their probe events with one call, and nothing else writes them."""
    agent = f"one-call-{next(agent_numbers)}"
    writer = EventWriter("postgres", 86400)
    shapes = [
        [_probe("a", 10), _probe("b", 10)],  # new targets
        [_probe("a", s) for s in range(20, 30)] + [_probe("b", 20)],  # many of a
        [_probe("a", 5), _probe("b", 30, ok=False), _probe("b", 31)],  # a late, b two
    ]
    for batch in shapes:
        counts, statements = _send_watched(module_database_url, writer, agent, batch)
        assert ((len(batch), 0), 1) == (counts, _appends(statements))


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
    """Once a writer knows the agent and the targets, a batch of probe events is one
    statement, a transaction of its own, and notifies listeners as every batch does."""
    agent = f"alone-{next(agent_numbers)}"
    writer = EventWriter("postgres", 86400)
    assert _send(module_database_url, writer, agent, [_probe("a", 10), _probe("b", 10)]) == (2, 0)
    with psycopg.connect(module_database_url, autocommit=True) as listener:
        listener.execute("LISTEN dockping_events")
        counts, statements = _send_watched(
            module_database_url,
            writer,
            agent,
            [_probe("a", 20), _probe("b", 20, ok=False), _probe("b", 21, ok=False)],
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
    assert counts == (3, 0)
    assert len(statements) == 1
    assert "dockping_append_probes(" in statements[0]
    assert ids is not None
    expected = {"agent": agent, "targets": sorted(ids[0]), "containers": []}
    assert expected == json.loads(notes[0].payload)
    assert (2, BASE + timedelta(seconds=21)) == state


def test_a_notification_past_500_ids_says_reload_everything(database_url: str) -> None:
    """Past 500 changed targets, the notification's list is null; its containers stay listed."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("LISTEN dockping_events")
        conn.execute(
            "SELECT dockping_notify_events('a', ARRAY(SELECT generate_series(1, 501)), '{3,1,3}')"
        )
        notes = list(conn.notifies(timeout=5, stop_after=1))
    assert json.loads(notes[0].payload) == {"agent": "a", "targets": None, "containers": [1, 3]}


def test_a_state_behind_its_events_is_refused_until_a_rebuild(database_url: str) -> None:
    """A target's state edited back behind its events refuses the batch, storing nothing, with
    an error that names the cure; after `dockping rebuild` the same batch is accepted."""
    agent = f"behind-{next(agent_numbers)}"
    writer = EventWriter("postgres", 86400)
    assert _send(database_url, writer, agent, [_probe("a", 10), _probe("b", 10)]) == (2, 0)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            f"UPDATE target_state SET last_probe_at = %s WHERE target_id = ({_TARGET_OF})",
            (BASE + timedelta(seconds=5), agent, "a"),
        )
    # A new writer, as after a restart: this one remembers a at 10 s as stored.
    again = EventWriter("postgres", 86400)
    batch = [_probe("a", 10), _probe("b", 20)]
    with pytest.raises(ProjectionBehind, match="dockping rebuild"):
        _send(database_url, again, agent, batch)
    rebuild(database_url)
    assert _send(database_url, again, agent, batch) == (1, 1)
    assert BASE + timedelta(seconds=10) == stored_states(database_url, agent)["a"][1][0]
    assert BASE + timedelta(seconds=20) == stored_states(database_url, agent)["b"][1][0]


def test_a_batch_rolled_back_is_not_remembered_as_stored(module_database_url: str) -> None:
    """A batch whose transaction failed after its insert is appended in full when sent again."""
    agent = f"rolled-{next(agent_numbers)}"
    writer = EventWriter("postgres", 86400)
    batch = [_probe("a", 10), _probe("b", 10)]
    # New targets make it a transaction; the notification is its last statement.
    counts, statements = _send_watched(
        module_database_url, writer, agent, batch, "dockping_notify_events("
    )
    assert (counts, _appends(statements)) == (None, 1)
    assert _send_watched(module_database_url, writer, agent, batch)[0] == (2, 0)


@pytest.mark.parametrize("values", [[], [0], [1, -1, 2**31 - 1, -(2**31)], list(range(-500, 500))])
def test_prepacked_int4_arrays_reach_the_database_unchanged(
    database_url: str, values: list[int]
) -> None:
    """An Int4Array parameter reads back in SQL as the same integers, in order."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT %(a)b::integer[]", {"a": Int4Array.of(values)}).fetchone()
    assert row is not None
    assert values == row[0]
