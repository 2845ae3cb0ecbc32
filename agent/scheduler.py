"""When to probe what: every target once per interval, spread evenly over it, bounded in concurrency.

A new target is probed at once. After that each target gets a slot in the interval
from a golden-ratio sequence, so that any number of targets fall evenly over it and
a burst of new ones does not stay a burst. Each probe is jittered around its slot
without the jitter adding up, so the spread holds for days.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio

from agent.probing import ProbeResult, probe_until_cancelled, timed_out
from agent.targets import Target

TargetKey = tuple[str, str, int | None, str]
OnResult = Callable[[Target, ProbeResult], None]
_GOLDEN = 0.6180339887498949
# Each probe lands within this fraction of the interval around its slot (and 250 ms at most).
_JITTER = 0.02
_JITTER_CAP = 0.25
# The dispatcher's granularity: far below any interval, far above a wake-up's cost.
_TICK = 0.01
# A container's service often listens a moment after the container starts: a new target
# whose first probe fails is probed again this soon, then twice as late, until it answers.
_FIRST_RETRY = 0.025
_FIRST_RETRIES = 6


@dataclass
class _Entry:
    target: Target
    due: float
    generation: int = 0
    slot: float | None = None
    retries: int = 0
    """Quick probes left to a new target that has not answered yet."""


class Scheduler:
    """Keeps the set of targets and probes each one every interval."""

    def __init__(
        self, interval: float, timeout: float, concurrency: int, on_result: OnResult
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.concurrency = concurrency
        self.on_result = on_result
        self._entries: dict[TargetKey, _Entry] = {}
        self._by_container: dict[str, set[TargetKey]] = {}
        self._heap: list[tuple[float, int, TargetKey, int]] = []
        self._sequence = itertools.count()
        self._phase = 0.0
        self._changed = anyio.Event()
        self._wake_at = 0.0
        self._running: dict[int, tuple[float, asyncio.Task[Any]]] = {}
        self._expired: set[int] = set()
        self.probes_done = 0

    @property
    def in_flight(self) -> int:
        """Probes running now (at most `concurrency`)."""
        return len(self._running)

    def __len__(self) -> int:
        return len(self._entries)

    def targets(self) -> list[Target]:
        """The targets being probed."""
        return [entry.target for entry in self._entries.values()]

    def replace(self, container_id: str, targets: tuple[Target, ...]) -> None:
        """Make a container's targets exactly these; a new one is probed at once."""
        wanted = {t.key: t for t in targets}
        keys = self._by_container.setdefault(container_id, set())
        for key in [k for k in keys if k not in wanted]:
            del self._entries[key]
            keys.discard(key)
        now = time.monotonic()
        for key, target in wanted.items():
            entry = self._entries.get(key)
            if entry is None:
                keys.add(key)
                self._schedule(key, _Entry(target, now, retries=_FIRST_RETRIES))
            else:
                entry.target = target  # the name, network or interval may have changed
        if not keys:
            del self._by_container[container_id]
        self._changed.set()

    def remove(self, container_id: str) -> None:
        """Stop probing a container."""
        self.replace(container_id, ())

    def _schedule(self, key: TargetKey, entry: _Entry) -> None:
        entry.generation += 1
        self._entries[key] = entry
        heapq.heappush(self._heap, (entry.due, next(self._sequence), key, entry.generation))

    async def run(self) -> None:
        """Probe due targets until cancelled: one dispatcher, `concurrency` workers, one sweeper."""
        # Workers pulling from a queue cost nothing while idle, and spare a task and a
        # semaphore per probe; one sweeper enforcing every deadline spares a timer per probe.
        # A task, a semaphore and a timer per probe would take two thirds of the agent's CPU.
        queue: asyncio.Queue[tuple[TargetKey, _Entry]] = asyncio.Queue(maxsize=self.concurrency)
        async with anyio.create_task_group() as group:
            for slot in range(self.concurrency):
                group.start_soon(self._worker, queue, slot)
            group.start_soon(self._sweep)
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now + _TICK:
                    _, _, key, generation = heapq.heappop(self._heap)
                    entry = self._entries.get(key)
                    if entry is None or entry.generation != generation:
                        continue  # removed or rescheduled since
                    await queue.put((key, entry))
                    now = time.monotonic()
                self._changed = anyio.Event()
                # Probes due within one tick go out together: one wake-up for several.
                next_due = self._heap[0][0] if self._heap else time.monotonic() + 3600.0
                self._wake_at = max(next_due, time.monotonic() + _TICK)
                wait = self._wake_at - time.monotonic()
                if wait > 0:
                    with anyio.move_on_after(wait):
                        await self._changed.wait()
                self._wake_at = 0.0

    async def _sweep(self) -> None:
        """Cancel every probe past its deadline, checking a few times per timeout."""
        tick = min(0.05, self.timeout / 4)
        while True:
            await anyio.sleep(tick)
            now = time.monotonic()
            for slot, (deadline, task) in list(self._running.items()):
                if deadline <= now and slot not in self._expired:
                    self._expired.add(slot)
                    task.cancel()

    async def _worker(self, queue: asyncio.Queue[tuple[TargetKey, _Entry]], slot: int) -> None:
        me = asyncio.current_task()
        assert me is not None
        while True:
            key, entry = await queue.get()
            when = datetime.now(UTC)
            self._running[slot] = (time.monotonic() + self.timeout, me)
            try:
                result = await probe_until_cancelled(entry.target)
            except asyncio.CancelledError:
                # Ours (the deadline) unless the agent is stopping, which cancels too.
                if slot not in self._expired or me.uncancel() > 0:
                    raise
                result = timed_out(when)
            finally:
                del self._running[slot]
                self._expired.discard(slot)
            self._finish(key, entry, result)

    def _finish(self, key: TargetKey, entry: _Entry, result: ProbeResult) -> None:
        self.probes_done += 1
        if self._entries.get(key) is not entry:
            return  # the target went away while we probed it
        now = time.monotonic()
        # A quick retry reports only its success: its failures would add up to a `down`
        # before the target's first interval, for a service still starting.
        if result.ok or entry.retries == _FIRST_RETRIES or entry.slot is not None:
            self.on_result(entry.target, result)
        if not result.ok and entry.retries > 0 and entry.slot is None:
            entry.due = now + _FIRST_RETRY * 2 ** (_FIRST_RETRIES - entry.retries)
            entry.retries -= 1
            self._schedule(key, entry)
            if entry.due < self._wake_at:
                self._changed.set()
            return
        entry.retries = 0
        interval = entry.target.interval or self.interval
        if entry.slot is None:
            self._phase = (self._phase + _GOLDEN) % 1.0
            entry.slot = now + interval * max(self._phase, 0.02)
        else:
            entry.slot += interval
            if entry.slot < now:
                # Overloaded (or the interval shrank): take the next slot rather than a burst.
                entry.slot += interval * ((now - entry.slot) // interval + 1)
        spread = min(interval * _JITTER, _JITTER_CAP)
        entry.due = max(entry.slot + random.uniform(-spread, spread), now)  # noqa: S311
        self._schedule(key, entry)
        if entry.due < self._wake_at:
            self._changed.set()  # only when the dispatcher would otherwise sleep past it
