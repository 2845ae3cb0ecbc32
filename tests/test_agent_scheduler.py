"""The scheduler on real sockets: new targets at once, an even spread, bounded concurrency, no head-of-line blocking."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import anyio
import pytest

from agent.probing import ProbeResult
from agent.scheduler import Scheduler
from agent.targets import Target

pytestmark = pytest.mark.anyio


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (the backlog absorbs them)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1024)
        yield server.getsockname()[1]


async def until(check: Callable[[], object], timeout: float = 10) -> None:
    """Wait until check() is truthy."""
    deadline = anyio.current_time() + timeout
    while not check():
        assert anyio.current_time() < deadline, "timed out"
        await anyio.sleep(0.01)


class Results:
    """Results as the scheduler reports them, with the clock time each arrived."""

    def __init__(self) -> None:
        self.items: list[tuple[float, Target, ProbeResult]] = []

    def __call__(self, target: Target, result: ProbeResult) -> None:
        self.items.append((anyio.current_time(), target, result))

    def of(self, container_id: str) -> list[tuple[float, Target, ProbeResult]]:
        """The results for one container."""
        return [item for item in self.items if item[1].container_id == container_id]


async def test_a_new_target_is_probed_at_once(listener: int) -> None:
    """A target added to a long interval gets its first probe right away, and then waits."""
    results = Results()
    scheduler = Scheduler(3600, 1.0, 8, results)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await anyio.sleep(0.1)
        scheduler.replace("c1", (Target("c1", "127.0.0.1", listener, "tcp"),))
        await until(lambda: results.items)
        await anyio.sleep(0.3)
        group.cancel_scope.cancel()
    assert len(results.items) == 1
    assert results.items[0][2].ok


async def test_a_hung_target_does_not_delay_the_others(listener: int, hung: int) -> None:
    """While probes of a hung port wait for their timeout, a healthy port is probed on time."""
    results = Results()
    scheduler = Scheduler(0.1, 2.0, 16, results)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        scheduler.replace("slow", (Target("slow", "127.0.0.1", hung, "tcp"),))
        scheduler.replace("fast", (Target("fast", "127.0.0.1", listener, "tcp"),))
        await anyio.sleep(1.5)
        group.cancel_scope.cancel()
    assert results.of("slow") == []  # still waiting for its first timeout
    assert len(results.of("fast")) >= 5
    assert all(result.ok for _, _, result in results.of("fast"))


async def test_concurrency_is_bounded(hung: int) -> None:
    """With every probe hanging, no more than `concurrency` are in flight."""
    scheduler = Scheduler(0.05, 0.5, 3, lambda target, result: None)
    many = tuple(Target(f"c{i}", "127.0.0.1", hung, "tcp") for i in range(10))
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        for target in many:
            scheduler.replace(target.container_id, (target,))
        await anyio.sleep(0.2)
        in_flight = scheduler.in_flight
        group.cancel_scope.cancel()
    assert in_flight == 3
    assert scheduler.probes_done == 0


async def test_probes_are_spread_evenly_over_the_interval(listener: int) -> None:
    """After the first round, 40 targets fall evenly over the interval: no instant holds a crowd."""
    results = Results()
    interval = 2.0
    scheduler = Scheduler(interval, 1.0, 64, results)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        for i in range(40):
            scheduler.replace(f"c{i}", (Target(f"c{i}", "127.0.0.1", listener, "tcp"),))
        await anyio.sleep(interval * 2.2)
        group.cancel_scope.cancel()
    first = min(t for t, _, _ in results.items)
    later = sorted(t for t, _, _ in results.items if t > first + 0.5)
    # Tenths of the interval after the first round: each gets some probes, none a crowd.
    start = first + interval * 0.2
    buckets = [0] * 10
    for t in later:
        if start <= t < start + interval:
            buckets[int((t - start) / interval * 10)] += 1
    assert sum(buckets) >= 30
    assert max(buckets) <= 12  # three times the even share; a herd would be ~40
    assert min(buckets) >= 1


async def test_a_removed_target_is_no_longer_probed(listener: int) -> None:
    """After remove, no further results arrive for that container."""
    results = Results()
    scheduler = Scheduler(0.05, 1.0, 8, results)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        scheduler.replace("gone", (Target("gone", "127.0.0.1", listener, "tcp"),))
        await anyio.sleep(0.3)
        scheduler.remove("gone")
        removed_at = anyio.current_time()
        await anyio.sleep(0.3)
        group.cancel_scope.cancel()
    assert results.of("gone")
    assert [t for t, _, _ in results.of("gone") if t > removed_at] == []
    assert len(scheduler) == 0


async def test_a_probe_past_its_deadline_is_a_timeout(hung: int) -> None:
    """The scheduler cancels a hanging probe at its deadline and reports `timeout`; the worker goes on."""
    results = Results()
    scheduler = Scheduler(0.2, 0.3, 2, results)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        scheduler.replace("hung", (Target("hung", "127.0.0.1", hung, "tcp"),))
        await until(lambda: len(results.items) >= 3)
        group.cancel_scope.cancel()
    assert {(r.ok, r.error, r.latency_ms) for _, _, r in results.items} == {
        (False, "timeout", None)
    }


async def test_a_new_target_that_is_not_listening_yet_is_retried_until_it_answers() -> None:
    """A new target refused at first is probed again soon; only its first failure and its success are reported."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        results = Results()
        scheduler = Scheduler(3600, 1.0, 8, results)
        async with anyio.create_task_group() as group:
            group.start_soon(scheduler.run)
            scheduler.replace("late", (Target("late", "127.0.0.1", port, "tcp"),))
            await until(lambda: results.items)
            server.listen(16)  # the service starts listening a moment after its container
            await until(lambda: any(r.ok for _, _, r in results.items), timeout=5)
            await anyio.sleep(0.5)
            group.cancel_scope.cancel()
    reported = [(False, "refused"), (True, None)]
    assert reported == [(r.ok, r.error) for _, _, r in results.items]
