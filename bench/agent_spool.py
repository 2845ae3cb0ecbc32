"""Spool replay: events read from the agent's on-disk spool and sent into a real ingest, per second.

The agent's own Shipper replays a spool of 100,000 probe events (DOCKPING_BENCH_EVENTS)
into ingest on an embedded PostgreSQL. The baseline, in the same run and against the same
ingest, posts the same number of events as ready-made request bodies of the same size, so
the ratio is what the spool (reading, checking, splicing records) costs on top of ingest.
The replay runs first, so that it never meets a fuller database than the baseline did.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import msgspec

from agent.shipper import REQUEST_EVENTS, Shipper
from bench import Figure, wait_healthy
from bench.storage_support import database, server
from dockping.contract import Batch, Event, ProbeEvent
from dockping.settings import load

TOKEN = "bench"  # noqa: S105 - a throwaway token for a local benchmark
TARGETS = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _events(count: int, start: datetime, salt: int) -> list[ProbeEvent]:
    step = timedelta(milliseconds=20)
    return [
        ProbeEvent(
            time=start + step * i,
            container_id=f"{salt:02d}{i % TARGETS // 4:062x}",
            container_name=f"svc-{i % TARGETS // 4}",
            network="bridge",
            ip=f"10.{salt}.{i % TARGETS // 4 // 250}.{i % TARGETS // 4 % 250 + 2}",
            port=8000 + i % 4,
            ok=i % 17 != 0,
            latency_ms=0.25 if i % 17 else None,
            error=None if i % 17 else "refused",
        )
        for i in range(count)
    ]


def run() -> list[Figure]:
    """Fill a spool, then time its replay and the direct baseline."""
    count = int(os.environ.get("DOCKPING_BENCH_EVENTS", "100000"))
    with (
        server() as admin_url,
        database(admin_url) as url,
        tempfile.TemporaryDirectory(prefix="dpbench-") as scratch,
    ):
        port = _free_port()
        env = {
            **os.environ,
            "DOCKPING_DATA_DIR": scratch,
            "DOCKPING_DATABASE__URL": url,
            "DOCKPING_INGEST__PORT": str(port),
            "DOCKPING_INGEST__TOKEN": TOKEN,
            "DOCKPING_AGENT__INGEST_URL": f"http://127.0.0.1:{port}",
            "DOCKPING_LOG__LEVEL": "warning",
        }
        ingest = subprocess.Popen([sys.executable, "-m", "dockping", "ingest"], env=env)
        try:
            wait_healthy(f"http://127.0.0.1:{port}")
            settings = load(None, env)
            start = datetime.now(UTC) - timedelta(hours=1)

            shipper = Shipper(settings.agent, "bench-spool", TOKEN, Path(scratch) / "spool")
            for event in _events(count, start, 2):
                shipper.add(event)
            shipper.spool_buffer()

            async def replay() -> float:
                async with shipper.client(httpx.Timeout(120.0)) as client:
                    started = time.perf_counter()
                    if not await shipper.send_pending(client):
                        raise RuntimeError("the replay did not finish")
                    return count / (time.perf_counter() - started)

            replayed = anyio.run(replay)
            if shipper.sent != count or shipper.spool.size() != 0:
                raise RuntimeError(f"sent {shipper.sent} of {count}")
            bodies = [
                msgspec.json.encode(Batch(agent="bench-direct", events=list[Event](chunk)))
                for events in [_events(count, start, 1)]
                for chunk in (
                    events[i : i + REQUEST_EVENTS] for i in range(0, count, REQUEST_EVENTS)
                )
            ]
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                started = time.perf_counter()
                for body in bodies:
                    response = client.post("/api/v1/events", content=body, headers=headers)
                    if response.status_code != 202:
                        raise RuntimeError(f"ingest answered {response.status_code}")
                direct = count / (time.perf_counter() - started)

        finally:
            ingest.terminate()
            ingest.wait(30)
    return [
        Figure(
            "spool replay into ingest",
            replayed,
            "events/s",
            direct,
            "same events posted directly",
            ">= 50,000 events/s",
            replayed >= 50_000,
        )
    ]
