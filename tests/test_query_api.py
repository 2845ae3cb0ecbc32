"""The query service over a real database: the page, the JSON API, paging, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from dockping.settings import Settings
from tests.events import batch, lifecycle, probe
from tests.services import Clients, apps

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture
async def clients(settings: Settings, database_url: str) -> AsyncIterator[Clients]:
    """An ingest and a query app on one fresh database."""
    async with apps(settings, database_url) as both:
        yield both


async def seed(ingest: AsyncTestClient, containers: int = 7) -> None:
    """Several containers, one down, one stopped."""
    events = []
    for i in range(containers):
        events.append(
            probe(
                0,
                container=f"c{i}",
                name=f"svc-{i:02d}",
                ip=f"10.1.0.{i + 2}",
                latency=float(i + 1),
            )
        )
    events.append(probe(5, ok=False, container="c1", name="svc-01", ip="10.1.0.3"))
    events.append(lifecycle(6, "stop", container="c2", name="svc-02"))
    response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
    assert response.status_code == 202


async def test_addresses_lists_each_target_with_its_state(
    clients: tuple[AsyncTestClient, AsyncTestClient],
) -> None:
    """Each item carries the documented fields and its status."""
    ingest, query = clients
    await seed(ingest)
    response = await query.get("/api/v1/addresses")
    assert response.status_code == 200
    items = {item["container_name"]: item for item in response.json()["items"]}
    assert set(items) == {f"svc-{i:02d}" for i in range(7)}
    for key in (
        "target_id",
        "agent",
        "container_id",
        "container_name",
        "ip",
        "port",
        "protocol",
        "status",
        "latency_ms",
        "last_probe_at",
        "last_ok_at",
    ):
        assert key in items["svc-00"]
    assert (items["svc-00"]["status"], items["svc-00"]["latency_ms"]) == ("up", 1.0)
    assert (items["svc-01"]["status"], items["svc-01"]["error"]) == ("down", "refused")
    assert items["svc-01"]["last_ok_at"] is not None
    assert items["svc-02"]["status"] == "stopped"


@pytest.mark.parametrize("sort", ["name", "status", "latency", "last_ok"])
@pytest.mark.parametrize("limit", [1, 2, 3, 50])
async def test_paging_forward_and_back_covers_every_row_once(
    clients: tuple[AsyncTestClient, AsyncTestClient], sort: str, limit: int
) -> None:
    """Next pages give every row once in a stable order; Previous walks back the same pages."""
    ingest, query = clients
    await seed(ingest)
    full = (await query.get("/api/v1/addresses", params={"sort": sort, "limit": 500})).json()
    order = [item["target_id"] for item in full["items"]]
    pages = []
    cursor = None
    while True:
        params = {"sort": sort, "limit": limit, **({"cursor": cursor} if cursor else {})}
        page = (await query.get("/api/v1/addresses", params=params)).json()
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    walked = [item["target_id"] for page in pages for item in page["items"]]
    assert order == walked
    back = pages[-1]
    for expected in reversed(pages[:-1]):
        back = (
            await query.get(
                "/api/v1/addresses",
                params={"sort": sort, "limit": limit, "cursor": back["prev_cursor"]},
            )
        ).json()
        assert [i["target_id"] for i in expected["items"]] == [
            i["target_id"] for i in back["items"]
        ]
    assert back["prev_cursor"] is None


async def test_filters_narrow_the_list(clients: tuple[AsyncTestClient, AsyncTestClient]) -> None:
    """status, q and agent filter the rows."""
    ingest, query = clients
    await seed(ingest)
    down = (await query.get("/api/v1/addresses", params={"status": "down"})).json()["items"]
    assert [item["container_name"] for item in down] == ["svc-01"]
    found = (await query.get("/api/v1/addresses", params={"q": "10.1.0.5"})).json()["items"]
    assert [item["container_name"] for item in found] == ["svc-03"]
    none = (await query.get("/api/v1/addresses", params={"agent": "elsewhere"})).json()["items"]
    assert none == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 100000}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"sort": "name; DROP TABLE targets"}, "sort"),
        ({"status": "sideways"}, "status"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        (
            {"cursor": "WyJuYW1lIiwibmV4dCIsMSwxXQ"},
            "cursor",
        ),  # a cursor of the wrong type for its sort
    ],
)
async def test_bad_parameters_are_400_naming_them(
    clients: tuple[AsyncTestClient, AsyncTestClient], params: dict[str, object], field: str
) -> None:
    """Every bad parameter is a 400 with a JSON body that names it."""
    _, query = clients
    response = await query.get("/api/v1/addresses", params=params)
    assert response.status_code == 400
    assert field in str(response.json().get("field")) + response.json()["detail"]


async def test_unknown_targets_are_404(clients: tuple[AsyncTestClient, AsyncTestClient]) -> None:
    """An unknown id is a 404, for the target and for its events."""
    _, query = clients
    assert (await query.get("/api/v1/targets/999999")).status_code == 404
    assert (await query.get("/api/v1/targets/999999/events")).status_code == 404


async def test_target_events_page_newest_first(
    clients: tuple[AsyncTestClient, AsyncTestClient],
) -> None:
    """A target's raw events come newest first, in keyset pages that cover them all."""
    ingest, query = clients
    await ingest.post(
        "/api/v1/events", headers=AUTH, json=batch(*(probe(i, ok=i % 3 != 0) for i in range(10)))
    )
    target_id = (await query.get("/api/v1/addresses")).json()["items"][0]["target_id"]
    seen = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await query.get(f"/api/v1/targets/{target_id}/events", params=params)).json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    times = [item["time"] for item in seen]
    assert len(times) == 10
    assert times == sorted(times, reverse=True)
    assert [item["ok"] for item in seen][-1] is False  # second 0 failed
    target = (await query.get(f"/api/v1/targets/{target_id}")).json()
    assert target["target_id"] == target_id


async def test_the_page_shows_the_table(clients: tuple[AsyncTestClient, AsyncTestClient]) -> None:
    """/addresses is HTML with a row per address: name, IP, status, ping time, last success."""
    ingest, query = clients
    await seed(ingest)
    response = await query.get("/addresses")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<th scope="col">IP address</th>' in html
    assert "svc-00" in html
    assert "10.1.0.2" in html
    assert "1.00 ms" in html
    assert ">down</span>" in html
    assert ">stopped</span>" in html
    assert "Content-Security-Policy" in response.headers


async def test_hostile_names_render_inert(clients: tuple[AsyncTestClient, AsyncTestClient]) -> None:
    """Container names made of markup are shown as text on the table and on the detail page."""
    ingest, query = clients
    names = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
    await ingest.post(
        "/api/v1/events",
        headers=AUTH,
        json=batch(*(probe(0, name=n, container=f"h{i}") for i, n in enumerate(names))),
    )
    pages = [(await query.get("/addresses")).text]
    for item in (await query.get("/api/v1/addresses")).json()["items"]:
        pages.append((await query.get(f"/targets/{item['target_id']}")).text)
    assert len(pages) == 3
    for html in pages:
        assert "<script>alert(1)</script>" not in html
        assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in pages[0]


async def test_metrics_expose_target_state(
    clients: tuple[AsyncTestClient, AsyncTestClient],
) -> None:
    """/metrics has dockping_target_up and latency per target."""
    ingest, query = clients
    await seed(ingest)
    text = (await query.get("/metrics")).text
    assert (
        'dockping_target_up{agent="host-a",container="svc-00",ip="10.1.0.2",port="80",protocol="tcp"} 1'
        in text
    )
    assert (
        'dockping_target_up{agent="host-a",container="svc-01",ip="10.1.0.3",port="80",protocol="tcp"} 0'
        in text
    )
    assert "dockping_target_latency_seconds{" in text


async def test_openapi_documents_the_api(clients: tuple[AsyncTestClient, AsyncTestClient]) -> None:
    """/schema/openapi.json lists every API path with its parameters and its error answers."""
    _, query = clients
    spec = (await query.get("/schema/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/api/v1/addresses",
        "/api/v1/targets/{target_id}",
        "/api/v1/targets/{target_id}/latency",
        "/api/v1/targets/{target_id}/events",
        "/api/v1/containers/{container_id}/events",
        "/api/v1/agents",
        "/metrics",
    ):
        assert path in paths
    latency = paths["/api/v1/targets/{target_id}/latency"]["get"]
    assert {"from", "to", "bucket", "target_id"} == {p["name"] for p in latency["parameters"]}
    assert {"200", "400", "404"} <= set(latency["responses"])


async def test_pages_carry_a_strict_csp_and_no_inline_script(
    clients: tuple[AsyncTestClient, AsyncTestClient],
) -> None:
    """Both pages forbid inline script and load their one script from /static."""
    ingest, query = clients
    await seed(ingest)
    for path in ("/addresses", "/targets/1"):
        response = await query.get(path)
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "<script>" not in response.text
    assert '<script src="/static/live.js" defer></script>' in (await query.get("/addresses")).text


async def test_the_detail_page_lists_notifications_when_the_view_exists(
    clients: tuple[AsyncTestClient, AsyncTestClient], database_url: str
) -> None:
    """Notifications about a target appear on its page; without the view the page still answers."""
    ingest, query = clients
    await seed(ingest)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO notification_events (time, delivery_id, attempt, target_id, kind,"
            " channel, status, message) VALUES (now(), 1, 1, 1, 'down', 'webhook', 'sent',"
            " '<b>svc-00 is down</b>')"
        )
    html = (await query.get("/targets/1")).text
    assert 'id="notif-h"' in html
    assert "&lt;b&gt;svc-00 is down&lt;/b&gt;" in html
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP VIEW notification_history")
    response = await query.get("/targets/1")
    assert response.status_code == 200
    assert 'id="notif-h"' not in response.text
    assert 'id="probes-h"' in response.text


async def test_the_banner_names_a_silent_agent(
    clients: tuple[AsyncTestClient, AsyncTestClient], database_url: str
) -> None:
    """An agent whose last heartbeat is older than three intervals gets a banner; a fresh one none."""
    ingest, query = clients
    await seed(ingest)
    assert 'class="banner"' not in (await query.get("/addresses")).text
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO agent_state (agent_id, last_heartbeat_at, version, docker_ok, targets,"
            " spool_bytes, dropped) SELECT agent_id, now() - interval '61 seconds', 'x', true, 0,"
            " 0, 0 FROM agents WHERE name = 'host-a'"
        )
    html = (await query.get("/addresses")).text
    assert 'class="banner"' in html
    assert '<span class="agent-name">host-a</span>' in html
    assert 'class="banner"' in (await query.get("/targets/1")).text
