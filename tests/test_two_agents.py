"""Many hosts in small: two agents with their own ids and tokens, one ingest, one query."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.docker_support import Containers
from tests.services import Process, service_env, wait_for

pytestmark = pytest.mark.docker


def rows(query_url: str, **params: str) -> list[dict[str, Any]]:
    """Address rows from the JSON API."""
    response = httpx.get(
        f"{query_url}/api/v1/addresses", params={"limit": "500", **params}, timeout=5
    )
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def table_body(html: str) -> str:
    """The rows of the address table on the HTML page."""
    match = re.search(r"<tbody>(.*?)</tbody>", html, re.DOTALL)
    assert match is not None, "the page has no table body"
    return match.group(1)


def test_two_agents_on_one_ingest_are_told_apart_and_filtered(
    containers: Containers, database_url: str, tmp_path: Path
) -> None:
    """Both agents' targets appear, each under its own agent, and ?agent= keeps only one's."""
    serving = containers.run("two", "httpd", "-f", "-p", "8000", expose=(8000,))
    run = uuid.uuid4().hex[:8]
    first, second = f"dpt-host-a-{run}", f"dpt-host-b-{run}"
    env = service_env(
        tmp_path / "services",
        DOCKPING_DATABASE__URL=database_url,
        DOCKPING_INGEST__TOKEN="shared-token",
        # The second agent has a token of its own, as on a host of its own.
        DOCKPING_INGEST__AGENT_TOKENS=f'{{"{second}" = "second-token"}}',
    )
    query_url = f"http://127.0.0.1:{env['DOCKPING_QUERY__PORT']}"
    agents = {first: "shared-token", second: "second-token"}
    processes = [
        Process(["ingest"], env, tmp_path / "ingest.log"),
        Process(["query"], env, tmp_path / "query.log"),
    ]
    for agent, token in agents.items():
        agent_env = {
            **env,
            # Each agent keeps its own spool, as it would on its own host.
            "DOCKPING_DATA_DIR": str(tmp_path / agent),
            "DOCKPING_AGENT__ID": agent,
            "DOCKPING_AGENT__TOKEN": token,
        }
        processes.append(Process(["agent"], agent_env, tmp_path / f"{agent}.log"))
    try:
        for agent in agents:
            wait_for(
                lambda agent=agent: any(
                    r["status"] == "up" for r in rows(query_url, q=serving, agent=agent)
                ),
                90,
                f"{serving} up as seen by {agent}",
            )
        both = [r for r in rows(query_url, q=serving) if r["container_name"] == serving]
        assert {first, second} == {r["agent"] for r in both}
        assert len({r["target_id"] for r in both}) == 2
        assert {containers.ip(serving)} == {r["ip"] for r in both}
        for agent, other in ((first, second), (second, first)):
            only = rows(query_url, q=serving, agent=agent)
            assert {agent} == {r["agent"] for r in only}
            page = httpx.get(
                f"{query_url}/addresses", params={"q": serving, "agent": agent}, timeout=5
            )
            assert page.status_code == 200
            table = table_body(page.text)
            assert serving in table
            assert agent in table
            assert other not in table
            assert {str(r["target_id"]) for r in only} == set(
                re.findall(r'data-target-id="([^"]+)"', table)
            )
        listed = httpx.get(f"{query_url}/api/v1/agents", timeout=5).json()
        assert {first, second} <= {a["agent"] for a in listed}
    finally:
        for process in reversed(processes):
            process.stop()
    for process in processes:
        assert "Traceback" not in process.output()
