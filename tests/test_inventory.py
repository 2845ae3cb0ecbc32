"""The inventory fold: a running container missing from its agent's newest inventory is gone,
whatever the order and batching of the events, and a rebuild refolds exactly that."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import anyio
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.append import EventWriter
from db.rebuild import rebuild
from dockping.contract import Batch, ContainerEvent, Event, InventoryEvent, ProbeEvent
from tests.projection_support import BASE, agent_numbers
from tests.test_status import reference

CONTAINERS = [f"c{i}" for i in range(4)]
ACTIONS = ["start", "stop", "die", "pause", "unpause", "destroy"]
# Every status as of now, with no probe ever too old and no agent ever silent: the inventory
# and the lifecycle alone decide here.
STATUSES = """
SELECT l.container_id, l.status
FROM dockping_latest(now(), interval '100 years', interval '1 second', interval '100 years') l
WHERE l.agent = %s
"""
# The folded tables of one agent, as rows to compare.
FOLDED = (
    "SELECT i.time, ARRAY(SELECT c.container_id FROM unnest(i.container_keys) k"
    " JOIN containers c ON c.container_key = k ORDER BY 1)"
    " FROM agent_inventory i JOIN agents a USING (agent_id) WHERE a.name = %(agent)s",
    "SELECT c.container_id FROM container_absence b JOIN containers c USING (container_key)"
    " JOIN agents a ON a.agent_id = c.agent_id WHERE a.name = %(agent)s ORDER BY 1",
    "SELECT to_jsonb(lc) - 'target_id' - 'agent_id' FROM address_lifecycle lc"
    " JOIN targets t USING (target_id) JOIN containers c USING (container_key)"
    " JOIN agents a ON a.agent_id = c.agent_id WHERE a.name = %(agent)s ORDER BY c.container_id",
)

second = st.integers(0, 60)
histories = st.tuples(
    st.lists(
        st.tuples(st.sampled_from(CONTAINERS), second, st.booleans()),
        min_size=1,
        max_size=12,
        unique_by=lambda p: (p[0], p[1]),
    ),
    st.lists(
        st.tuples(st.sampled_from(CONTAINERS), second, st.sampled_from(ACTIONS)),
        max_size=8,
        unique_by=lambda e: (e[0], e[1], e[2]),
    ),
    st.lists(
        st.tuples(second, st.frozensets(st.sampled_from(CONTAINERS))),
        min_size=1,
        max_size=4,
        unique_by=lambda i: i[0],
    ),
)


def at(seconds: int) -> datetime:
    """A time `seconds` after the start of the history."""
    return BASE + timedelta(seconds=seconds)


def events_of(history: Any) -> list[Event]:
    """The history as contract events."""
    probes, lifecycle, inventories = history
    return [
        *(
            ProbeEvent(
                time=at(s),
                container_id=c,
                ip="10.0.0.1",
                port=80,
                ok=ok,
                latency_ms=1.0 if ok else None,
                error=None if ok else "refused",
            )
            for c, s, ok in probes
        ),
        *(ContainerEvent(time=at(s), container_id=c, action=a) for c, s, a in lifecycle),  # type: ignore[arg-type]
        *(InventoryEvent(time=at(s), container_ids=sorted(ids)) for s, ids in inventories),
    ]


def modelled(history: Any) -> dict[str, str]:
    """Each probed container's status, by the reference model of tests/test_status.py."""
    probes, lifecycle, inventories = history
    newest_at, listed = max(inventories, key=lambda i: i[0])
    result = {}
    for container in {c for c, _, _ in probes}:
        mine = [(at(s), a) for c, s, a in lifecycle if c == container]
        action_at, action = max(mine) if mine else (None, None)
        probe_at, ok = max((at(s), ok) for c, s, ok in probes if c == container)
        absent = container not in listed
        result[container] = reference(
            action,
            action_at,
            None,
            absent,
            at(newest_at),
            probe_at,
            1000 if ok else -1,
            None,
            False,
            at(120),
        )
    return result


def send(url: str, agent: str, events: list[Event], rng: random.Random) -> None:
    """The events in a random order, in random batches, some sent twice."""
    sent = events + [e for e in events if rng.random() < 0.3]
    rng.shuffle(sent)

    async def run() -> None:
        writer = EventWriter("postgres", 86400)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            rest = sent
            while rest:
                size = rng.randint(1, 5)
                await writer.append(conn, Batch(agent=agent, events=rest[:size]))
                rest = rest[size:]

    anyio.run(run)


def read(url: str, agent: str) -> tuple[dict[str, str], list[list[Any]]]:
    """The agent's statuses and folded tables."""
    with psycopg.connect(url) as conn:
        statuses = dict(conn.execute(STATUSES, (agent,)).fetchall())  # type: ignore[arg-type]
        folded = [conn.execute(q, {"agent": agent}).fetchall() for q in FOLDED]  # type: ignore[arg-type]
    return statuses, folded


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=histories, seed=st.randoms(use_true_random=False))
def test_the_inventory_fold_is_the_model_in_any_order_and_after_a_rebuild(
    module_database_url: str, history: Any, seed: random.Random
) -> None:
    """Two orders and batchings of the same events give the model's statuses and the same
    folded tables, and a rebuild refolds exactly those."""
    number = next(agent_numbers)
    one, other = f"inv-{number}-a", f"inv-{number}-b"
    events = events_of(history)
    send(module_database_url, one, events, seed)
    send(module_database_url, other, events, seed)
    first, second_ = read(module_database_url, one), read(module_database_url, other)
    assert modelled(history) == first[0]
    assert first == second_
    rebuild(module_database_url)
    assert first == read(module_database_url, one)


def test_a_container_missing_from_an_inventory_leaves_the_default_listing(
    database_url: str,
) -> None:
    """A running container missing from an inventory newer than its events is gone; one listed
    stays up; one that shows a newer probe comes back."""
    events: list[Event] = [
        ContainerEvent(time=at(0), container_id="kept", action="start"),
        ContainerEvent(time=at(0), container_id="lost", action="start"),
        ProbeEvent(time=at(1), container_id="kept", ip="10.0.0.1", port=80, ok=True, latency_ms=1),
        ProbeEvent(time=at(1), container_id="lost", ip="10.0.0.2", port=80, ok=True, latency_ms=1),
        InventoryEvent(time=at(2), container_ids=["kept"]),
    ]
    send(database_url, "host-inv", events, random.Random(1))
    assert read(database_url, "host-inv")[0] == {"kept": "up", "lost": "gone"}
    late = ProbeEvent(
        time=at(3), container_id="lost", ip="10.0.0.2", port=80, ok=True, latency_ms=1
    )
    send(database_url, "host-inv", [late], random.Random(1))
    assert read(database_url, "host-inv")[0] == {"kept": "up", "lost": "up"}
