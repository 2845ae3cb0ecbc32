"""The grouped views' reads, counted in their plans: a container page reads its own
containers' rows, the projects read each address a bounded number of times."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from db.queries import sql

CONTAINERS = 3000
ADDRESSES = 2  # per container
PROJECTS = 30
PAGE = 50
# Rows a page row may read: its container's listing and state rows, and for each of its
# addresses the target, lifecycle, state and agent rows (the agents' few rows per address).
PER_PAGE_ROW = 30
# Rows the projects may read per address: its target, lifecycle and state rows, its container's
# listing row and the agents', once each: no table read again per project or per container.
PER_ADDRESS = 10

# Agents (one silent), containers over projects and services, two addresses each, a recent
# probe for nearly every address (every 7th failed, every 19th never probed), every 11th
# container stopped, every 13th destroyed, every 17th detached from its network: made in SQL,
# as the benchmark's.
DATASET = """
INSERT INTO agents (name) SELECT 'agent-' || a FROM generate_series(0, 2) a;
INSERT INTO agent_state (agent_id, last_heartbeat_at, version, docker_ok, targets, spool_bytes,
                         dropped)
SELECT agent_id, CASE WHEN name = 'agent-2' THEN now() - interval '1 day' ELSE now() END,
       'test', true, 0, 0, 0
FROM agents;
INSERT INTO containers (agent_id, container_id, name, image, compose_project, compose_service)
SELECT (SELECT agent_id FROM agents WHERE name = 'agent-' || (c %% 3)), lpad(to_hex(c), 64, '0'),
       'web-' || lpad(c::text, 5, '0'), 'nginx:1.27', 'stack' || (c %% %(projects)s),
       'svc' || (c %% 4)
FROM generate_series(1, %(containers)s) c;
INSERT INTO targets (container_key, network, ip, port, protocol)
SELECT container_key, 'bridge', ('10.0.' || (container_key / 250) || '.' || (container_key %% 250))::inet,
       8000 + n, 'tcp'
FROM containers, generate_series(1, %(addresses)s) n;
INSERT INTO target_state (target_id, last_probe_at, latency_us, status_since,
                          consecutive_failures)
SELECT target_id, now(), CASE WHEN target_id %% 7 = 0 THEN -2 ELSE 900 END, now(), 0
FROM targets WHERE target_id %% 19 <> 0;
INSERT INTO container_state (container_key, action, action_at)
SELECT container_key,
       CASE WHEN container_key %% 13 = 0 THEN 'destroy'
            WHEN container_key %% 11 = 0 THEN 'stop' ELSE 'start' END,
       now() - interval '1 hour'
FROM containers;
INSERT INTO network_state (container_key, network, detached_at)
SELECT container_key, 'bridge', now()
FROM containers WHERE container_key %% 17 = 0;
ANALYZE;
"""


@pytest.fixture(scope="module")
def dataset_url(module_database_url: str) -> str:
    """The module's database with the generated dataset."""
    params = {"containers": CONTAINERS, "addresses": ADDRESSES, "projects": PROJECTS}
    with psycopg.connect(module_database_url, autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        for statement in DATASET.split(";\n"):
            if statement.strip():
                cur.execute(statement, params)
    return module_database_url


def rows_read(node: dict[str, Any]) -> float:
    """The rows every table scan of a plan read: those it returned and those its filters
    removed, over all its loops."""
    own = 0.0
    if "Relation Name" in node:
        seen = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        own = seen * node["Actual Loops"]
    return own + sum(rows_read(child) for child in node.get("Plans", []))


def explained(url: str, name: str, params: dict[str, Any]) -> tuple[float, int]:
    """The rows a named query read, and the rows it returned, as EXPLAIN ANALYZE counts them."""
    with psycopg.connect(url) as conn:
        cur = psycopg.ClientCursor(conn)
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql(name), params)
        row = cur.fetchone()
    assert row is not None
    plan = row[0][0]["Plan"]
    return rows_read(plan), int(plan["Actual Rows"])


def page_params(**given: Any) -> dict[str, Any]:
    """containers_page_next's parameters: no filter, no cursor, but those given."""
    params: dict[str, Any] = {
        "statuses": [],
        "agent": None,
        "project": None,
        "q": None,
        "after": None,
        "row_id": None,
        "limit": PAGE + 1,
    }
    return {**params, **given}


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"agent": "agent-1"},
        {"project": "stack7"},
        {"after": "web-02000", "row_id": 2000},
        {"agent": "agent-2", "after": "web-01500", "row_id": 1500},
    ],
    ids=["unfiltered", "agent", "project", "deep", "agent-deep"],
)
def test_a_container_page_reads_its_own_rows(dataset_url: str, given: dict[str, Any]) -> None:
    """A page of containers (unfiltered, by agent, by project, deep) reads a bounded number of
    rows per row it returns, however many containers there are."""
    read, returned = explained(dataset_url, "containers_page_next", page_params(**given))
    assert returned == PAGE + 1
    assert read <= PER_PAGE_ROW * returned, f"{read} rows read for {returned}"


def test_a_project_page_of_containers_reads_its_own_rows(dataset_url: str) -> None:
    """One project's containers (its status page) are read through its own rows alone: a
    bounded number per container of the project, gone ones (not shown) included."""
    read, returned = explained(dataset_url, "project_containers", {"project": "stack7"})
    assert 0 < returned < CONTAINERS // PROJECTS
    assert read <= PER_PAGE_ROW * CONTAINERS // PROJECTS, f"{read} rows read for {returned}"


def test_the_projects_read_each_address_a_bounded_number_of_times(dataset_url: str) -> None:
    """Every project's roll-up reads each address's rows once over, not once per project or
    per container."""
    read, returned = explained(dataset_url, "projects_list", {})
    assert returned == PROJECTS
    assert read <= PER_ADDRESS * CONTAINERS * ADDRESSES, f"{read} rows read"


def test_the_rollups_read_the_address_status_latest_state_has(dataset_url: str) -> None:
    """Every address's status and its start, as the roll-ups read them, are latest_state's."""
    with psycopg.connect(dataset_url) as conn:
        rolled = conn.execute(
            "SELECT target_id, status, status_since FROM address_rollup ORDER BY target_id"
        ).fetchall()
        latest = conn.execute(
            "SELECT target_id, status, status_since FROM latest_state ORDER BY target_id"
        ).fetchall()
    assert {"up", "down", "stopped", "stale", "unknown", "gone"} == {r[1] for r in latest}
    assert latest == rolled
