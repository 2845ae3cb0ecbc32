"""Live updates: ingest's NOTIFY reaches /api/v1/stream as server-sent events, across a lost connection."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.events import batch, probe
from tests.services import Process, service_env, wait_for

TOKEN = "test-token"


class Services:
    """Real ingest and query processes on one database."""

    def __init__(self, ingest_url: str, query_url: str) -> None:
        self.ingest_url = ingest_url
        self.query_url = query_url

    def send(self, *events: dict[str, Any]) -> None:
        """Post a batch to ingest and insist it is accepted."""
        response = httpx.post(
            f"{self.ingest_url}/api/v1/events",
            json=batch(*events),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text


@pytest.fixture
def services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    """Ingest and query as processes of their own."""
    env = service_env(
        tmp_path / "data", DOCKPING_DATABASE__URL=database_url, DOCKPING_INGEST__TOKEN=TOKEN
    )
    urls = (
        f"http://127.0.0.1:{env['DOCKPING_INGEST__PORT']}",
        f"http://127.0.0.1:{env['DOCKPING_QUERY__PORT']}",
    )
    ingest = Process(["ingest"], env, tmp_path / "ingest.log")
    query = Process(["query"], env, tmp_path / "query.log")
    try:
        for url in urls:
            wait_for(
                lambda url=url: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, 60, url
            )
        yield Services(*urls)
    finally:
        query.stop(15)
        ingest.stop(15)


class Stream:
    """An SSE stream read on a thread of its own; `rows` events arrive in a queue."""

    def __init__(self, url: str) -> None:
        self.rows: queue.Queue[list[dict[str, Any]]] = queue.Queue()
        self.client = httpx.Client(timeout=httpx.Timeout(5, read=60))
        self.thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self.thread.start()

    def _read(self, url: str) -> None:
        event = ""
        try:
            with self.client.stream("GET", url) as response:
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line.partition(":")[2].strip()
                    elif line.startswith("data:") and event == "rows":
                        self.rows.put(json.loads(line.partition(":")[2]))
                    elif line == "":
                        event = ""
        except httpx.HTTPError:
            pass

    def next_rows(self, timeout: float = 15) -> list[dict[str, Any]]:
        """The next `rows` event."""
        return self.rows.get(timeout=timeout)

    def close(self) -> None:
        """Stop reading."""
        self.client.close()


def test_an_ingested_event_reaches_the_stream(services: Services) -> None:
    """The stream first sends the rows' current state, then each change ingest commits."""
    services.send(
        probe(-5, container="c1", ip="10.5.0.2"), probe(-5, container="c2", ip="10.5.0.3")
    )
    items = httpx.get(f"{services.query_url}/api/v1/addresses", timeout=5).json()["items"]
    ids = ",".join(str(item["target_id"]) for item in items)
    stream = Stream(f"{services.query_url}/api/v1/stream?ids={ids}")
    try:
        first = stream.next_rows()
        assert {row["status"] for row in first} == {"up"}
        assert len(first) == 2
        services.send(probe(0, ok=False, container="c2", ip="10.5.0.3", error="timeout"))
        changed = stream.next_rows()
        assert [(row["status"], row["error"]) for row in changed] == [("down", "(timeout)")]
    finally:
        stream.close()


def test_the_stream_survives_a_lost_listen_connection(
    services: Services, database_url: str
) -> None:
    """When the database drops the LISTEN connection, the query service listens again and updates keep coming."""
    services.send(probe(-5, container="c1", ip="10.5.0.2"))
    target_id = httpx.get(f"{services.query_url}/api/v1/addresses", timeout=5).json()["items"][0][
        "target_id"
    ]
    stream = Stream(f"{services.query_url}/api/v1/stream?ids={target_id}")
    try:
        assert stream.next_rows()[0]["status"] == "up"
        with psycopg.connect(database_url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'dockping-query-listen' AND datname = current_database()"
            ).fetchall()
            assert killed == [(True,)]

            def listening_again() -> bool:
                found = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'dockping-query-listen' AND datname = current_database()"
                ).fetchone()
                return found is not None and found[0] == 1

            wait_for(listening_again, 30, "a new LISTEN connection")
        # After listening again the hub resends every row, since changes may have been missed.
        assert stream.next_rows()[0]["target_id"] == target_id
        services.send(probe(0, ok=False, container="c1", ip="10.5.0.2"))
        assert stream.next_rows()[0]["status"] == "down"
    finally:
        stream.close()
