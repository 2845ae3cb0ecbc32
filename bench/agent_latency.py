"""Discovery and change latency, end to end: docker run/stop/pause to what /api/v1/addresses shows.

Real processes on a real engine: an embedded PostgreSQL, ingest, query and the agent at its
default 20 s interval. Discovery: 20 containers, from `docker run` returning to the target
`up` in the API; its baseline is the bare physical path measured in the same run (from
`docker run` returning, an Engine API inspect then a TCP connect to the new IP, repeated
until the connect succeeds). Stop: `docker stop` returning to `stopped`, against one Engine
API inspect round trip. Pause: `docker pause` to `down`, against probe interval + timeout.
"""

from __future__ import annotations

import socket
import statistics
import time
import uuid

import httpx

from bench import Figure
from bench._agent_stack import agent_stack, engine_client, p95, run_httpd
from bench._agent_stack import docker as _docker

CONTAINERS = 20
STOPS = 10
PAUSES = 3
POLL = 0.005


def _status(client: httpx.Client, name: str) -> str | None:
    items = client.get("/api/v1/addresses", params={"q": name, "limit": 10}).json()["items"]
    rows = [item for item in items if item["container_name"] == name]
    return str(rows[0]["status"]) if rows else None


def _wait_status(client: httpx.Client, name: str, wanted: str, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _status(client, name) == wanted:
            return time.monotonic()
        time.sleep(POLL)
    raise RuntimeError(f"{name} never became {wanted}")


def _physical(engine: httpx.Client, label: str, name: str) -> float:
    started = run_httpd(label, name)
    while True:
        inspect = engine.get(f"/containers/{name}/json").json()
        ip = inspect["NetworkSettings"]["IPAddress"]
        if ip:
            try:
                with socket.create_connection((ip, 8000), timeout=0.5):
                    return time.monotonic() - started
            except OSError:
                pass
        time.sleep(POLL)


def run() -> list[Figure]:
    """Start the system, then time discovery, stop and pause."""
    label = f"dockping.bench={uuid.uuid4().hex[:8]}"
    with engine_client() as engine, agent_stack(label) as stack:
        client = httpx.Client(base_url=stack.query_url, timeout=5)
        run_id = label.rsplit("=", 1)[1]

        physical = [_physical(engine, label, f"dpb-phys-{run_id}-{i}") for i in range(10)]
        inspect_rtt = []
        for i in range(20):
            started = time.monotonic()
            engine.get(f"/containers/dpb-phys-{run_id}-{i % 10}/json")
            inspect_rtt.append(time.monotonic() - started)

        discovery = []
        names = [f"dpb-up-{run_id}-{i}" for i in range(CONTAINERS)]
        for name in names:
            started = run_httpd(label, name)
            discovery.append(_wait_status(client, name, "up") - started)

        stops = []
        for name in names[:STOPS]:
            _docker("stop", "-t", "1", name)
            started = time.monotonic()
            stops.append(_wait_status(client, name, "stopped") - started)

        pauses = []
        for i in range(PAUSES):
            name = f"dpb-pause-{run_id}-{i}"
            run_httpd(label, name, "--label", "dockping.interval=1s")
            _wait_status(client, name, "up")
            _docker("pause", name)
            started = time.monotonic()
            pauses.append(_wait_status(client, name, "down") - started)
    interval_plus_timeout = 1.0 + 2.0
    return [
        Figure(
            "discovery latency, median of 20",
            statistics.median(discovery) * 1000,
            "ms",
            statistics.median(physical) * 1000,
            "inspect + connect, median",
            "<= 250 ms",
            statistics.median(discovery) <= 0.25,
        ),
        Figure(
            "discovery latency, p95 of 20",
            p95(discovery) * 1000,
            "ms",
            p95(physical) * 1000,
            "inspect + connect, p95",
            "<= 1000 ms",
            p95(discovery) <= 1.0,
        ),
        Figure(
            "stop latency (docker stop -> stopped), median",
            statistics.median(stops) * 1000,
            "ms",
            statistics.median(inspect_rtt) * 1000,
            "one Engine API inspect",
            "<= 250 ms",
            statistics.median(stops) <= 0.25,
        ),
        Figure(
            "pause latency (docker pause -> down), median",
            statistics.median(pauses) * 1000,
            "ms",
            interval_plus_timeout * 1000,
            "probe interval + timeout",
            "<= interval + timeout",
            statistics.median(pauses) <= interval_plus_timeout,
        ),
    ]
