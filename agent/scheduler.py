"""When to probe what: every target once per interval, spread over it, bounded in concurrency."""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from agent.probing import ProbeResult, run_probe
from agent.targets import Target

TargetKey = tuple[str, str, int | None, str]
OnResult = Callable[[Target, ProbeResult], None]


@dataclass
class _Entry:
    target: Target
    due: float
    generation: int


class Scheduler:
    """Keeps the set of targets and probes each one every interval."""

    def __init__(
        self, interval: float, timeout: float, concurrency: int, on_result: OnResult
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.limiter = anyio.Semaphore(concurrency)
        self.on_result = on_result
        self._entries: dict[TargetKey, _Entry] = {}
        self._heap: list[tuple[float, int, TargetKey, int]] = []
        self._sequence = itertools.count()
        self._changed = anyio.Event()
        self.probes_done = 0

    def __len__(self) -> int:
        return len(self._entries)

    def targets(self) -> list[Target]:
        """The targets being probed."""
        return [entry.target for entry in self._entries.values()]

    def replace(self, container_id: str, targets: tuple[Target, ...]) -> None:
        """Make a container's targets exactly these; a new one is probed at once."""
        wanted = {t.key: t for t in targets}
        for key in [k for k in self._entries if k[0] == container_id and k not in wanted]:
            del self._entries[key]
        now = time.monotonic()
        for key, target in wanted.items():
            entry = self._entries.get(key)
            if entry is None:
                self._schedule(key, _Entry(target, now, 0))
            else:
                entry.target = target  # the name, network or interval may have changed
        self._changed.set()

    def remove(self, container_id: str) -> None:
        """Stop probing a container."""
        self.replace(container_id, ())

    def _schedule(self, key: TargetKey, entry: _Entry) -> None:
        entry.generation += 1
        self._entries[key] = entry
        heapq.heappush(self._heap, (entry.due, next(self._sequence), key, entry.generation))

    async def run(self) -> None:
        """Probe due targets until cancelled."""
        async with anyio.create_task_group() as group:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, key, generation = heapq.heappop(self._heap)
                    entry = self._entries.get(key)
                    if entry is None or entry.generation != generation:
                        continue  # removed or rescheduled since
                    await self.limiter.acquire()
                    group.start_soon(self._probe, key, entry)
                    now = time.monotonic()
                self._changed = anyio.Event()
                wait = self._heap[0][0] - time.monotonic() if self._heap else 3600.0
                if wait > 0:
                    with anyio.move_on_after(wait):
                        await self._changed.wait()

    async def _probe(self, key: TargetKey, entry: _Entry) -> None:
        try:
            result = await run_probe(entry.target, self.timeout)
        finally:
            self.limiter.release()
        self.probes_done += 1
        if self._entries.get(key) is not entry:
            return  # the target went away while we probed it
        self.on_result(entry.target, result)
        interval = entry.target.interval or self.interval
        if entry.generation == 1:
            # After the first probe, a random phase spreads targets evenly over the interval.
            next_due = time.monotonic() + interval * random.uniform(0.05, 1.0)  # noqa: S311
        else:
            next_due = entry.due + interval * random.uniform(0.97, 1.03)  # noqa: S311
            next_due = max(next_due, time.monotonic() + interval * 0.1)
        entry.due = next_due
        self._schedule(key, entry)
        self._changed.set()
