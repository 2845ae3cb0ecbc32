"""The whole system against a real Docker engine: `dockping up`, two containers, one stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.docker_support import Containers, docker
from tests.services import Process, service_env, wait_for

pytestmark = pytest.mark.docker


def by_name(query_url: str, name: str) -> dict[str, Any] | None:
    """The address row of a container, by name."""
    items = httpx.get(
        f"{query_url}/api/v1/addresses", params={"q": name, "limit": 500}, timeout=5
    ).json()["items"]
    rows = [item for item in items if item["container_name"] == name]
    return rows[0] if rows else None


def test_up_finds_probes_stores_and_shows_containers(
    containers: Containers, tmp_path: Path
) -> None:
    """One listening container is up, one with nothing listening is down, a stopped one stopped."""
    serving = containers.run("up", "httpd", "-f", "-p", "8000", expose=(8000,))
    silent = containers.run("down", "sleep", "3600", expose=(9000,))
    env = service_env(tmp_path / "data")
    query_url = f"http://127.0.0.1:{env['DOCKPING_QUERY__PORT']}"
    up = Process(["up"], env, tmp_path / "up.log")
    try:
        row = wait_for(
            lambda: (r := by_name(query_url, serving)) and r["status"] == "up" and r,
            90,
            f"{serving} up in /api/v1/addresses",
        )
        assert row["ip"] == containers.ip(serving)
        assert row["port"] == 8000
        assert row["latency_ms"] is not None
        assert row["latency_ms"] >= 0
        assert row["last_ok_at"] is not None
        down = wait_for(
            lambda: (r := by_name(query_url, silent)) and r["status"] == "down" and r,
            30,
            f"{silent} down",
        )
        assert down["error"] == "refused"
        assert down["last_ok_at"] is None
        html = httpx.get(f"{query_url}/addresses", params={"limit": 500}, timeout=5).text
        assert serving in html
        assert silent in html
        docker("stop", "-t", "1", serving)
        wait_for(
            lambda: (r := by_name(query_url, serving)) and r["status"] == "stopped",
            30,
            f"{serving} stopped",
        )
    finally:
        code = up.stop()
    assert code == 0, up.output()[-3000:]
    assert "Traceback" not in up.output()
