"""The vantage of a target through ingest and query: stored once per target, shown in the API and page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from dockping.contract import UNPROBED_NOTE
from dockping.settings import Settings
from tests.events import batch, probe
from tests.services import Clients, apps

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture
async def clients(settings: Settings, database_url: str) -> AsyncIterator[Clients]:
    """An ingest and a query app on one fresh database."""
    async with apps(settings, database_url) as both:
        yield both


def unprobed(t: float, *, container: str, ip: str) -> dict[str, Any]:
    """The declaration of a target no vantage reaches."""
    return {**probe(t, False, container=container, ip=ip), "error": None, "vantage": "none"}


async def _items(query: AsyncTestClient) -> dict[str, dict[str, Any]]:
    response = await query.get("/api/v1/addresses")
    assert response.status_code == 200
    return {item["container_id"]: item for item in response.json()["items"]}


async def test_each_address_shows_where_it_was_probed_from(
    clients: tuple[AsyncTestClient, AsyncTestClient],
) -> None:
    """host and container are shown as sent; an agent that says nothing shows null."""
    ingest, query = clients
    events = [
        {**probe(0, container="bridged", ip="10.9.0.2"), "vantage": "host"},
        {**probe(0, container="macvlan", ip="10.213.7.2"), "vantage": "container"},
        probe(0, container="older", ip="10.9.0.4"),
    ]
    response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
    assert response.status_code == 202
    items = await _items(query)
    assert {k: (v["vantage"], v["note"]) for k, v in items.items()} == {
        "bridged": ("host", None),
        "macvlan": ("container", None),
        "older": (None, None),
    }
    one = await query.get(f"/api/v1/targets/{items['macvlan']['target_id']}")
    assert (one.json()["vantage"], one.json()["status"]) == ("container", "up")
    page = await query.get(f"/targets/{items['macvlan']['target_id']}")
    assert "probed from inside the container&#39;s network" in page.text


async def test_an_unprobed_target_is_unknown_with_the_note_and_stores_no_event(
    clients: tuple[AsyncTestClient, AsyncTestClient],
) -> None:
    """A declaration makes the target, unknown with the note, and no probe event or state."""
    ingest, query = clients
    body = batch(unprobed(0, container="task", ip="10.213.9.5"))
    for _ in range(2):  # sent again: still one target, still no event
        response = await ingest.post("/api/v1/events", headers=AUTH, json=body)
        assert response.status_code == 202
    items = await _items(query)
    assert [(i["status"], i["vantage"], i["note"]) for i in items.values()] == [
        ("unknown", None, UNPROBED_NOTE)
    ]
    target_id = items["task"]["target_id"]
    events = await query.get(f"/api/v1/targets/{target_id}/events")
    assert events.json()["items"] == []
    page = await query.get(f"/targets/{target_id}")
    assert "not probed: not reachable from the agent&#39;s network" in page.text


async def test_a_vantage_that_changes_is_stored_anew(
    clients: tuple[AsyncTestClient, AsyncTestClient],
) -> None:
    """A target probed from the host, then from its container, shows container."""
    ingest, query = clients
    for t, vantage in ((0, "host"), (1, "container")):
        event = {**probe(t, container="moved", ip="10.9.0.9"), "vantage": vantage}
        response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(event))
        assert response.status_code == 202
    assert (await _items(query))["moved"]["vantage"] == "container"


async def test_an_unprobed_declaration_with_a_result_is_refused(
    clients: tuple[AsyncTestClient, AsyncTestClient],
) -> None:
    """vantage none with ok true (or an error) is a 400 naming the vantage field."""
    ingest, _ = clients
    bad = {**probe(0, container="odd", ip="10.9.0.7"), "vantage": "none"}
    response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(bad))
    assert response.status_code == 400
    assert response.json()["field"] == "$.events[0].vantage"
