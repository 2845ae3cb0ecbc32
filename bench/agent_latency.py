"""Discovery and change latency, end to end: docker run/stop/pause to what /api/v1/addresses shows.

Real processes on a real engine: an embedded PostgreSQL, ingest, query and the agent at its
default 20 s interval. Discovery: 20 containers, from `docker run` returning to the target
`up` in the API; its baseline is the bare physical path measured in the same run (from
`docker run` returning, an Engine API inspect then a TCP connect to the new IP, repeated
until the connect succeeds). Stop: `docker stop` returning to `stopped`, against one Engine
API inspect round trip. Pause: `docker pause` to `down`, against probe interval + timeout.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import httpx

from bench import Figure, wait_healthy
from bench.storage_support import database, server

IMAGE = "dockping-test-busybox:latest"
CONTAINERS = 20
STOPS = 10
PAUSES = 3
POLL = 0.005


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


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


def _run(label: str, name: str, *extra: str) -> float:
    _docker(
        "run",
        "-d",
        "--name",
        name,
        "--label",
        label,
        "--expose",
        "8000",
        *extra,
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "8000",
    )
    return time.monotonic()


def _physical(engine: httpx.Client, label: str, name: str) -> float:
    started = _run(label, name)
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
    processes: list[subprocess.Popen[bytes]] = []
    engine = httpx.Client(
        transport=httpx.HTTPTransport(uds="/var/run/docker.sock"), base_url="http://docker"
    )
    try:
        with (
            server() as admin_url,
            database(admin_url) as url,
            tempfile.TemporaryDirectory(prefix="dpbench-") as scratch,
        ):
            ingest_port, query_port = _free_port(), _free_port()
            env = {
                **os.environ,
                "DOCKPING_DATA_DIR": scratch,
                "DOCKPING_DATABASE__URL": url,
                "DOCKPING_INGEST__PORT": str(ingest_port),
                "DOCKPING_QUERY__PORT": str(query_port),
                "DOCKPING_INGEST__TOKEN": "bench",
                "DOCKPING_AGENT__INGEST_URL": f"http://127.0.0.1:{ingest_port}",
                "DOCKPING_LOG__LEVEL": "warning",
            }
            for command in ("ingest", "query"):
                processes.append(
                    subprocess.Popen([sys.executable, "-m", "dockping", command], env=env)
                )
            wait_healthy(f"http://127.0.0.1:{ingest_port}")
            wait_healthy(f"http://127.0.0.1:{query_port}")
            processes.append(subprocess.Popen([sys.executable, "-m", "dockping", "agent"], env=env))
            time.sleep(3)  # the agent connected to Docker
            client = httpx.Client(base_url=f"http://127.0.0.1:{query_port}", timeout=5)
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
                started = _run(label, name)
                discovery.append(_wait_status(client, name, "up") - started)

            stops = []
            for name in names[:STOPS]:
                _docker("stop", "-t", "1", name)
                started = time.monotonic()
                stops.append(_wait_status(client, name, "stopped") - started)

            pauses = []
            for i in range(PAUSES):
                name = f"dpb-pause-{run_id}-{i}"
                _run(label, name, "--label", "dockping.interval=1s")
                _wait_status(client, name, "up")
                _docker("pause", name)
                started = time.monotonic()
                pauses.append(_wait_status(client, name, "down") - started)
            for process in reversed(processes):
                process.terminate()
                process.wait(30)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={label}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if listed.stdout.split():
            subprocess.run(
                ["docker", "rm", "-f", *listed.stdout.split()], capture_output=True, check=False
            )
        engine.close()
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
            _p95(discovery) * 1000,
            "ms",
            _p95(physical) * 1000,
            "inspect + connect, p95",
            "<= 1000 ms",
            _p95(discovery) <= 1.0,
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
