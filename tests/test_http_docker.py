"""HTTP probes and Docker's health against a real engine: busybox httpd containers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from dockping.freshness import Freshness, freshness
from dockping.settings import Settings
from query import addresses
from query.addresses import Address, Filters
from tests.docker_support import Containers
from tests.services import wait_for
from tests.test_agent_shipping import Stack, running

pytestmark = pytest.mark.docker

# Three httpd on ports 80-82 of one container: a page, a CGI script answering 503, nothing.
SERVE = (
    "mkdir -p /www/cgi-bin && echo ok > /www/index.html"
    " && printf '#!/bin/sh\\nprintf \"Status: 503 Service Unavailable\\\\r\\\\n\\\\r\\\\ndown\"\\n'"
    " > /www/cgi-bin/fail && chmod +x /www/cgi-bin/fail"
    " && httpd -p 81 -h /www && httpd -p 82 -h /www && exec httpd -f -p 80 -h /www"
)


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """Ingest and an agent, running."""
    with running(tmp_path, database_url, DOCKPING_AGENT__RESYNC_INTERVAL="1s") as made:
        yield made


def _fresh() -> Freshness:
    """Statuses as of now, with the default settings."""
    return freshness(Settings(), datetime.now(UTC))


def listing(stack: Stack, name: str) -> list[Address]:
    """The listing's items for one container name, as the API gives them."""

    async def read() -> list[Address]:
        async with await psycopg.AsyncConnection.connect(stack.database_url) as conn:
            found = await addresses.page(conn, Filters(q=name), "name", None, 50, _fresh())
        return [a for a in found.items if a.container_name == name]

    return asyncio.run(read())


def test_http_paths_show_their_status_codes(stack: Stack, containers: Containers) -> None:
    """A 200 path is up with http_status 200, the 503 CGI path and a missing path down."""
    name = containers.run(
        "http",
        "sh",
        "-c",
        SERVE,
        expose=(80, 81, 82),
        labels={
            "dockping.http.80": "/index.html",
            "dockping.http.81": "/cgi-bin/fail",
            "dockping.http.82": "/missing",
        },
    )

    def settled() -> list[Address] | None:
        items = listing(stack, name)
        return items if len(items) == 3 and all(a.http_status for a in items) else None

    items = wait_for(settled, 60, "three HTTP targets with a status")
    by_port = {a.port: (a.protocol, a.status, a.error, a.http_status) for a in items}
    assert by_port == {
        80: ("http", "up", None, 200),
        81: ("http", "down", "http_status", 503),
        82: ("http", "down", "http_status", 404),
    }


def test_docker_health_shows_on_every_address(stack: Stack, containers: Containers) -> None:
    """A failing healthcheck shows unhealthy, a passing one healthy; the filter keeps each."""
    sick = containers.run(
        "sick",
        "httpd",
        "-f",
        "-p",
        "80",
        expose=(80,),
        options=("--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1"),
    )
    well = containers.run(
        "well",
        "httpd",
        "-f",
        "-p",
        "80",
        expose=(80,),
        options=("--health-cmd", "true", "--health-interval", "1s", "--health-retries", "1"),
    )
    wait_for(
        lambda: [a.health for a in listing(stack, sick)] == ["unhealthy"], 60, "sick unhealthy"
    )
    wait_for(lambda: [a.health for a in listing(stack, well)] == ["healthy"], 60, "well healthy")

    async def filtered(health: str) -> set[str]:
        async with await psycopg.AsyncConnection.connect(stack.database_url) as conn:
            found = await addresses.page(
                conn, Filters(healths=(health,)), "name", None, 500, _fresh()
            )
        return {a.container_name for a in found.items} & {sick, well}

    assert asyncio.run(filtered("unhealthy")) == {sick}
    assert asyncio.run(filtered("healthy")) == {well}
