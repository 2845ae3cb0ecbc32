"""Status against a real Docker engine: vanished containers leave the listing at the agent's
first resync, and a frozen or killed agent's rows turn stale and come back."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.docker_support import Containers, docker
from tests.services import Process, wait_for
from tests.test_agent_shipping import Stack

pytestmark = pytest.mark.docker
AUTH = {"Authorization": "Bearer test-token"}
# Short intervals: a probe every 300 ms (500 ms timeout), a resync and heartbeat every second,
# stale 2 s after the window, an agent silent after three heartbeats (3 s).
FAST = {"DOCKPING_AGENT__RESYNC_INTERVAL": "1s", "DOCKPING_QUERY__STALE_AFTER": "2s"}
# The bound the tests wait within: the stale bound, a heartbeat and a resync, with room for
# a slow shared machine.
BOUND = 30.0


class Watched(Stack):
    """Ingest, query and an agent as processes; statuses read from the query API."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        super().__init__(tmp_path, database_url, **FAST)
        self.query: Process | None = None
        self.query_url = f"http://127.0.0.1:{self.env['DOCKPING_QUERY__PORT']}"

    def start_all(self) -> None:
        """Ingest, query and the agent, answering."""
        self.start_ingest()
        self.runs += 1
        self.query = Process(["query"], self.env, self.tmp_path / f"query{self.runs}.log")
        wait_for(
            lambda: httpx.get(f"{self.query_url}/healthz", timeout=2).status_code == 200,
            60,
            "query healthy",
        )
        self.start_agent()

    def stop_all(self) -> None:
        """Stop every process (dockping stopped), each with SIGTERM."""
        self.close()

    def close(self) -> None:
        """Stop whatever still runs."""
        super().close()
        if self.query is not None and self.query.process.poll() is None:
            self.query.stop()

    def row(self, name: str, status: str | None = None) -> dict[str, Any] | None:
        """The listing's row of a container (by default, the default listing)."""
        params: dict[str, Any] = {"q": name, "limit": 500}
        if status:
            params["status"] = status
        items = httpx.get(f"{self.query_url}/api/v1/addresses", params=params, timeout=5).json()
        rows = [item for item in items["items"] if item["container_name"] == name]
        return rows[0] if rows else None

    def wait_status(self, name: str, status: str) -> dict[str, Any]:
        """Wait until the container's row has this status."""
        return wait_for(
            lambda: (r := self.row(name, status)) and r["status"] == status and r,
            BOUND + 30,
            f"{name} {status}",
        )


@pytest.fixture
def watched(tmp_path: Path, database_url: str) -> Iterator[Watched]:
    """The stack, stopped after the test."""
    made = Watched(tmp_path, database_url)
    try:
        yield made
    finally:
        made.close()


def serving(containers: Containers, stem: str) -> str:
    """A container answering on TCP 8000."""
    return containers.run(stem, "httpd", "-f", "-p", "8000", expose=(8000,))


def test_a_container_removed_while_dockping_is_stopped_is_gone_at_the_first_resync(
    watched: Watched, containers: Containers
) -> None:
    """Dockping stopped, a container removed, dockping started: its address leaves the default
    listing (and is listed under status=gone), the other stays up."""
    kept, removed = serving(containers, "kept"), serving(containers, "removed")
    watched.start_all()
    watched.wait_status(kept, "up")
    watched.wait_status(removed, "up")
    watched.stop_all()
    docker("rm", "-f", removed)
    watched.start_all()
    gone = watched.wait_status(removed, "gone")
    assert gone["status_since"] is not None
    assert watched.row(removed) is None  # not in the default listing
    assert watched.wait_status(kept, "up")["status"] == "up"


def test_a_container_removed_while_the_agent_is_killed_is_gone_once_it_restarts(
    watched: Watched, containers: Containers
) -> None:
    """The agent SIGKILLed and a container removed meanwhile: the agent's rows turn stale, and
    once it restarts the removed container is gone and the other up again."""
    kept, removed = serving(containers, "kept"), serving(containers, "removed")
    watched.start_all()
    watched.wait_status(kept, "up")
    watched.wait_status(removed, "up")
    assert watched.agent is not None
    watched.agent.process.send_signal(signal.SIGKILL)
    watched.agent.process.wait()
    docker("rm", "-f", removed)
    stale = watched.wait_status(kept, "stale")
    assert stale["stale_since"] is not None
    watched.start_agent()
    watched.wait_status(removed, "gone")
    assert watched.row(removed) is None
    watched.wait_status(kept, "up")


def test_a_frozen_agent_turns_its_rows_stale_until_it_probes_again(
    watched: Watched, containers: Containers
) -> None:
    """SIGSTOP on the agent: its row turns stale (the page says no probe since…, /metrics drops
    dockping_target_up for it); SIGCONT: up again at its next probe."""
    name = serving(containers, "frozen")
    watched.start_all()
    watched.wait_status(name, "up")
    assert watched.agent is not None
    watched.agent.process.send_signal(signal.SIGSTOP)
    try:
        stale = watched.wait_status(name, "stale")
        page = httpx.get(f"{watched.query_url}/addresses", params={"q": name}, timeout=5).text
        assert "no probe since" in page
        metrics = httpx.get(f"{watched.query_url}/metrics", timeout=5).text
        mine = [line for line in metrics.splitlines() if f'container="{name}"' in line]
        assert [line for line in mine if line.startswith("dockping_target_stale")] == [
            line
            for line in mine
            if line.startswith("dockping_target_stale") and line.endswith(" 1")
        ]
        assert any(line.startswith("dockping_target_stale") for line in mine)
        assert not any(line.startswith("dockping_target_up") for line in mine)
    finally:
        watched.agent.process.send_signal(signal.SIGCONT)
    back = watched.wait_status(name, "up")
    assert back["last_probe_at"] > stale["last_probe_at"]
