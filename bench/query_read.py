"""Query reads at scale: 10,000 targets and 50M probe events on plain PostgreSQL, plus one target probed every 2 s for 30 days.

The dataset is made in SQL (generate_series straight into the tables, the rollup refolded
with the storage layer's own rebuild query), and its partitions whose time is over are
compacted as ingest's maintenance does. A real `dockping query` process serves it and
one keep-alive HTTP client measures it, one request at a time:

- GET /api/v1/addresses (50 rows) and GET /addresses for every sort with no filter and with
  each filter (status, free text, agent), first pages and deep pages: p99 against /healthz;
  and the API for every sort with a filter that keeps few rows or none;
- a target-events page at depth 1,000,000 against page 1 (keyset), and an OFFSET read at the
  same depth beside the keyset read, both as plain SQL;
- /latency for 30 days at 1 h buckets and 24 h at 1 min buckets, against /healthz.

The grouped views are measured on the same dataset by bench/query_groups.py.

Scale with DOCKPING_BENCH_QUERY_EVENTS (default 50,000,000) and DOCKPING_BENCH_QUERY_TARGETS
(default 10,000). With DOCKPING_BENCH_DATABASE_URL the dataset is kept in a database named
after its scale and reused by the next run; otherwise it lives in a temporary server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from bench import Figure, wait_healthy
from bench.storage_support import compact, server
from db.migrate import migrate
from db.queries import parse, sql
from query.cursor import TimeCursor, encode

_SQL = parse((Path(__file__).parent / "query_data.sql").read_text(encoding="utf-8"))
AGENTS = 10
LONG_DAYS = 30
LONG_EVERY = timedelta(seconds=2)
DEPTH = 1_000_000
ROUNDS = int(os.environ.get("DOCKPING_BENCH_QUERY_ROUNDS", "40"))


def _log(message: str) -> None:
    print(f"   .. {message}", file=sys.stderr, flush=True)


def _scale() -> tuple[int, int]:
    events = int(os.environ.get("DOCKPING_BENCH_QUERY_EVENTS", "50000000"))
    targets = int(os.environ.get("DOCKPING_BENCH_QUERY_TARGETS", "10000"))
    return targets, events


@contextlib.contextmanager
def dataset(admin_url: str, targets: int, events: int) -> Iterator[str]:
    """A database holding the dataset of this scale, made if it is not there yet."""
    name = f"bench_query_{targets}_{events}"
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(_SQL["bench_ready"], {}).fetchone()
        ready = bool(row and row[0])
    if not ready:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        migrate(url, "postgres")
        _generate(url, targets, events)
    elif migrate(url, "postgres")[1]:
        # A kept dataset from before a migration: store what the new schema logged.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql("refresh_every_rollup"))
            conn.execute("VACUUM ANALYZE")
    # As ingest's maintenance keeps it: the partitions whose time is over are compacted.
    compacted = compact(url, datetime.now(UTC))
    if compacted:
        _log(f"compacted {len(compacted)} partitions")
    yield url


def _generate(url: str, targets: int, events: int) -> None:
    per_target = max(1, events // targets)
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    start = end - per_target * timedelta(seconds=20)
    long_count = int(timedelta(days=LONG_DAYS) / LONG_EVERY)
    long_start = end - timedelta(days=LONG_DAYS)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            "SELECT dockping_ensure_partitions(%s, %s, '1 day')",
            (long_start - timedelta(days=1), end + timedelta(days=2)),
        )
        conn.execute(_SQL["bench_agents"], {"agents": AGENTS})
        conn.execute(_SQL["bench_agent_state"], {})
        conn.execute(_SQL["bench_containers"], {"agents": AGENTS, "targets": targets})
        conn.execute(_SQL["bench_targets"], {})
        step = max(1, 2_000_000 // per_target)
        started = time.monotonic()
        for first in range(1, targets + 1, step):
            last = min(targets, first + step - 1)
            conn.execute(
                _SQL["bench_events"],
                {"start": start, "first": first, "last": last, "per_target": per_target},
            )
            done = last * per_target
            rate = done / (time.monotonic() - started)
            _log(f"events {done:,} of {targets * per_target:,} ({rate:,.0f}/s)")
        conn.execute(
            _SQL["bench_long_events"],
            {"start": long_start, "target_id": targets + 1, "count": long_count},
        )
        _log(f"30-day target: {long_count:,} events")
        conn.execute(_SQL["bench_target_states"], {})
        conn.execute(_SQL["bench_container_states"], {})
        _log("computing the per-minute and per-hour rollups")
        conn.execute(sql("log_every_minute"))
        conn.execute(sql("refresh_every_rollup"))
        _log("VACUUM ANALYZE")
        conn.execute("VACUUM ANALYZE")
        conn.execute(_SQL["bench_mark_done"], {})
        _log(f"dataset made in {time.monotonic() - started:,.0f}s")


@contextlib.contextmanager
def query_service(url: str) -> Iterator[str]:
    """A `dockping query` process over the dataset; yields its base URL."""
    # The dataset's probes and heartbeats are from when it was made: keep them fresh, so that
    # a kept dataset reads as the statuses it was made with.
    with service(
        "query",
        url,
        DOCKPING_QUERY__STALE_AFTER="3650d",
        DOCKPING_AGENT__RESYNC_INTERVAL="3650d",
    ) as base:
        yield base


@contextlib.contextmanager
def service(command: str, url: str, **settings: str) -> Iterator[str]:
    """A `dockping <command>` process over a database, on a port of its own; yields its URL."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix=f"dockping-bench-{command}-") as scratch:
        env = {
            **os.environ,
            "DOCKPING_DATA_DIR": scratch,
            "DOCKPING_DATABASE__URL": url,
            f"DOCKPING_{command.upper()}__PORT": str(port),
            "DOCKPING_LOG__LEVEL": "warning",
            **settings,
        }
        log = (Path(scratch) / f"{command}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "dockping", command], env=env, stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, process)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ms(samples: list[float], quantile: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000


def _timed(call: Callable[[], None], rounds: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def _get(
    client: httpx.Client, path: str, params: dict[str, str] | None = None
) -> Callable[[], None]:
    def call() -> None:
        response = client.get(path, params=params)
        if response.status_code != 200:
            raise RuntimeError(f"{path} {params}: {response.status_code} {response.text[:200]}")

    return call


def _address_cases(client: httpx.Client) -> list[tuple[str, dict[str, str]]]:
    """Every sort, unfiltered and with each filter; first pages and a page 40 deep."""
    cases: list[tuple[str, dict[str, str]]] = []
    for sort in ("name", "status", "latency", "last_ok"):
        for extra in ({}, {"status": "down"}, {"q": "web-0"}, {"agent": "agent-3"}):
            cases.append((f"{sort} {extra}", {"sort": sort, "limit": "50", **extra}))
        params = {"sort": sort, "limit": "50"}
        for _ in range(40):  # walk 40 pages to a deep cursor
            page = client.get("/api/v1/addresses", params=params).json()
            if not page["next_cursor"]:
                break
            params = {"sort": sort, "limit": "50", "cursor": page["next_cursor"]}
        cases.append((f"{sort} page 40", params))
    return cases


# Filters that keep few rows or none: a plan that walks an index in order and checks each
# row would read everything to fill a page. Measured apart from the 20 cases above.
RARE_FILTERS = ({"status": "stopped"}, {"status": "unknown"}, {"q": "no-such-name"})


def _rare_cases() -> list[tuple[str, dict[str, str]]]:
    """Every sort with each rare filter."""
    return [
        (f"{sort} {extra}", {"sort": sort, "limit": "50", **extra})
        for sort in ("name", "status", "latency", "last_ok")
        for extra in RARE_FILTERS
    ]


def _figures(base: str, url: str, targets: int) -> list[Figure]:
    figures: list[Figure] = []
    long_id = targets + 1
    with httpx.Client(base_url=base, timeout=30) as client:
        health = _timed(_get(client, "/healthz"), ROUNDS * 4)
        h99 = _ms(health, 0.99)
        figures.append(Figure("GET /healthz p99 (baseline)", h99, "ms"))
        cases = _address_cases(client)
        api: list[float] = []
        html: list[float] = []
        worst_api = worst_html = ("", 0.0)
        for label, params in cases:
            samples = _timed(_get(client, "/api/v1/addresses", params), ROUNDS)
            api += samples
            if _ms(samples, 0.99) > worst_api[1]:
                worst_api = (label, _ms(samples, 0.99))
            samples = _timed(_get(client, "/addresses", params), max(10, ROUNDS // 2))
            html += samples
            if _ms(samples, 0.99) > worst_html[1]:
                worst_html = (label, _ms(samples, 0.99))
        _log(f"addresses: worst API case {worst_api}, worst HTML case {worst_html}")
        figures.append(
            Figure(
                f"GET /api/v1/addresses p99 ({len(cases)} cases)",
                _ms(api, 0.99),
                "ms",
                h99,
                "healthz p99",
                "p99 <= 15 ms",
                _ms(api, 0.99) <= 15,
            )
        )
        figures.append(Figure("GET /api/v1/addresses p50", _ms(api, 0.5), "ms", h99, "healthz p99"))
        figures.append(
            Figure(
                f"GET /addresses HTML p99 ({len(cases)} cases)",
                _ms(html, 0.99),
                "ms",
                h99,
                "healthz p99",
                "p99 <= 30 ms",
                _ms(html, 0.99) <= 30,
            )
        )
        figures.append(Figure("GET /addresses HTML p50", _ms(html, 0.5), "ms", h99, "healthz p99"))
        rare: list[float] = []
        for _, params in _rare_cases():
            rare += _timed(_get(client, "/api/v1/addresses", params), ROUNDS)
        figures.append(
            Figure(
                f"GET /api/v1/addresses p99, rare filters ({len(_rare_cases())} cases)",
                _ms(rare, 0.99),
                "ms",
                h99,
                "healthz p99",
                "p99 <= 15 ms",
                _ms(rare, 0.99) <= 15,
            )
        )

        with psycopg.connect(url) as conn:
            row = conn.execute(
                _SQL["bench_deep_cursor_time"], {"target_id": long_id, "depth": DEPTH - 1}
            ).fetchone()
        if row is None:
            raise RuntimeError("the 30-day target has fewer than 1,000,000 events")
        deep_cursor = encode(TimeCursor(row[0]))
        events_path = f"/api/v1/targets/{long_id}/events"
        first = _timed(_get(client, events_path, {"limit": "100"}), ROUNDS)
        deep = _timed(_get(client, events_path, {"limit": "100", "cursor": deep_cursor}), ROUNDS)
        figures.append(Figure("events page 1 (limit 100) p50", _ms(first, 0.5), "ms"))
        figures.append(
            Figure(
                "events page at depth 1,000,000 p50 (keyset)",
                _ms(deep, 0.5),
                "ms",
                _ms(first, 0.5),
                "page 1 p50",
                "<= 1.2x page 1",
                _ms(deep, 0.5) <= 1.2 * _ms(first, 0.5),
            )
        )
        figures.append(
            Figure(
                "events page at depth 1,000,000 p99 (keyset)",
                _ms(deep, 0.99),
                "ms",
                _ms(first, 0.99),
                "page 1 p99",
            )
        )
        figures += _offset_beside_keyset(url, long_id, row[0])

        now = datetime.now(UTC)
        for label, span, bucket in (
            ("30 d at 1 h", timedelta(days=30), "1h"),
            ("24 h at 1 min", timedelta(hours=24), "1m"),
        ):
            params = {
                "from": (now - span).isoformat(),
                "to": now.isoformat(),
                "bucket": bucket,
            }
            samples = _timed(_get(client, f"/api/v1/targets/{long_id}/latency", params), ROUNDS)
            figures.append(
                Figure(
                    f"latency {label} p99",
                    _ms(samples, 0.99),
                    "ms",
                    h99,
                    "healthz p99",
                    "<= 50 ms",
                    _ms(samples, 0.99) <= 50,
                )
            )
    return figures


def _offset_beside_keyset(url: str, target_id: int, deep_time: datetime) -> list[Figure]:
    """The same page at depth 1,000,000 read with OFFSET and with the keyset, as plain SQL."""
    with psycopg.connect(url, autocommit=True) as conn:

        def keyset() -> None:
            conn.execute(
                sql("target_events_page"),
                {"target_id": target_id, "before": deep_time, "limit": 100},
            ).fetchall()

        def offset() -> None:
            conn.execute(
                _SQL["bench_offset_page"], {"target_id": target_id, "depth": DEPTH, "limit": 100}
            ).fetchall()

        keyset_ms = _ms(_timed(keyset, 20), 0.5)
        offset_ms = _ms(_timed(offset, 5, warmup=1), 0.5)
    return [
        Figure("SQL keyset page at depth 1,000,000 p50", keyset_ms, "ms"),
        Figure(
            "SQL OFFSET page at depth 1,000,000 p50",
            offset_ms,
            "ms",
            keyset_ms,
            "keyset at the same depth",
        ),
    ]


def run() -> list[Figure]:
    """Make (or reuse) the dataset, serve it, measure."""
    targets, events = _scale()
    with server() as admin, dataset(admin, targets, events) as url, query_service(url) as base:
        figures = _figures(base, url, targets)
    figures.insert(
        0,
        Figure(f"dataset: targets (+1 of {LONG_DAYS} days)", float(targets), "targets"),
    )
    figures.insert(1, Figure("dataset: probe events (+1,296,000)", float(events), "events"))
    # Timings on a shared machine mean little without the load they were taken under.
    figures.append(Figure("load average (1 min) at the end, 2 cores", os.getloadavg()[0], "procs"))
    return figures
