"""Attacker-controlled names render inert; SQL-looking parameters change and leak nothing; CSP is set."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos_support import AUTH, Service, fingerprint, running
from tests.events import batch, lifecycle, probe

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
SQLISH = "x' OR '1'='1"
# (container id, name, image, compose project)
HOSTILE = [
    ("c-script", SCRIPT, IMG, SCRIPT),
    ("c-img", IMG, SCRIPT, IMG),
    ("c-sql", SQLISH, "img'; DROP TABLE targets; --", "p"),
    ("c-plain", "web", "nginx:alpine", "shop"),
]
RAW_MARKUP = ("<script>alert(1)", "<img src=x", "onerror=alert(1)>")
SQL_PAYLOADS = [
    "' OR 1=1 --",
    "'; DROP TABLE targets; --",
    "1; DELETE FROM probe_events",
    "name; DROP TABLE targets",
    "name DESC, (SELECT pg_sleep(0))",
    "' UNION SELECT usename, passwd FROM pg_shadow --",
    "\\'; TRUNCATE target_state; --",
    "$$; DROP TABLE agents; $$",
]


@pytest.fixture(scope="module")
def stack(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, Service, str]]:
    """Ingest and query on one database holding containers with hostile names."""
    url = module_database_url
    where = tmp_path_factory.mktemp("injection")
    with (
        running("ingest", url, where / "data", where / "ingest.log") as ingest,
        running("query", url, where / "data", where / "query.log") as query,
    ):
        events: list[dict[str, Any]] = []
        for number, (cid, cname, image, project) in enumerate(HOSTILE):
            events.append(
                lifecycle(
                    -60 + number,
                    "start",
                    container=cid,
                    name=cname,
                    image=image,
                    compose_project=project,
                    labels={"com.docker.compose.project": project, "x": SCRIPT},
                )
            )
            events.append(probe(-50 + number, container=cid, name=cname, ip=f"10.9.0.{number + 2}"))
            events.append(
                probe(
                    -40 + number,
                    ok=False,
                    container=cid,
                    name=cname,
                    ip=f"10.9.0.{number + 2}",
                    port=81,
                )
            )
        response = httpx.post(
            f"{ingest.url}/api/v1/events", json=batch(*events), headers=AUTH, timeout=10
        )
        assert response.status_code == 202, response.text
        yield ingest, query, url


def items(query: Service, **params: Any) -> list[dict[str, Any]]:
    """The address items of the JSON API."""
    response = httpx.get(
        f"{query.url}/api/v1/addresses", params={"limit": 500, **params}, timeout=10
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


def test_hostile_names_render_inert_on_the_html_pages(stack: tuple[Service, Service, str]) -> None:
    """The status table and every detail page show hostile names escaped, never as markup."""
    _, query, _ = stack
    rows = items(query)
    assert len(HOSTILE) * 2 == len(rows)
    pages = [httpx.get(f"{query.url}/addresses", params={"limit": 500}, timeout=10)]
    pages += [httpx.get(f"{query.url}/targets/{row['target_id']}", timeout=10) for row in rows]
    for page in pages:
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        for markup in RAW_MARKUP:
            assert markup not in page.text, page.url
    table = pages[0].text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert "&lt;img src=x onerror=alert(1)&gt;" in table


def test_the_json_api_keeps_hostile_names_as_plain_data(
    stack: tuple[Service, Service, str],
) -> None:
    """The JSON API returns hostile names exactly as sent, as JSON that browsers will not sniff as HTML."""
    _, query, _ = stack
    response = httpx.get(f"{query.url}/api/v1/addresses", params={"limit": 500}, timeout=10)
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-content-type-options"] == "nosniff"
    names = {row["container_name"] for row in response.json()["items"]}
    assert {name for _, name, _, _ in HOSTILE} == names
    images = {row["image"] for row in response.json()["items"]}
    assert {image for _, _, image, _ in HOSTILE} == images


@pytest.mark.parametrize(
    "path",
    [
        "/addresses",
        "/api/v1/addresses",
        "/targets/999999",
        "/nowhere",
        "/api/v1/addresses?sort=bogus",
    ],
)
def test_every_answer_carries_a_content_security_policy(
    stack: tuple[Service, Service, str], path: str
) -> None:
    """Pages, API answers and errors all carry a CSP that forbids inline scripts."""
    _, query, _ = stack
    response = httpx.get(f"{query.url}{path}", timeout=10)
    policy = response.headers.get("content-security-policy", "")
    directives = dict(
        [*part.strip().split(" ", 1), ""][:2] for part in policy.split(";") if part.strip()
    )
    assert "script-src" in directives or "default-src" in directives, policy
    scripts = directives.get("script-src", directives.get("default-src", ""))
    assert "'unsafe-inline'" not in scripts
    assert "'unsafe-eval'" not in scripts
    assert directives.get("frame-ancestors") == "'none'"


def test_live_scripts_never_write_html() -> None:
    """The page's scripts put names in with textContent: no innerHTML, outerHTML or document.write."""
    static = Path(__file__).parent.parent / "query" / "static"
    scripts = list(static.glob("*.js"))
    for script in scripts:
        text = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{script.name} uses {sink}"


def test_live_updates_carry_hostile_names_as_json_data(stack: tuple[Service, Service, str]) -> None:
    """An SSE update for a hostile container is one JSON data line holding the name as a string."""
    ingest, query, _ = stack
    target = next(row for row in items(query) if row["container_name"] == SCRIPT)
    received: list[str] = []
    done = threading.Event()

    def listen() -> None:
        with httpx.stream(
            "GET",
            f"{query.url}/api/v1/stream",
            params={"ids": str(target["target_id"])},
            timeout=30,
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                received.append(line)
                if line.startswith("data:") and SCRIPT in line:
                    done.set()
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    for attempt in range(20):
        body = batch(
            probe(attempt, ok=attempt % 2 == 0, container="c-script", name=SCRIPT, ip="10.9.0.2")
        )
        httpx.post(f"{ingest.url}/api/v1/events", json=body, headers=AUTH, timeout=10)
        if done.wait(1.0):
            break
    assert done.is_set(), received
    data = next(line for line in received if line.startswith("data:") and SCRIPT in line)
    rows = json.loads(data[len("data:") :])
    assert next(row["name"] for row in rows if row["target_id"] == target["target_id"]) == SCRIPT
    assert all(not line.startswith("event:") or line == "event: rows" for line in received)


@pytest.mark.parametrize("payload", SQL_PAYLOADS)
@pytest.mark.parametrize("parameter", ["q", "sort", "cursor", "agent", "status"])
def test_sql_looking_parameters_change_and_leak_nothing(
    stack: tuple[Service, Service, str], parameter: str, payload: str
) -> None:
    """A SQL-looking value in any listing parameter gets a 200 or a 400 naming it, and the store is unchanged."""
    _, query, database_url = stack
    before = fingerprint(database_url)
    for path in ("/api/v1/addresses", "/addresses"):
        response = httpx.get(f"{query.url}{path}", params={parameter: payload}, timeout=10)
        assert response.status_code in (200, 400), response.text
        if response.status_code == 400 and path.startswith("/api"):
            assert parameter == response.json()["field"]
        if response.status_code == 200 and path.startswith("/api") and parameter == "q":
            # A filter matches text literally: each row found holds the payload as text.
            for row in response.json()["items"]:
                text = f"{row['container_name']} {row['image']} {row['ip']}".lower()
                assert payload.lower() in text, row
        if response.status_code == 200 and path.startswith("/api") and parameter == "agent":
            assert response.json()["items"] == []
        # pg_shadow's password hashes start so; none may come back, whatever was asked.
        assert "SCRAM-SHA-256$" not in response.text
    assert before == fingerprint(database_url)


def test_a_tampered_cursor_with_sql_in_its_key_is_harmless(
    stack: tuple[Service, Service, str],
) -> None:
    """A cursor forged to carry SQL in its key gets a 200 or a 400 naming cursor, and changes nothing."""
    _, query, database_url = stack
    before = fingerprint(database_url)
    first = httpx.get(f"{query.url}/api/v1/addresses", params={"limit": 1}, timeout=10).json()
    cursor = first["next_cursor"]
    assert cursor
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert isinstance(decoded, list)
    statuses = set()
    for payload in SQL_PAYLOADS:
        for index in range(len(decoded)):
            forged = [payload if i == index else part for i, part in enumerate(decoded)]
            text = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
            response = httpx.get(
                f"{query.url}/api/v1/addresses", params={"limit": 1, "cursor": text}, timeout=10
            )
            statuses.add(response.status_code)
            assert response.status_code in (200, 400), response.text
            if response.status_code == 400:
                assert response.json()["field"] == "cursor"
    assert 400 in statuses
    assert before == fingerprint(database_url)


def test_a_literal_quote_matches_only_its_own_container(
    stack: tuple[Service, Service, str],
) -> None:
    """q = "' OR '1'='1" finds the one container with that text in its name, not every row."""
    _, query, _ = stack
    found = items(query, q="' OR '1'='1")
    assert {SQLISH} == {row["container_name"] for row in found}
