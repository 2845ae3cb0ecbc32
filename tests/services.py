"""Run the real dockping processes for tests, on free ports, and wait for what they show."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from litestar.testing import AsyncTestClient

from dockping.settings import Settings
from ingest.app import create_app as ingest_app
from query.app import create_app as query_app

T = TypeVar("T")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll until check() returns something truthy; fail naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class Process:
    """A dockping subcommand running as a process of its own."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dockping", *command],
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait; SIGKILL the group if it hangs. Return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.handle.close()
        return self.process.returncode

    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text(errors="replace")


def service_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """Environment for a dockping process on free ports with a fast agent."""
    ingest_port, query_port = free_port(), free_port()
    env = {
        **os.environ,
        "DOCKPING_DATA_DIR": str(data_dir),
        "DOCKPING_INGEST__PORT": str(ingest_port),
        "DOCKPING_QUERY__PORT": str(query_port),
        "DOCKPING_NOTIFY__PORT": str(free_port()),
        "DOCKPING_AGENT__INGEST_URL": f"http://127.0.0.1:{ingest_port}",
        "DOCKPING_AGENT__PROBE_INTERVAL": "1s",
        "DOCKPING_AGENT__RESYNC_INTERVAL": "2s",
        "DOCKPING_AGENT__PROBE_TIMEOUT": "500ms",
        "DOCKPING_LOG__FORMAT": "json",
        # Tests send probes timed from the start of the run: long past in a long run. Those
        # about freshness set a short one.
        "DOCKPING_QUERY__STALE_AFTER": "1d",
    }
    env.update(overrides)
    return env


Clients = tuple[AsyncTestClient[Any], AsyncTestClient[Any]]


@asynccontextmanager
async def apps(settings: Settings, database_url: str) -> AsyncIterator[Clients]:
    """An ingest and a query app in this process, on one database: their test clients."""
    async with (
        AsyncTestClient(app=ingest_app(settings, database_url)) as ingest,
        AsyncTestClient(app=query_app(settings, database_url)) as query,
    ):
        yield ingest, query
