"""Containers and projects against a real Docker engine: `dockping up` and a compose-labelled pair."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.docker_support import Containers
from tests.services import Process, service_env, wait_for

pytestmark = pytest.mark.docker
SVG = "{http://www.w3.org/2000/svg}"


def container(query_url: str, name: str) -> dict[str, Any] | None:
    """The /api/v1/containers item of a container, by name."""
    items = httpx.get(
        f"{query_url}/api/v1/containers", params={"q": name, "limit": 500}, timeout=5
    ).json()["items"]
    found = [item for item in items if item["name"] == name]
    return found[0] if found else None


def test_a_half_listening_container_is_degraded_and_its_project_and_badge_say_so(
    containers: Containers, tmp_path: Path
) -> None:
    """A container exposing two ports with one listening is degraded (1 of 2), one whose port listens is up, and their compose label makes one degraded project."""
    project = f"dpt-stack-{containers.session}"
    labels = {"com.docker.compose.project": project}
    half = containers.run(
        "half",
        "httpd",
        "-f",
        "-p",
        "8000",
        expose=(8000, 9000),
        labels={**labels, "com.docker.compose.service": "web"},
    )
    whole = containers.run(
        "whole",
        "httpd",
        "-f",
        "-p",
        "8000",
        expose=(8000,),
        labels={**labels, "com.docker.compose.service": "api"},
    )
    env = service_env(tmp_path / "data")
    query_url = f"http://127.0.0.1:{env['DOCKPING_QUERY__PORT']}"
    up = Process(["up"], env, tmp_path / "up.log")
    try:
        degraded = wait_for(
            lambda: (c := container(query_url, half)) and c["status"] == "degraded" and c,
            90,
            f"{half} degraded in /api/v1/containers",
        )
        assert (degraded["addresses_up"], degraded["addresses_total"]) == (1, 2)
        assert degraded["compose_project"] == project
        assert degraded["compose_service"] == "web"
        listening = wait_for(
            lambda: (c := container(query_url, whole)) and c["status"] == "up" and c,
            30,
            f"{whole} up",
        )
        assert (listening["addresses_up"], listening["addresses_total"]) == (1, 1)
        projects = httpx.get(f"{query_url}/api/v1/projects", timeout=5).json()
        mine = [p for p in projects if p["project"] == project]
        assert len(mine) == 1
        assert (mine[0]["containers_up"], mine[0]["containers_total"]) == (1, 2)
        assert (mine[0]["addresses_up"], mine[0]["addresses_total"]) == (2, 3)
        assert mine[0]["status"] == "degraded"
        badge = httpx.get(f"{query_url}/badge/project/{project}.svg", timeout=5)
        assert badge.status_code == 200
        drawn = [t.text for t in ET.fromstring(badge.text).iter(f"{SVG}text")]  # noqa: S314 -- our own answer
        assert "degraded" in drawn
        assert project in drawn
        status = httpx.get(f"{query_url}/status/{project}", timeout=5)
        assert status.status_code == 200
        assert containers.ip(half) not in status.text
    finally:
        code = up.stop()
    assert code == 0, up.output()[-3000:]
    assert "Traceback" not in up.output()
