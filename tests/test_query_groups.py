"""Containers and projects: the roll-up rule, keyset paging, the API, status pages and badges."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from dockping.settings import Settings, load
from ingest.app import create_app as ingest_app
from query.app import create_app as query_app
from tests.events import batch, lifecycle, probe

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer test-token"}
# Recent, so that the probes written at it vouch for their targets (the tests' stale_after
# is a day).
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
ADDRESS_STATUSES = ["up", "down", "stopped", "stale", "unknown", "gone"]
SEVERITY = ["gone", "up", "stopped", "unknown", "stale", "degraded", "down"]
HOSTILE = "<script>alert(1)</script>\"&'<img src=x onerror=alert(1)>"
SVG = "{http://www.w3.org/2000/svg}"


def reference_rollup(statuses: list[str]) -> str:
    """The roll-up rule as the README states it, written apart from the SQL."""
    left = [s for s in statuses if s != "gone"]
    if not left:
        return "gone" if statuses else "unknown"
    if all(s == "up" for s in left):
        return "up"
    if "up" in left:
        return "degraded"
    for status in ("down", "stale", "stopped"):
        if status in left:
            return status
    return "unknown"


def reference_worst(statuses: list[str]) -> str:
    """The worst of some statuses; gone only when nothing else is there."""
    return max(statuses, key=SEVERITY.index) if statuses else "unknown"


@settings(max_examples=200, deadline=None)
@given(statuses=st.lists(st.sampled_from(ADDRESS_STATUSES), max_size=8))
def test_the_rollup_rule_agrees_with_the_reference_model(
    module_database_url: str, statuses: list[str]
) -> None:
    """dockping_rollup_status gives what the reference model gives for any mix of address statuses."""
    counts = Counter(statuses)
    with psycopg.connect(module_database_url) as conn:
        row = conn.execute(
            "SELECT dockping_rollup_status(%s, %s, %s, %s, %s, %s)",
            [counts[s] for s in ADDRESS_STATUSES],
        ).fetchone()
    assert row is not None
    assert reference_rollup(statuses) == row[0]


@settings(max_examples=100, deadline=None)
@given(statuses=st.lists(st.sampled_from(SEVERITY), max_size=8))
def test_the_worst_status_agrees_with_the_reference_model(
    module_database_url: str, statuses: list[str]
) -> None:
    """dockping_worst_status picks the worst status, gone only when it is all there is."""
    with psycopg.connect(module_database_url) as conn:
        row = conn.execute("SELECT dockping_worst_status(%s::text[])", [statuses]).fetchone()
    assert row is not None
    assert reference_worst(statuses) == row[0]


# A container as Hypothesis draws it: few distinct names, so that the name order ties often.
container_rows = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["a", "B", "b", "web", "db", ""]),
            "agent": st.sampled_from(["host-a", "host-b"]),
            "project": st.sampled_from(["", "shop", "blog"]),
            "addresses": st.lists(st.sampled_from(["up", "down", "never"]), min_size=1, max_size=3),
            "stopped": st.booleans(),
        }
    ),
    max_size=25,
)


def load_containers(conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> None:
    """Replace every container with these, written straight into the tables ingest keeps."""
    conn.execute(
        "TRUNCATE target_state, container_state, targets, containers, agents RESTART IDENTITY CASCADE"
    )
    for index, row in enumerate(rows):
        agent = conn.execute(
            "INSERT INTO agents (name) VALUES (%s) ON CONFLICT (name) DO UPDATE "
            "SET name = EXCLUDED.name RETURNING agent_id",
            (row["agent"],),
        ).fetchone()
        assert agent is not None
        container = conn.execute(
            "INSERT INTO containers (agent_id, container_id, name, compose_project) "
            "VALUES (%s, %s, %s, %s) RETURNING container_key",
            (agent[0], f"c{index}", row["name"], row["project"]),
        ).fetchone()
        assert container is not None
        for port, state in enumerate(row["addresses"], start=1):
            target = conn.execute(
                "INSERT INTO targets (container_key, ip, port, protocol) "
                "VALUES (%s, %s, %s, 'tcp') RETURNING target_id",
                (container[0], f"10.1.{index}.1", port),
            ).fetchone()
            assert target is not None
            if state == "never":
                continue
            conn.execute(
                "INSERT INTO target_state (target_id, last_probe_at, latency_us, last_ok_at, "
                "status_since, consecutive_failures) VALUES (%s, %s, %s, %s, %s, %s)",
                (target[0], BASE, 500 if state == "up" else -1, BASE, BASE, 0),
            )
        if row["stopped"]:
            conn.execute(
                "INSERT INTO container_state (container_key, action, action_at) "
                "VALUES (%s, 'stop', %s)",
                (container[0], BASE + timedelta(seconds=1)),
            )


@pytest.fixture
async def query(settings: Settings, database_url: str) -> AsyncIterator[AsyncTestClient]:
    """A query app on a fresh database."""
    async with AsyncTestClient(app=query_app(settings, database_url)) as client:
        yield client


async def walk(query: AsyncTestClient, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Follow next_cursor from the first page of containers to the last; the pages."""
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        response = await query.get("/api/v1/containers", params={**params, "limit": limit, **extra})
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 1000, "paging does not end"


def ids(page: dict[str, Any]) -> list[str]:
    """The containers of a page, by agent and id."""
    return [f"{i['agent']}/{i['container_id']}" for i in page["items"]]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=container_rows,
    limit=st.integers(min_value=1, max_value=6),
    status=st.sampled_from([None, "up", "degraded", "down,stopped", "unknown"]),
    agent=st.sampled_from([None, "host-b"]),
    project=st.sampled_from([None, "shop", "-"]),
    text=st.sampled_from([None, "b"]),
)
async def test_container_pages_join_up_to_one_full_ordered_read(
    query: AsyncTestClient,
    database_url: str,
    rows: list[dict[str, Any]],
    limit: int,
    status: str | None,
    agent: str | None,
    project: str | None,
    text: str | None,
) -> None:
    """Walking Next over the containers gives the rows of one full read in its order, and Previous walks back the same pages."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_containers(conn, rows)
    chosen = {"status": status, "agent": agent, "project": project, "q": text}
    params = {k: v for k, v in chosen.items() if v}
    full = (await query.get("/api/v1/containers", params={**params, "limit": 500})).json()
    pages = await walk(query, params, limit)
    assert ids(full) == [i for p in pages for i in ids(p)]
    assert all(len(p["items"]) <= limit for p in pages)
    back = pages[-1]
    for page in reversed(pages[:-1]):
        response = await query.get(
            "/api/v1/containers", params={**params, "limit": limit, "cursor": back["prev_cursor"]}
        )
        back = response.json()
        assert ids(page) == ids(back)
    assert back["prev_cursor"] is None
    # The full read is every matching container, once, with its own roll-up.
    expected = []
    for index, row in enumerate(rows):
        addresses = ["stopped" if row["stopped"] else s for s in row["addresses"]]
        rolled = reference_rollup(["unknown" if s == "never" else s for s in addresses])
        wanted = (
            (status is None or rolled in status.split(","))
            and (agent is None or row["agent"] == agent)
            and (project is None or row["project"] == ("" if project == "-" else project))
            and (text is None or text in row["name"].lower())
        )
        if wanted:
            expected.append((f"{row['agent']}/c{index}", rolled))
    got = [(f"{i['agent']}/{i['container_id']}", i["status"]) for i in full["items"]]
    assert sorted(expected) == sorted(got)


async def test_a_container_with_one_of_two_ports_listening_is_degraded_and_its_project_says_so(
    settings: Settings, database_url: str
) -> None:
    """Two ports with one answering make a degraded container (1 of 2); the project is as bad as its worst container, and its badge says so."""
    events = [
        lifecycle(-30, "start", container="c-a", name="shop-web", compose_project="shop"),
        lifecycle(-30, "start", container="c-b", name="shop-db", compose_project="shop"),
        probe(-10, container="c-a", name="shop-web", port=80),
        probe(-10, False, container="c-a", name="shop-web", port=443),
        probe(-10, container="c-b", name="shop-db", ip="10.9.0.3", port=5432),
    ]
    async with (
        AsyncTestClient(app=ingest_app(settings, database_url)) as ingest,
        AsyncTestClient(app=query_app(settings, database_url)) as query,
    ):
        assert (
            await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
        ).status_code == 202
        found = (await query.get("/api/v1/containers")).json()["items"]
        by_name = {c["name"]: c for c in found}
        assert tuple(
            by_name["shop-web"][k] for k in ("status", "addresses_up", "addresses_total")
        ) == ("degraded", 1, 2)
        assert tuple(
            by_name["shop-db"][k] for k in ("status", "addresses_up", "addresses_total")
        ) == ("up", 1, 1)
        assert by_name["shop-web"]["health"] is None
        assert by_name["shop-db"]["uptime_24h"] == 100.0 or by_name["shop-db"]["uptime_24h"] is None
        projects = (await query.get("/api/v1/projects")).json()
        assert [{k: v for k, v in p.items() if k != "uptime_24h"} for p in projects] == [
            {
                "project": "shop",
                "containers_up": 1,
                "containers_total": 2,
                "addresses_up": 2,
                "addresses_total": 3,
                "status": "degraded",
            }
        ]
        badge = await query.get("/badge/project/shop.svg")
        assert badge.status_code == 200
        assert "degraded" in texts(badge.text)
        page = await query.get("/containers")
        assert page.status_code == 200
        assert "<details" in page.text
        assert "10.9.0.2:443" in page.text
        assert "shop" in (await query.get("/")).text


def texts(svg: str) -> list[str]:
    """The texts an SVG draws, parsed as XML (so that markup in a name would show as elements)."""
    root = ET.fromstring(svg)  # noqa: S314 -- our own answer, parsed to prove it is well-formed
    return [t.text or "" for t in root.iter(f"{SVG}text")]


async def test_badges_carry_etag_cache_control_and_read_unknown_for_a_missing_name(
    query: AsyncTestClient,
) -> None:
    """A badge of no such thing is a grey unknown, not a 404; its ETag answers If-None-Match with 304."""
    for path in (
        "/badge/project/nothing.svg",
        "/badge/container/nothing.svg",
        "/badge/target/9.svg",
    ):
        response = await query.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("image/svg+xml")
        assert "max-age=30" in response.headers["cache-control"]
        assert "unknown" in texts(response.text)
        again = await query.get(path, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
    uptime = await query.get("/badge/project/nothing.svg", params={"metric": "uptime"})
    assert "unknown" in texts(uptime.text)
    assert (await query.get("/badge/project/x.svg", params={"metric": "nope"})).status_code == 400
    assert (await query.get("/badge/target/abc.svg")).status_code == 400


async def test_hostile_names_stay_text_in_badges_and_pages(
    settings: Settings, database_url: str
) -> None:
    """A container and project named with markup show as text in the SVG badges, the pages and the status page."""
    events = [
        lifecycle(-30, "start", container="c-h", name=HOSTILE, compose_project=HOSTILE),
        probe(-10, container="c-h", name=HOSTILE),
    ]
    async with (
        AsyncTestClient(app=ingest_app(settings, database_url)) as ingest,
        AsyncTestClient(app=query_app(settings, database_url)) as query,
    ):
        assert (
            await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
        ).status_code == 202
        for kind in ("project", "container"):
            response = await query.get(f"/badge/{kind}/{HOSTILE}.svg")
            assert response.status_code == 200
            drawn = texts(response.text)  # parses: the name made no markup
            assert "up" in drawn
            assert any(t.startswith("<script>") for t in drawn)
        for path in ("/", "/projects", "/containers", f"/status/{HOSTILE}"):
            response = await query.get(path)
            assert response.status_code == 200, path
            assert "<script>alert" not in response.text, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text, path


async def test_the_status_page_hides_addresses_unless_status_detail(
    settings: Settings, database_url: str, tmp_path: Any
) -> None:
    """A status page names services and their uptime but no IP or container id, unless query.status_detail is on."""
    events = [
        lifecycle(
            -30,
            "start",
            container="c-a" * 10,
            name="web",
            compose_project="blog",
            compose_service="frontend",
        ),
        probe(-10, container="c-a" * 10, name="web", ip="10.9.0.77"),
    ]
    detailed = load(
        None,
        {
            "DOCKPING_DATA_DIR": str(tmp_path / "d2"),
            "DOCKPING_INGEST__TOKEN": "test-token",
            "DOCKPING_QUERY__STATUS_DETAIL": "true",
        },
    )
    async with AsyncTestClient(app=ingest_app(settings, database_url)) as ingest:
        assert (
            await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
        ).status_code == 202
    async with AsyncTestClient(app=query_app(settings, database_url)) as query:
        page = await query.get("/status/blog")
        assert page.status_code == 200
        assert "frontend" in page.text
        assert "10.9.0.77" not in page.text
        assert "c-ac-a" not in page.text
        assert (await query.get("/status/no-such-project")).status_code == 404
    async with AsyncTestClient(app=query_app(detailed, database_url)) as query:
        page = await query.get("/status/blog")
        assert "10.9.0.77" in page.text
        assert "c-ac-ac-ac-" in page.text


async def test_public_status_opens_only_the_projects_it_lists(
    database_url: str, tmp_path: Any
) -> None:
    """With a read token, a project in query.public_status has its status page and badges open; others need the token."""
    guarded = load(
        None,
        {
            "DOCKPING_DATA_DIR": str(tmp_path / "d"),
            "DOCKPING_INGEST__TOKEN": "test-token",
            "DOCKPING_QUERY__TOKEN": "read-token",
            "DOCKPING_QUERY__PUBLIC_STATUS": '["open"]',
        },
    )
    events = [
        lifecycle(-30, "start", container="c-o", name="o-web", compose_project="open"),
        lifecycle(-30, "start", container="c-s", name="s-web", compose_project="secret"),
        probe(-10, container="c-o", name="o-web"),
        probe(-10, container="c-s", name="s-web", ip="10.9.0.5"),
    ]
    async with AsyncTestClient(app=ingest_app(guarded, database_url)) as ingest:
        assert (
            await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events))
        ).status_code == 202
    async with AsyncTestClient(app=query_app(guarded, database_url)) as query:
        assert (await query.get("/status/open")).status_code == 200
        assert (await query.get("/badge/project/open.svg")).status_code == 200
        assert (await query.get("/badge/container/o-web.svg")).status_code == 200
        assert (await query.get("/status/secret", follow_redirects=False)).status_code == 303
        assert (await query.get("/badge/project/secret.svg")).status_code == 401
        assert (await query.get("/badge/container/s-web.svg")).status_code == 401
        assert (await query.get("/api/v1/projects")).status_code == 401
        bearer = {"Authorization": "Bearer read-token"}
        assert (await query.get("/badge/project/secret.svg", headers=bearer)).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "sideways"}, "status"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"q": "x" * 201}, "q"),
        ({"limit": "0"}, "limit"),
    ],
)
async def test_bad_container_parameters_are_400s_naming_the_field(
    query: AsyncTestClient, params: dict[str, str], field: str
) -> None:
    """Every bad parameter of /api/v1/containers is a 400 whose body names it."""
    response = await query.get("/api/v1/containers", params=params)
    assert response.status_code == 400
    assert field in response.text
