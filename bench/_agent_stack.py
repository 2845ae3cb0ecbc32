"""The embedded stack the agent benchmarks run: PostgreSQL, ingest, query and an agent, as processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from bench import wait_healthy
from bench.storage_support import database, server

IMAGE = "dockping-test-busybox:latest"
DOCKER_SOCKET = "/var/run/docker.sock"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker(*args: str) -> str:
    """Run the docker CLI; return its output."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def p95(values: list[float]) -> float:
    """The 95th percentile, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def engine_client() -> httpx.Client:
    """An HTTP client on the Engine API's unix socket."""
    return httpx.Client(transport=httpx.HTTPTransport(uds=DOCKER_SOCKET), base_url="http://docker")


def run_httpd(label: str, name: str, *extra: str) -> float:
    """`docker run` a labelled busybox httpd on :8000; return when it returned (monotonic)."""
    docker(
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


@dataclass(frozen=True)
class AgentStack:
    """Where the running stack is."""

    database_url: str
    query_url: str


@contextmanager
def agent_stack(label: str, **settings: str) -> Iterator[AgentStack]:
    """Run the stack until the block ends; then stop it and remove every container with `label`."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with (
            server() as admin_url,
            database(admin_url) as url,
            tempfile.TemporaryDirectory(prefix="dpbench-") as scratch,
        ):
            ingest_port, query_port = free_port(), free_port()
            env = {
                **os.environ,
                "DOCKPING_DATA_DIR": scratch,
                "DOCKPING_DATABASE__URL": url,
                "DOCKPING_INGEST__PORT": str(ingest_port),
                "DOCKPING_QUERY__PORT": str(query_port),
                "DOCKPING_INGEST__TOKEN": "bench",
                "DOCKPING_AGENT__INGEST_URL": f"http://127.0.0.1:{ingest_port}",
                "DOCKPING_LOG__LEVEL": "warning",
                **settings,
            }
            for command in ("ingest", "query"):
                processes.append(
                    subprocess.Popen([sys.executable, "-m", "dockping", command], env=env)
                )
            wait_healthy(f"http://127.0.0.1:{ingest_port}")
            wait_healthy(f"http://127.0.0.1:{query_port}")
            processes.append(subprocess.Popen([sys.executable, "-m", "dockping", "agent"], env=env))
            time.sleep(3)  # the agent connected to Docker
            try:
                yield AgentStack(url, f"http://127.0.0.1:{query_port}")
            finally:
                # Before the scratch directory goes: the agent writes its spool there.
                _stop(processes)
    finally:
        _stop(processes)
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


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
