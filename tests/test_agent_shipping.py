"""Shipping with real processes: ingest away and back, SIGKILL, SIGTERM, a full spool; nothing lost.

Every event is accounted for by identity: the agent writes the identity of each event
it makes durable to agent.identity_log, and each one must end up stored by ingest, or
be listed there as dropped by a full spool.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.docker_support import Containers
from tests.services import Process, service_env, wait_for

pytestmark = pytest.mark.docker

Identity = tuple[str, str, int | None, str, datetime]


class Stack:
    """An ingest and an agent as real processes, sharing one data dir and database."""

    def __init__(self, tmp_path: Path, database_url: str, **overrides: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.identity_log = tmp_path / "identities.jsonl"
        self.env = service_env(
            tmp_path / "data",
            DOCKPING_DATABASE__URL=database_url,
            DOCKPING_INGEST__TOKEN="test-token",
            DOCKPING_AGENT__ID="shipping-agent",
            DOCKPING_AGENT__PROBE_INTERVAL="300ms",
            DOCKPING_AGENT__BATCH_INTERVAL="300ms",
            DOCKPING_AGENT__IDENTITY_LOG=str(self.identity_log),
            **overrides,
        )
        self.ingest_url = self.env["DOCKPING_AGENT__INGEST_URL"]
        self.ingest: Process | None = None
        self.agent: Process | None = None
        self.runs = 0

    def start_ingest(self) -> None:
        """Start ingest and wait until it answers."""
        self.runs += 1
        self.ingest = Process(["ingest"], self.env, self.tmp_path / f"ingest{self.runs}.log")
        wait_for(
            lambda: httpx.get(f"{self.ingest_url}/healthz", timeout=2).status_code == 200,
            60,
            "ingest healthy",
        )

    def stop_ingest(self) -> None:
        """Stop ingest."""
        assert self.ingest is not None
        self.ingest.stop()
        self.ingest = None

    def start_agent(self) -> Process:
        """Start an agent."""
        self.runs += 1
        self.agent = Process(["agent"], self.env, self.tmp_path / f"agent{self.runs}.log")
        return self.agent

    def identities(self, container_id: str | None = None, dropped: bool = False) -> set[Identity]:
        """Probe identities the agent made durable (or dropped), from its identity log."""
        found: set[Identity] = set()
        if not self.identity_log.exists():
            return found
        for line in self.identity_log.read_text().splitlines():
            item = json.loads(line)
            if item["type"] != "probe" or bool(item.get("dropped")) != dropped:
                continue
            if container_id is not None and item["container_id"] != container_id:
                continue
            found.add(
                (
                    item["container_id"],
                    item["ip"],
                    item.get("port"),
                    item["protocol"],
                    datetime.fromisoformat(item["time"]),
                )
            )
        return found

    def stored(self) -> set[Identity]:
        """Probe identities stored by ingest."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT container_id, ip, port, protocol, time FROM probe_history"
                " WHERE agent = 'shipping-agent'"
            ).fetchall()
        return {(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    def heartbeat(self) -> dict[str, Any] | None:
        """The agent's newest heartbeat, as stored."""
        with psycopg.connect(self.database_url) as conn:
            cursor = conn.execute(
                "SELECT last_heartbeat_at, docker_ok, targets, spool_bytes, dropped"
                " FROM agent_state JOIN agents USING (agent_id) WHERE name = 'shipping-agent'"
            )
            row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip(["at", "docker_ok", "targets", "spool_bytes", "dropped"], row, strict=True))

    def close(self) -> None:
        """Stop whatever still runs."""
        for process in (self.agent, self.ingest):
            if process is not None and process.process.poll() is None:
                process.stop()


@contextlib.contextmanager
def running(
    tmp_path: Path, database_url: str, *, connected: bool = False, **overrides: str
) -> Iterator[Stack]:
    """Ingest and an agent, started (with connected, once its event stream is open), then stopped."""
    made = Stack(tmp_path, database_url, **overrides)
    made.start_ingest()
    agent = made.start_agent()
    try:
        if connected:
            # Events before the stream first opens are Docker's past, which it does not replay.
            wait_for(lambda: '"docker.connected"' in agent.output(), 60, "the agent connected")
        yield made
    finally:
        made.close()


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Any:
    """A stack of real processes, stopped after the test."""
    made = Stack(tmp_path, database_url)
    try:
        yield made
    finally:
        made.close()


def container_id(name: str) -> str:
    """A container's full id, asked of Docker."""
    from tests.docker_support import docker

    return docker("inspect", "-f", "{{.Id}}", name)


def test_ingest_away_and_back_loses_nothing(stack: Stack, containers: Containers) -> None:
    """Probes made while ingest is down are spooled and all stored once it is back; SIGTERM exits 0."""
    cid = container_id(containers.run("ship", "httpd", "-f", "-p", "8000", expose=(8000,)))
    stack.start_ingest()
    agent = stack.start_agent()
    wait_for(lambda: len({s for s in stack.stored() if s[0] == cid}) >= 3, 60, "first probes")
    stack.stop_ingest()
    before = len(stack.identities(cid))
    wait_for(lambda: len(stack.identities(cid)) >= before + 10, 60, "probes spooled in the outage")
    outage = stack.identities(cid)
    assert not outage <= stack.stored()  # these were not stored yet
    stack.start_ingest()
    wait_for(lambda: outage <= stack.stored(), 60, "the outage replayed")
    agent.process.send_signal(signal.SIGTERM)
    assert agent.stop() == 0, agent.output()[-3000:]
    made = stack.identities()
    missing = made - stack.stored()
    assert missing == set(), f"{len(missing)} of {len(made)} probes lost"
    assert stack.identities(dropped=True) == set()
    log = agent.output()
    assert log.count('"ingest.unreachable"') == 1
    assert '"ingest.reachable"' in log
    assert "Traceback" not in log


def test_a_sigkilled_agent_replays_its_spool_after_restart(
    stack: Stack, containers: Containers
) -> None:
    """With ingest down, SIGKILL the agent; its successor replays every spooled probe."""
    cid = container_id(containers.run("kill", "httpd", "-f", "-p", "8000", expose=(8000,)))
    first = stack.start_agent()
    wait_for(lambda: len(stack.identities(cid)) >= 10, 60, "probes spooled")
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()
    first.stop()
    spooled = stack.identities()
    assert any((stack.tmp_path / "data" / "spool").glob("*.seg"))
    assert stack.stored() == set()
    stack.start_ingest()
    second = stack.start_agent()
    wait_for(lambda: spooled <= stack.stored(), 60, "the spool replayed")
    assert second.stop() == 0, second.output()[-3000:]
    assert stack.identities() - stack.stored() == set()


def test_sigterm_with_ingest_down_spools_and_exits_zero(
    stack: Stack, containers: Containers
) -> None:
    """SIGTERM while ingest is unreachable: the agent gives up after shutdown_timeout, keeps the spool, exits 0."""
    stack.env["DOCKPING_AGENT__SHUTDOWN_TIMEOUT"] = "1s"
    cid = container_id(containers.run("term", "httpd", "-f", "-p", "8000", expose=(8000,)))
    agent = stack.start_agent()
    wait_for(lambda: stack.identities(cid), 60, "a probe spooled")
    assert agent.stop() == 0, agent.output()[-3000:]
    stopped = [
        json.loads(line) for line in agent.output().splitlines() if '"agent.stopped"' in line
    ]
    assert len(stopped) == 1
    assert stopped[0]["spool_bytes"] > 0
    assert stopped[0]["flushed"] is False


def test_a_full_spool_drops_the_oldest_and_reports_them(
    stack: Stack, containers: Containers
) -> None:
    """Past spool_max_bytes the oldest probes go: listed as dropped, counted in the heartbeat, the rest stored."""
    stack.env["DOCKPING_AGENT__SPOOL_MAX_BYTES"] = "16384"
    stack.env["DOCKPING_AGENT__PROBE_INTERVAL"] = "100ms"
    cid = container_id(containers.run("full", "httpd", "-f", "-p", "8000", expose=(8000,)))
    agent = stack.start_agent()
    wait_for(lambda: len(stack.identities(cid, dropped=True)) >= 5, 90, "probes dropped")
    stack.start_ingest()
    wait_for(
        lambda: (h := stack.heartbeat()) is not None and h["dropped"] > 0 and h,
        60,
        "a heartbeat that counts the dropped events",
    )
    made = stack.identities()
    dropped = stack.identities(dropped=True)
    wait_for(lambda: made - dropped <= stack.stored(), 60, "every kept probe stored")
    assert agent.stop() == 0, agent.output()[-3000:]
    assert dropped & stack.stored() == set()
    assert '"spool.dropped"' in agent.output()


@pytest.mark.anyio
async def test_a_refused_record_is_kept_aside_and_the_rest_flows(
    tmp_path: Path, database_url: str
) -> None:
    """A record ingest answers 4xx for is set aside on disk; the records around it are stored."""
    from datetime import UTC, timedelta

    from agent.shipper import Shipper
    from dockping.contract import ProbeEvent
    from dockping.settings import load

    stack = Stack(tmp_path, database_url)
    stack.start_ingest()
    try:
        settings = load(None, stack.env)
        shipper = Shipper(settings.agent, "shipping-agent", "test-token", tmp_path / "spool")
        now = datetime.now(UTC)

        def probe(when: datetime, port: int) -> ProbeEvent:
            return ProbeEvent(
                time=when,
                container_id="c-aside",
                ip="10.97.0.2",
                port=port,
                ok=True,
                latency_ms=1.0,
            )

        for event in (probe(now, 1), probe(now - timedelta(days=400), 2), probe(now, 3)):
            shipper.add(event)
            shipper.spool_buffer()
        async with shipper.client(httpx.Timeout(10.0)) as client:
            assert await shipper.send_pending(client)
        assert {(s[0], s[2]) for s in stack.stored()} == {("c-aside", 1), ("c-aside", 3)}
        kept = list((tmp_path / "rejected").glob("*.json"))
        assert len(kept) == 1
        assert json.loads(kept[0].read_bytes())["events"][0]["port"] == 2
        assert (shipper.rejected, shipper.sent, shipper.spool.size()) == (1, 2, 0)
    finally:
        stack.close()
