"""What the projection's property tests share: probe outcomes, events, a reference fold.

The reference fold is written here, in Python, one event at a time, apart from the SQL
under test (dockping_append_probes folds a batch at once).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import anyio
import psycopg
from hypothesis import strategies as st

from db.append import AppendResult, EventWriter
from dockping.contract import Batch, ProbeEvent
from dockping.projection import encode_latency

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
agent_numbers = itertools.count()

Outcome = tuple[bool, float | None, str | None]

# A success with a latency, or a failure with an error.
outcome = st.one_of(
    st.floats(0, 500, allow_nan=False).map(lambda ms: (True, round(ms, 3), None)),
    st.sampled_from(["refused", "timeout", "unreachable", "reset", "other"]).map(
        lambda e: (False, None, e)
    ),
)


class Probe(NamedTuple):
    """One stored probe outcome of one target."""

    time: datetime
    latency_us: int


class TargetState(NamedTuple):
    """The projection row of one target."""

    last_probe_at: datetime
    latency_us: int
    last_ok_at: datetime | None
    status_since: datetime
    consecutive_failures: int
    last_error: int | None
    last_error_at: datetime | None


def fold(state: TargetState | None, probes: Iterable[Probe]) -> TargetState | None:
    """Apply probes, all newer than the state, in time order, one at a time."""
    for probe in sorted(probes):
        if state is not None and probe.time <= state.last_probe_at:
            raise ValueError("fold() takes only probes newer than the state")
        ok = probe.latency_us >= 0
        if state is None:
            state = TargetState(
                last_probe_at=probe.time,
                latency_us=probe.latency_us,
                last_ok_at=probe.time if ok else None,
                status_since=probe.time,
                consecutive_failures=0 if ok else 1,
                last_error=None if ok else -probe.latency_us,
                last_error_at=None if ok else probe.time,
            )
            continue
        changed = ok != (state.latency_us >= 0)
        state = TargetState(
            last_probe_at=probe.time,
            latency_us=probe.latency_us,
            last_ok_at=probe.time if ok else state.last_ok_at,
            status_since=probe.time if changed else state.status_since,
            consecutive_failures=0 if ok else state.consecutive_failures + 1,
            last_error=state.last_error if ok else -probe.latency_us,
            last_error_at=state.last_error_at if ok else probe.time,
        )
    return state


def probe_data(
    targets: int, seconds: int, max_size: int
) -> st.SearchStrategy[list[tuple[int, int, Outcome]]]:
    """(target, second, outcome) items, one outcome per identity: a duplicate is the same
    event sent again."""
    return st.lists(
        st.tuples(st.integers(0, targets), st.integers(0, seconds), outcome),
        min_size=1,
        max_size=max_size,
        unique_by=lambda item: (item[0], item[1]),
    )


def stored_states(url: str, agent: str) -> dict[str, tuple[int, TargetState]]:
    """The target id and stored state of each container of an agent, by container id."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.container_id, s.target_id, s.last_probe_at, s.latency_us, s.last_ok_at,"
            " s.status_since, s.consecutive_failures, s.last_error, s.last_error_at"
            " FROM target_state s JOIN targets USING (target_id) JOIN containers c USING (container_key)"
            " JOIN agents a USING (agent_id) WHERE a.name = %s",
            (agent,),
        ).fetchall()
    return {row[0]: (row[1], TargetState(*row[2:])) for row in rows}


def probe_events(data: list[tuple[int, int, Outcome]]) -> list[ProbeEvent]:
    """One probe of container c<target> at BASE + second seconds per drawn item."""
    return [
        ProbeEvent(
            time=BASE + timedelta(seconds=second),
            container_id=f"c{target}",
            ip="10.0.0.1",
            port=80,
            ok=ok,
            latency_ms=latency,
            error=error,  # type: ignore[arg-type]
        )
        for target, second, (ok, latency, error) in data
    ]


def resent_and_shuffled(
    events: list[ProbeEvent], rng: random.Random, share: float
) -> list[ProbeEvent]:
    """The events with about `share` of them sent twice, in a random order."""
    sent = events + [e for e in events if rng.random() < share]
    rng.shuffle(sent)
    return sent


def append_batch(
    url: str, writer: EventWriter, agent: str, events: list[ProbeEvent]
) -> AppendResult:
    """Append one batch of an agent's events with a writer, on a connection of its own."""

    async def run() -> AppendResult:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            return await writer.append(conn, Batch(agent=agent, events=[*events]))

    return anyio.run(run)


def check_like_reference(
    url: str,
    agent: str,
    events: list[ProbeEvent],
    batches: list[list[ProbeEvent]],
    results: list[AppendResult],
) -> None:
    """The agent's stored states are a plain fold of `events`, each is stored once, and each
    batch reported as new exactly the events not stored before it, and their targets."""
    states = stored_states(url, agent)
    stored = {container: state for container, (_, state) in states.items()}
    target_ids = {container: target_id for container, (target_id, _) in states.items()}
    by_target: dict[str, list[Probe]] = {}
    for e in events:
        by_target.setdefault(e.container_id, []).append(
            Probe(e.time, encode_latency(e.ok, e.latency_ms, e.error))
        )
    assert {c: fold(None, probes) for c, probes in by_target.items()} == stored
    with psycopg.connect(url) as conn:
        counts = conn.execute(
            "SELECT c.container_id, count(*) FROM probe_events p JOIN targets USING (target_id)"
            " JOIN containers c USING (container_key) JOIN agents a USING (agent_id)"
            " WHERE a.name = %s GROUP BY 1",
            (agent,),
        ).fetchall()
    assert dict(counts) == {c: len(probes) for c, probes in by_target.items()}
    seen: set[tuple[str, datetime]] = set()
    for batch, result in zip(batches, results, strict=True):
        new = []
        for e in batch:  # an event twice in one batch is new once
            if (e.container_id, e.time) not in seen:
                seen.add((e.container_id, e.time))
                new.append(e)
        assert (len(new), len(batch) - len(new)) == (result.accepted, result.duplicates)
        assert {target_ids[e.container_id] for e in new} == result.changed_targets
