"""Discovery under bursts against the fake engine: per-container order, coalescing, a bound.

A burst is many events for many containers at once, with inspects slower than the events
arrive. The real engine's bursts are in tests/test_discovery_docker.py.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tests.fake_docker import FakeDocker, inspect_payload, running_fake
from tests.test_agent_faults import (
    Running,
    until,
)

pytestmark = pytest.mark.anyio


fake = pytest.fixture(running_fake, name="fake")


# One container's life as the engine tells it; network events as the contract names them.
LIFE = [
    ("container", "create"),
    ("network", "connect"),
    ("container", "start"),
    ("container", "pause"),
    ("container", "unpause"),
    ("container", "kill"),
    ("container", "die"),
    ("network", "disconnect"),
    ("container", "start"),
]


# The last start's StartedAt, which its event takes: after every event of the test.
_LATER = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")


def _emit(fake: FakeDocker, container_id: str, kind: str, action: str) -> None:
    if kind == "network":
        fake.emit("network", action, "net-bridge", container=container_id, name="bridge")
    else:
        fake.emit("container", action, container_id, name=f"n-{container_id}")


def _contract(kind: str, action: str) -> str:
    return f"network_{action}" if kind == "network" else action


def _interleaved(lives: dict[str, list[tuple[str, str]]], seed: int) -> list[tuple[str, str, str]]:
    """Every container's events, interleaved at random, each container's in its own order."""
    rng = random.Random(seed)
    left = {cid: list(life) for cid, life in lives.items()}
    order: list[tuple[str, str, str]] = []
    while left:
        cid = rng.choice(sorted(left))
        kind, action = left[cid].pop(0)
        order.append((cid, kind, action))
        if not left[cid]:
            del left[cid]
    return order


async def test_interleaved_events_with_slow_inspects_keep_each_containers_order(
    fake: FakeDocker,
) -> None:
    """Events of ten containers interleaved, with slow inspects: each one's events come out in its order, coalesced."""
    async with Running(fake, inspect_concurrency=3) as run:
        ids = [f"o{i}" for i in range(10)]
        for i, cid in enumerate(ids):
            fake.containers[cid] = inspect_payload(
                cid, f"n-{cid}", {"bridge": f"10.97.0.{i + 2}"}, started_at=_LATER
            )
            fake.inspect_delay[cid] = 0.2
        for cid, kind, action in _interleaved(dict.fromkeys(ids, LIFE), seed=25):
            _emit(fake, cid, kind, action)
        expected = [_contract(kind, action) for kind, action in LIFE]
        await until(
            lambda: all(len(run.seen.actions(cid)) == len(expected) for cid in ids),
            "every event emitted",
        )
        for cid in ids:
            assert expected == run.seen.actions(cid)
            # The first event's inspect was in flight while the others came: one refresh more.
            assert fake.inspections(cid) <= 2
            assert run.seen.ips(cid) == {
                fake.containers[cid]["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
            }
        assert fake.most_inspecting <= 3
        assert fake.most_inspecting > 1
        for cid in ids:
            times = [e.time for e in run.seen.lifecycle if e.container_id == cid]
            assert sorted(times) == times


async def test_a_burst_of_1000_events_ends_as_a_resync_would(fake: FakeDocker) -> None:
    """1,000 events for 200 containers (some stopped, some removed) leave the state a resync finds."""
    ids = [f"b{i:03}" for i in range(200)]
    lives: dict[str, list[tuple[str, str]]] = {}
    async with Running(fake, inspect_concurrency=8) as run:
        for i, cid in enumerate(ids):
            fake.containers[cid] = inspect_payload(
                cid, f"n-{cid}", {"bridge": f"10.96.{i // 200}.{i % 200 + 2}"}
            )
            fake.inspect_delay[cid] = 0.01 * (i % 5)
            life = [("container", "create"), ("network", "connect"), ("container", "start")]
            if i % 4 == 1:
                life += [("container", "die"), ("container", "stop")]
                fake.containers[cid]["State"]["Running"] = False
            elif i % 4 == 2:
                life += [("container", "die"), ("container", "destroy")]
                del fake.containers[cid]
            else:
                life += [("container", "pause"), ("container", "unpause")]
            lives[cid] = life
        order = _interleaved(lives, seed=1000)
        assert len(order) == 1000
        for cid, kind, action in order:
            _emit(fake, cid, kind, action)
        await until(
            lambda: all(len(run.seen.actions(cid)) == len(lives[cid]) for cid in ids),
            "every event emitted",
            timeout=60,
        )
        for cid in ids:
            assert [_contract(k, a) for k, a in lives[cid]] == run.seen.actions(cid)
        assert sum(len(run.seen.actions(cid)) for cid in ids) == 1000
        after_events = dict(run.seen.targets)
    async with Running(fake) as fresh:
        await until(lambda: fresh.discovery.resyncs >= 1, "a resync")
        assert fresh.seen.targets == after_events
    assert len(after_events) == 100  # the half neither stopped nor removed
