"""One probe as the agent makes it: through the scheduler, under the scheduler's deadline."""

from __future__ import annotations

import anyio

from agent.probing import ProbeResult
from agent.scheduler import Scheduler
from agent.targets import Target


async def probe_once(target: Target, timeout: float) -> ProbeResult:
    """The first result the scheduler reports for this target, probed within `timeout` s."""
    results: list[ProbeResult] = []
    reported = anyio.Event()

    def on_result(_: Target, result: ProbeResult) -> None:
        results.append(result)
        reported.set()

    # A long interval: the scheduler probes a new target at once, and not again in this call.
    scheduler = Scheduler(3600.0, timeout, 1, on_result)
    scheduler.replace(target.container_id, (target,))
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await reported.wait()
        group.cancel_scope.cancel()
    return results[0]
