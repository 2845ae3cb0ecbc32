"""The live stream and the notifier at scale (issue 27): 100,000 targets while ingest commits 5,000 events/s.

The dataset is query_read's (DOCKPING_BENCH_LIVE_TARGETS targets, default 100,000, 20 events
each), served by a real `dockping ingest` and `dockping query`. A load thread posts probe
events of the dataset's own targets through ingest, 1,000 a batch, one agent's targets a
batch, at DOCKPING_BENCH_LIVE_RATE events/s (default 5,000), each stamped with the time it is
sent. 100 clients follow /api/v1/stream, each for the 50 targets of its own page of the
listing; the lag of an update is when a client reads a target's new last success minus that
probe's time, so it holds ingest, the commit, the NOTIFY, the query's read and the stream.
A `dockping notify` follows the same store meanwhile (once it has folded the dataset itself);
its lag is when its kept position of a batch's first target (notify_targets.last_time)
reaches the batch's time, minus that time.
The baseline is ingest's own answer time for the batches in the same run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import psycopg

from bench import Figure
from bench.query_read import dataset, query_service, service
from bench.storage_support import server
from db.queries import sql
from dockping.settings import NotifySettings

CLIENTS = 100
PAGE = 50
BATCH = 1000
SECONDS = 30.0
WARMUP = 5.0
TOKEN = "bench-token"  # noqa: S105 - a throwaway token for a local benchmark

_IDENTITIES = """
SELECT a.name, c.container_id, c.name, t.network, host(t.ip), t.port, t.protocol, t.target_id
FROM targets t JOIN containers c USING (container_key) JOIN agents a USING (agent_id)
ORDER BY a.name, t.target_id
"""


def _event(identity: tuple[object, ...], when: str) -> dict[str, object]:
    _, container_id, name, network, ip, port, protocol, _ = identity
    return {
        "type": "probe",
        "time": when,
        "container_id": container_id,
        "container_name": name,
        "network": network,
        "ip": ip,
        "port": port,
        "protocol": protocol,
        "ok": True,
        "latency_ms": 0.5,
    }


def _load(
    base: str,
    identities: list[tuple[object, ...]],
    rate: float,
    stop: threading.Event,
    batches: list[tuple[float, int]],
) -> list[float]:
    """Post batches of one agent's targets, round robin, at `rate` events/s; their answer times.
    Each batch's time and first target go to `batches`."""
    by_agent: dict[str, list[tuple[object, ...]]] = {}
    for identity in identities:
        by_agent.setdefault(str(identity[0]), []).append(identity)
    agents = sorted(by_agent)
    offsets = dict.fromkeys(agents, 0)
    answers: list[float] = []
    interval = BATCH / rate
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        due = time.monotonic()
        turn = 0
        while not stop.is_set():
            agent = agents[turn % len(agents)]
            turn += 1
            targets = by_agent[agent]
            start = offsets[agent]
            chosen = [targets[(start + i) % len(targets)] for i in range(BATCH)]
            offsets[agent] = (start + BATCH) % len(targets)
            stamp = datetime.now(UTC)
            when = stamp.isoformat().replace("+00:00", "Z")
            body = msgspec.json.encode(
                {"agent": agent, "events": [_event(i, when) for i in chosen]}
            )
            sent = time.monotonic()
            response = client.post("/api/v1/events", content=body)
            answers.append(time.monotonic() - sent)
            if response.status_code != 202:
                raise RuntimeError(f"ingest answered {response.status_code}: {response.text}")
            batches.append((stamp.timestamp(), int(str(chosen[0][7]))))
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))
    return answers


async def _client(base: str, ids: list[int], lags: list[float], until: float) -> None:
    """Follow the stream of these targets; note each new last probe's lag behind its time."""
    seen: dict[int, str] = {}
    counting_from = time.time() + WARMUP
    url = f"{base}/api/v1/stream"
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client,
        client.stream("GET", url, params={"ids": ",".join(map(str, ids))}) as response,
    ):
        event = ""
        async for line in response.aiter_lines():
            if time.time() > until:
                return
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "rows":
                now = time.time()
                for row in msgspec.json.decode(line[5:].strip()):
                    # Every probe the load sends succeeds: its time is the row's last success.
                    probed = row.get("last_ok_iso")
                    target = row["target_id"]
                    if probed and seen.get(target) not in (None, probed) and now > counting_from:
                        lag = (
                            now - datetime.fromisoformat(probed.replace("Z", "+00:00")).timestamp()
                        )
                        lags.append(lag)
                    seen[target] = probed


async def _follow(base: str, pages: list[list[int]], seconds: float) -> list[float]:
    lags: list[float] = []
    until = time.time() + seconds
    tasks = [asyncio.create_task(_client(base, ids, lags, until)) for ids in pages]
    await asyncio.wait(tasks, timeout=seconds + 20)
    for task in tasks:
        task.cancel()
    return lags


def _notifier_lags(
    url: str, batches: list[tuple[float, int]], stop: threading.Event
) -> list[float]:
    """Poll the notifier's positions: each batch's lag until its first target's is its time."""
    lags: list[float] = []
    counting_from = time.time() + WARMUP
    waiting: list[tuple[float, int]] = []
    taken = 0
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            new = batches[taken:]
            taken += len(new)
            waiting += new
            if waiting:
                kept: dict[int, float] = dict(
                    conn.execute(
                        "SELECT target_id, extract(epoch FROM last_time)::float8"
                        " FROM notify_targets WHERE target_id = ANY(%s)",
                        ([target for _, target in waiting],),
                    ).fetchall()
                )
                now = time.time()
                left = []
                for sent, target in waiting:
                    if kept.get(target, 0.0) < sent - 0.001:
                        left.append((sent, target))
                    elif sent > counting_from:
                        lags.append(now - sent)
                waiting = left
            time.sleep(0.02)
    return lags


def _caught_up(url: str, timeout: float = 300) -> None:
    """Wait until the notifier has folded the dataset itself (its first sweep), so that the
    figure is its lag behind the load, not its catch-up on a new store."""
    deadline = time.monotonic() + timeout
    horizon = datetime.now(UTC) - timedelta(seconds=NotifySettings().max_catch_up)
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if not conn.execute(sql("notify_due_targets"), {"horizon": horizon}).fetchone():
                return
            time.sleep(0.5)
    raise RuntimeError("the notifier did not catch up with the dataset")


def _pages(base: str) -> list[list[int]]:
    """The target ids of the listing's first CLIENTS pages, one page per client."""
    pages: list[list[int]] = []
    params = {"limit": str(PAGE)}
    with httpx.Client(base_url=base, timeout=30) as client:
        while len(pages) < CLIENTS:
            page = client.get("/api/v1/addresses", params=params).json()
            pages.append([item["target_id"] for item in page["items"]])
            if not page["next_cursor"]:
                break
            params["cursor"] = page["next_cursor"]
    return pages


def _notifier_figure(lags: list[float], targets: int, baseline: float) -> Figure:
    if not lags:
        raise RuntimeError("the notifier never caught up with a batch")
    lags.sort()
    p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
    return Figure(
        f"the notifier at {targets:,} targets: lag behind a batch, p99",
        p99 * 1000,
        "ms",
        baseline * 1000,
        "ingest's answer to a batch, median",
        "<= 1000 ms",
        p99 <= 1.0,
    )


def run() -> list[Figure]:
    """Make or reuse the dataset, start ingest and query, then load and follow for a while."""
    targets = int(os.environ.get("DOCKPING_BENCH_LIVE_TARGETS", "100000"))
    rate = float(os.environ.get("DOCKPING_BENCH_LIVE_RATE", "5000"))
    with (
        server() as admin_url,
        dataset(admin_url, targets, targets * 20) as url,
        service("ingest", url, DOCKPING_INGEST__TOKEN=TOKEN) as ingest,
        query_service(url) as query,
        service("notify", url),
    ):
        with psycopg.connect(url) as conn:
            identities = conn.execute(_IDENTITIES).fetchall()
        pages = _pages(query)
        _caught_up(url)
        stop = threading.Event()
        answers: list[float] = []
        batches: list[tuple[float, int]] = []
        notified: list[float] = []
        failure: list[BaseException] = []

        def load() -> None:
            try:
                answers.extend(_load(ingest, identities, rate, stop, batches))
            except BaseException as exc:  # reported below, not lost in the thread
                failure.append(exc)

        def follow_notifier() -> None:
            try:
                notified.extend(_notifier_lags(url, batches, stop))
            except BaseException as exc:
                failure.append(exc)

        threads = [threading.Thread(target=t, daemon=True) for t in (load, follow_notifier)]
        for thread in threads:
            thread.start()
        lags = asyncio.run(_follow(query, pages, SECONDS))
        stop.set()
        for thread in threads:
            thread.join(60)
        if failure:
            raise failure[0]
    if not lags:
        raise RuntimeError("no client saw an update")
    lags.sort()
    answers.sort()
    p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
    answer_p50 = statistics.median(answers)
    sent = len(answers) * BATCH / SECONDS
    return [
        Figure(
            f"{len(pages)} SSE clients at {targets:,} targets: update lag p99",
            p99 * 1000,
            "ms",
            answer_p50 * 1000,
            "ingest's answer to a batch, median",
            "<= 1000 ms",
            p99 <= 1.0,
        ),
        Figure(
            "the same, median",
            statistics.median(lags) * 1000,
            "ms",
            answer_p50 * 1000,
            "ingest's answer to a batch, median",
        ),
        Figure("updates read by the clients", float(len(lags)), "rows"),
        _notifier_figure(notified, targets, answer_p50),
        Figure("events posted through ingest", sent, "events/s", rate, "asked", f">= {rate:,.0f}"),
    ]
