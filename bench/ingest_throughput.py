"""Sustained ingest over HTTP (1,000-event batches, 2 agents) against raw psycopg COPY of the same rows.

Both run on the same PostgreSQL in the same run, each into a fresh database: COPY writes the
(time, target_id, latency_us) rows the events become straight into probe_events, on one
connection (the target's baseline) and on two; ingest gets the same events as JSON from two
agents over HTTP, validates them, skips duplicates, appends, updates the projection, logs the
rollup's minutes, sends its NOTIFY and commits each batch (its rollup refresher runs meanwhile,
as in production). The agents are a bare HTTP/1.1 client on one kept-alive connection each. A
last figure, with no target, is the database's part alone: the same batches as ingest's one call
of dockping_append_probes(), sent straight to PostgreSQL on two connections, so that each
run shows what HTTP, validation and ingest's Python cost on top. DOCKPING_BENCH_EVENTS sets the
events per agent (default 100,000).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TypeVar

import anyio
import msgspec
import psycopg
from anyio.streams.buffered import BufferedByteStream

from bench import Figure, wait_healthy
from bench.storage_support import (
    TARGETS_PER_AGENT,
    database,
    prepare_partitions,
    probe_json,
    raw_rows,
    server,
    start_time,
)
from bench.storage_support import copy_rows as copy_into
from db.append import Int4Array
from db.queries import sql

AGENTS = 2
BATCH = 1000
ROUNDS = 2
T = TypeVar("T")
TOKEN = "bench-token"  # noqa: S105 - a throwaway token for a local benchmark


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bodies(agent: int, count: int, start: datetime, resent: float) -> list[bytes]:
    """JSON batch bodies of one agent; `resent` of each batch repeats the batch before."""
    fresh_per_batch = BATCH - round(BATCH * resent)
    events = [probe_json(agent, i, start) for i in range(count)]
    out = []
    for offset in range(0, count, fresh_per_batch):
        fresh = events[offset : offset + fresh_per_batch]
        old = events[max(0, offset - (BATCH - len(fresh))) : offset]
        out.append(msgspec.json.encode({"agent": f"bench-{agent}", "events": old + fresh}))
    return out


class IngestProcess:
    """`dockping ingest` as a process of its own, as in production."""

    def __init__(self, url: str) -> None:
        self.port = _free_port()
        self._data = tempfile.TemporaryDirectory(prefix="dockping-bench-ingest-")
        env = dict(
            os.environ,
            DOCKPING_DATA_DIR=self._data.name,
            DOCKPING_DATABASE__URL=url,
            DOCKPING_DATABASE__POOL_SIZE="4",
            DOCKPING_INGEST__PORT=str(self.port),
            DOCKPING_INGEST__TOKEN=TOKEN,
            DOCKPING_LOG__LEVEL="warning",
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dockping", "ingest"], env=env, stderr=subprocess.PIPE
        )
        try:
            wait_healthy(f"http://127.0.0.1:{self.port}", self.process, timeout=30)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop it with SIGTERM."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._data.cleanup()


async def _post(stream: BufferedByteStream, port: int, body: bytes) -> tuple[int, dict[str, int]]:
    """One POST on a kept-alive connection: the status and the JSON answer."""
    head = (
        f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    await stream.send(head + body)
    status_line, *lines = (await stream.receive_until(b"\r\n\r\n", 65536)).split(b"\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in lines)
    answer = await stream.receive_exactly(int(fields[b"content-length"]))
    return int(status_line.split()[1]), msgspec.json.decode(answer)


async def _post_all(port: int, per_agent: list[list[bytes]]) -> tuple[float, int, int]:
    totals = {"accepted": 0, "duplicates": 0}

    async def agent(bodies: list[bytes]) -> None:
        # A bare HTTP/1.1 client, one kept-alive connection per agent: the agents share the 2
        # cores with ingest and PostgreSQL, and httpx spent about a third as much CPU per
        # batch as ingest itself, which would weigh on the figure without being ingest's.
        async with BufferedByteStream(await anyio.connect_tcp("127.0.0.1", port)) as stream:
            for body in bodies:
                status, answer = await _post(stream, port, body)
                if status != 202:
                    raise RuntimeError(f"ingest answered {status}: {answer}")
                totals["accepted"] += answer["accepted"]
                totals["duplicates"] += answer["duplicates"]

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for bodies_of_agent in per_agent:
            group.start_soon(agent, bodies_of_agent)
    return time.perf_counter() - started, totals["accepted"], totals["duplicates"]


def _warm_up(port: int, start: datetime) -> None:
    # Makes every target and container once, as a running system has, outside the timing.
    per_agent = [bodies(a, 1000, start, 0.0) for a in range(AGENTS)]
    anyio.run(_post_all, port, per_agent)


@contextlib.contextmanager
def _warmed_up(admin_url: str, count: int) -> Iterator[tuple[str, IngestProcess, datetime]]:
    """A fresh database whose agents' targets ingest has made, with ingest running, and when
    the timed events of each agent start (after the warm-up's)."""
    start = start_time(count + 2000)
    with database(admin_url) as url:
        prepare_partitions(url, start, datetime.now(start.tzinfo))
        ingest = IngestProcess(url)
        try:
            _warm_up(ingest.port, start)
            yield url, ingest, start + (start_time(count) - start)
        finally:
            ingest.stop()


def ingest_rate(admin_url: str, count: int, resent: float) -> tuple[float, int, int]:
    """Events per second (sent, duplicates included) through HTTP ingest."""
    with _warmed_up(admin_url, count) as (_, ingest, later):
        per_agent = [bodies(a, count, later, resent) for a in range(AGENTS)]
        sent = sum(len(msgspec.json.decode(b)["events"]) for bs in per_agent for b in bs)
        seconds, accepted, duplicates = anyio.run(_post_all, ingest.port, per_agent)
    return sent / seconds, accepted, duplicates


def _agent_targets(url: str, agent: int) -> tuple[int, list[int]]:
    """An agent's id and its target ids in the order of its probes (by container, then port,
    as probe_json numbers them)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.agent_id, t.target_id FROM targets t"
            " JOIN containers c USING (container_key) JOIN agents a USING (agent_id)"
            " WHERE a.name = %s ORDER BY c.container_id, t.port",
            (f"bench-{agent}",),
        ).fetchall()
    return rows[0][0], [target_id for _, target_id in rows]


def _call_once(
    url: str, agent: int, agent_id: int, targets: list[int], rows: list[tuple[datetime, int, int]]
) -> int:
    """Ingest's one call per batch, straight to PostgreSQL: an agent's rows, BATCH a call.
    Returns the events accepted."""
    accepted = 0
    with psycopg.connect(url, autocommit=True) as conn:
        for offset in range(0, len(rows), BATCH):
            batch = rows[offset : offset + BATCH]
            params = {
                "agent_id": agent_id,
                "agent": f"bench-{agent}",
                "times": [time for time, _, _ in batch],
                # raw_rows numbers an agent's targets from agent * TARGETS_PER_AGENT + 1 on.
                "target_ids": Int4Array.of(
                    [targets[(target - 1) % TARGETS_PER_AGENT] for _, target, _ in batch]
                ),
                "latencies": Int4Array.of([latency for _, _, latency in batch]),
                "log_minutes": True,
                "notify": True,
            }
            row = conn.execute(sql("append_probes"), params, prepare=True).fetchone()
            accepted += row[0] if row else 0
    return accepted


def database_rate(admin_url: str, count: int) -> float:
    """Events per second of ingest's database call alone, one connection per agent (ingest
    runs meanwhile, idle but for its rollup refresher, as in the HTTP figure)."""
    with _warmed_up(admin_url, count) as (url, _, later):
        work = [
            (agent, *_agent_targets(url, agent), raw_rows(agent, count, later))
            for agent in range(AGENTS)
        ]
        accepted: list[int] = []
        seconds = _in_threads(lambda w: accepted.append(_call_once(url, *w)), work)
    if sum(accepted) != AGENTS * count:
        raise RuntimeError(f"the calls accepted {sum(accepted)} of {AGENTS * count} events")
    return AGENTS * count / seconds


def _in_threads(work: Callable[[T], object], items: list[T]) -> float:
    """Seconds taken by work on every item, each in a thread of its own; a failure is raised."""
    failures: list[BaseException] = []

    def guarded(item: T) -> None:
        try:
            work(item)
        except BaseException as exc:  # re-raised below, in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(item,)) for item in items]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - started


def copy_rate(admin_url: str, count: int, connections: int) -> float:
    """Rows per second of raw binary COPY of the same rows: on one connection per agent, or on
    one connection for all (the agents' batches taking turns)."""
    start = start_time(count)
    with database(admin_url) as url:
        prepare_partitions(url, start, datetime.now(start.tzinfo))
        rows = [raw_rows(a, count, start) for a in range(AGENTS)]
        if connections == 1:
            turns = range(0, count, BATCH)
            rows = [
                [row for b in turns for agent_rows in rows for row in agent_rows[b : b + BATCH]]
            ]
        elif connections != AGENTS:
            raise ValueError(f"COPY runs on 1 or {AGENTS} connections, not {connections}")
        return AGENTS * count / _in_threads(lambda r: copy_into(url, r, BATCH), rows)


def run() -> list[Figure]:
    """Sustained and duplicate-heavy ingest, and the database's part of it alone, each against
    raw COPY measured alongside.

    The issue's target is half of raw COPY on one connection: "raw COPY measured here reached
    about 120k rows/s on one connection and 180k on two, so this means >= 60k events/s on two
    cores". The ratio to COPY on two connections, a stricter baseline, is printed too."""
    count = int(os.environ.get("DOCKPING_BENCH_EVENTS", "100000"))
    copies: dict[int, list[float]] = {1: [], AGENTS: []}
    sustained_runs: list[float] = []
    heavy_runs: list[float] = []
    database_runs: list[float] = []
    with server() as admin_url:
        # Interleaved rounds, so that a noisy neighbour weighs on every figure alike.
        for _ in range(ROUNDS):
            for connections, rates in copies.items():
                rates.append(copy_rate(admin_url, count, connections))
            sustained_runs.append(ingest_rate(admin_url, count, 0.0)[0])
            heavy_runs.append(ingest_rate(admin_url, count, 0.5)[0])
            database_runs.append(database_rate(admin_url, count))
    copy_one = statistics.mean(copies[1])
    copy_both = statistics.mean(copies[AGENTS])
    sustained = statistics.mean(sustained_runs)
    heavy = statistics.mean(heavy_runs)
    return [
        Figure("raw COPY, 1 connection", copy_one, "rows/s"),
        Figure(f"raw COPY, {AGENTS} connections", copy_both, "rows/s"),
        Figure(
            f"HTTP ingest, 1,000-event batches, {AGENTS} agents",
            sustained,
            "events/s",
            baseline=copy_one,
            baseline_name="COPY, 1 conn.",
            target=">= 0.5",
            met=sustained / copy_one >= 0.5,
        ),
        Figure(
            f"the same against COPY on {AGENTS} connections",
            sustained,
            "events/s",
            baseline=copy_both,
            baseline_name=f"COPY, {AGENTS} conn.",
        ),
        Figure(
            "HTTP ingest, 50% of each batch resent",
            heavy,
            "events/s",
            baseline=copy_one,
            baseline_name="COPY, 1 conn.",
            target=">= 0.4",
            met=heavy / copy_one >= 0.4,
        ),
        Figure(
            f"the same against COPY on {AGENTS} connections",
            heavy,
            "events/s",
            baseline=copy_both,
            baseline_name=f"COPY, {AGENTS} conn.",
        ),
        Figure(
            f"its database call alone, {AGENTS} connections, no HTTP",
            statistics.mean(database_runs),
            "events/s",
            baseline=copy_both,
            baseline_name=f"COPY, {AGENTS} conn.",
        ),
    ]


if __name__ == "__main__":
    for figure in run():
        print(figure.line())
