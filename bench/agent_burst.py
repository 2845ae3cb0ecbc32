"""Discovery under bursts: 100 then 300 containers started by 16 parallel `docker run`, 100 stopped.

Real processes on a real engine, as in agent_latency: an embedded PostgreSQL, ingest, query
and the agent at its default intervals. A watcher polls the store (latest_state) every 10 ms
and notes when each container is first `up` (or `stopped`). Per burst: the lag of the last
container behind the last `docker run` (or `docker stop`) returning, and the median lag of
each container behind its own. The baseline of each is the engine's own inspect round trip
(Engine API, GET /containers/{id}/json on a container of the run), measured during the same
burst by a thread of its own. The single-container figures are timed alone, sequentially.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import psycopg

from bench import Figure
from bench._agent_stack import agent_stack, docker, engine_client, p95, run_httpd

PARALLEL = 16
SINGLE = 20
POLL = 0.01
TIMEOUT = 180


class Watcher:
    """Notes when each container of the run first shows each status in latest_state."""

    def __init__(self, database_url: str, prefix: str) -> None:
        self.database_url = database_url
        self.prefix = prefix
        self.first: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _poll(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT container_name, status FROM latest_state WHERE container_name LIKE %s",
                    (f"{self.prefix}%",),
                ).fetchall()
                now = time.monotonic()
                for name, status in rows:
                    self.first.setdefault((name, status), now)
                time.sleep(POLL)

    def wait(self, names: list[str], status: str) -> dict[str, float]:
        """When each container first showed the status; waits until all have."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if all((name, status) in self.first for name in names):
                return {name: self.first[(name, status)] for name in names}
            time.sleep(POLL)
        missing = [name for name in names if (name, status) not in self.first]
        raise RuntimeError(f"{len(missing)} containers never became {status}: {missing[:3]}")


@contextmanager
def inspect_rtt(engine: httpx.Client, container: str) -> Iterator[list[float]]:
    """Time Engine API inspects of a container, back to back, while the block runs."""
    times: list[float] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            engine.get(f"/containers/{container}/json")
            times.append(time.monotonic() - started)
            time.sleep(POLL)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield times
    finally:
        stop.set()
        thread.join(30)


@dataclass(frozen=True)
class Burst:
    """One burst's lags, in seconds, and the engine's inspect round trip meanwhile."""

    last: float
    median: float
    inspect: float


def _burst(
    engine: httpx.Client,
    reference: str,
    names: list[str],
    act: Callable[[str], float],
    watcher: Watcher,
    status: str,
) -> Burst:
    with inspect_rtt(engine, reference) as rtt, ThreadPoolExecutor(PARALLEL) as pool:
        returned = dict(zip(names, pool.map(act, names), strict=True))
        seen = watcher.wait(names, status)
    lags = [seen[name] - returned[name] for name in names]
    return Burst(
        max(seen.values()) - max(returned.values()), statistics.median(lags), statistics.median(rtt)
    )


def _stop(name: str) -> float:
    docker("stop", "-t", "1", name)
    return time.monotonic()


def _figures(what: str, burst: Burst, action: str) -> list[Figure]:
    return [
        Figure(
            f"{what}: last one after the last {action}",
            burst.last * 1000,
            "ms",
            burst.inspect * 1000,
            "engine inspect during the burst, median",
            "<= 1000 ms",
            burst.last <= 1.0,
        ),
        Figure(
            f"{what}: median after its own {action}",
            burst.median * 1000,
            "ms",
            burst.inspect * 1000,
            "engine inspect during the burst, median",
            "<= 100 ms",
            burst.median <= 0.1,
        ),
    ]


def run() -> list[Figure]:
    """Start the system, then time one container at a time, then the bursts."""
    run_id = uuid.uuid4().hex[:8]
    label = f"dockping.bench={run_id}"
    prefix = f"dpb-{run_id}-"
    with (
        engine_client() as engine,
        agent_stack(label) as stack,
        Watcher(stack.database_url, prefix) as watcher,
    ):
        reference = f"{prefix}reference"
        run_httpd(label, reference)
        watcher.wait([reference], "up")

        single: list[float] = []
        with inspect_rtt(engine, reference) as idle_rtt:
            for i in range(SINGLE):
                name = f"{prefix}single-{i}"
                returned = run_httpd(label, name)
                single.append(watcher.wait([name], "up")[name] - returned)
        idle = statistics.median(idle_rtt)

        hundred = [f"{prefix}a{i}" for i in range(100)]
        start_100 = _burst(engine, reference, hundred, lambda n: run_httpd(label, n), watcher, "up")
        stop_100 = _burst(engine, reference, hundred, _stop, watcher, "stopped")
        docker("rm", *hundred)
        time.sleep(2)  # the destroys applied before the next burst

        three_hundred = [f"{prefix}b{i}" for i in range(300)]
        start_300 = _burst(
            engine, reference, three_hundred, lambda n: run_httpd(label, n), watcher, "up"
        )
    return [
        Figure(
            "one container at a time: median of 20",
            statistics.median(single) * 1000,
            "ms",
            idle * 1000,
            "engine inspect, median",
            "<= 25 ms",
            statistics.median(single) <= 0.025,
        ),
        Figure(
            "one container at a time: p95 of 20",
            p95(single) * 1000,
            "ms",
            idle * 1000,
            "engine inspect, median",
            "<= 50 ms",
            p95(single) <= 0.05,
        ),
        *_figures("start burst of 100", start_100, "docker run"),
        *_figures("stop burst of 100", stop_100, "docker stop"),
        *_figures("start burst of 300", start_300, "docker run"),
    ]
