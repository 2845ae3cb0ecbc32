"""Bad input gets a 4xx naming the field, never a 5xx: zone ids, long texts in any script,
latencies past the store, conflicting duplicates, invisible agent ids, NUL in a path."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockping.contract import LATENCY_MS_MAX, TEXT_MAX_BYTES
from tests.chaos_support import AUTH, Service, log_lines, running
from tests.events import batch, lifecycle, probe

# One character of each: 1, 2 (two that grow to 3 bytes under lower(), which the listing's
# name index holds), 3 and 4 bytes in UTF-8.
SCRIPTS = {
    "latin": "abcxyz",
    "expanding": "\u0130\u023a",
    "greek": "\u03b1\u03b2\u03a9",
    "cjk": "\u65e5\u672c\u8a9e\u4e2d",
    "emoji": "\U0001f600\U0001f680\U0001f9ea",
}


@pytest.fixture(scope="module")
def ingest(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`dockping ingest` on the module's database."""
    where = tmp_path_factory.mktemp("ingest")
    with running("ingest", module_database_url, where / "data", where / "ingest.log") as service:
        yield service


@pytest.fixture(scope="module")
def query(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`dockping query` on the module's database."""
    where = tmp_path_factory.mktemp("query")
    with running("query", module_database_url, where / "data", where / "query.log") as service:
        yield service


def post(ingest: Service, body: dict[str, Any]) -> httpx.Response:
    """POST a batch to ingest."""
    return httpx.post(f"{ingest.url}/api/v1/events", json=body, headers=AUTH, timeout=30)


def refused(response: httpx.Response) -> tuple[int, str | None]:
    """The status and the field named, of a refusal."""
    return response.status_code, response.json().get("field")


def test_an_ip_with_a_zone_id_is_a_400_naming_the_field(ingest: Service) -> None:
    """`"ip": "fe80::1%eth0"` is refused with 400 at $.events[0].ip, not a 500 from inet."""
    response = post(ingest, batch(probe(-5, ip="fe80::1%eth0"), agent="zone-agent"))
    assert refused(response) == (400, "$.events[0].ip")
    assert "zone id" in response.json()["detail"]


def test_a_name_longer_than_the_store_holds_is_a_400_in_bytes(ingest: Service) -> None:
    """1,024 CJK characters (3,072 bytes) are refused naming the field; 341 (1,023 bytes) go in."""
    long = post(ingest, batch(probe(-5, name="\u65e5" * 1024), agent="cjk-agent"))
    assert refused(long) == (400, "$.events[0].container_name")
    assert str(TEXT_MAX_BYTES) in long.json()["detail"]
    fits = post(ingest, batch(probe(-5, name="\u65e5" * 341), agent="cjk-agent"))
    assert fits.status_code == 202, fits.text


def test_a_latency_past_what_the_store_keeps_is_refused(ingest: Service) -> None:
    """latency_ms up to 2,147,483.647 (int4 microseconds) is kept; one more is a 400."""
    too_long = post(ingest, batch(probe(-5, latency=LATENCY_MS_MAX + 0.001), agent="slow"))
    assert refused(too_long) == (400, "$.events[0].latency_ms")
    longest = post(ingest, batch(probe(-5, latency=LATENCY_MS_MAX), agent="slow"))
    assert longest.status_code == 202, longest.text


def test_the_same_event_with_different_contents_is_a_400_naming_both(ingest: Service) -> None:
    """Three copies of one probe identity with different payloads: 400 naming events 0 and 1;
    three identical copies are stored once."""
    copies = [probe(-5, latency=latency) for latency in (1.0, 2.0, 3.0)]
    response = post(ingest, batch(*copies, agent="dup-agent"))
    assert refused(response) == (400, "$.events[1]")
    assert "events 0 and 1" in response.json()["detail"]
    same = post(ingest, batch(*[probe(-5, latency=1.0)] * 3, agent="dup-agent"))
    assert same.json() == {"accepted": 1, "duplicates": 2}


@pytest.mark.parametrize("agent", [" ", "\t", "host\u200ba", "\u2060", "host\x1b[2J"])
def test_a_blank_or_invisible_agent_id_is_refused(ingest: Service, agent: str) -> None:
    """An agent id that is blank or holds zero-width or control characters is a 400 at $.agent."""
    assert refused(post(ingest, batch(probe(-5), agent=agent))) == (400, "$.agent")


def test_a_nul_in_a_static_path_is_a_400_without_a_traceback(query: Service) -> None:
    """GET /static/a%00b is refused with 400 and a JSON body; the log holds no traceback."""
    response = httpx.get(f"{query.url}/static/a%00b", timeout=10)
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]
    assert httpx.get(f"{query.url}/healthz", timeout=10).status_code == 200
    assert [line for line in log_lines(query.process.log) if "Traceback" in line] == []


def _at_limit(script: str, seed: int, max_chars: int, max_bytes: int) -> str:
    """A text of one script, as long as the contract allows in characters and in bytes."""
    alphabet = SCRIPTS[script]
    size = min(max_chars, max_bytes // max(len(c.encode()) for c in alphabet))
    return "".join(random.Random(seed).choices(alphabet, k=size))


def _field(max_chars: int = 1024, max_bytes: int = TEXT_MAX_BYTES) -> st.SearchStrategy[str]:
    # A script and a seed, not 1,024 draws of a character: generation stays quick.
    return st.builds(
        _at_limit,
        st.sampled_from(sorted(SCRIPTS)),
        st.integers(0, 2**32),
        st.just(max_chars),
        st.just(max_bytes),
    )


@settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    agent_tail=_field(224, 4 * 224),
    container=_field(256, 4 * 256),
    texts=st.fixed_dictionaries({k: _field() for k in ("name", "image", "project", "network")}),
    label=_field(),
    health=_field(),
)
def test_every_text_field_at_its_limit_in_any_script_is_stored_and_listed(
    ingest: Service,
    query: Service,
    agent_tail: str,
    container: str,
    texts: dict[str, str],
    label: str,
    health: str,
) -> None:
    """Each text field at its longest, in any script, goes through ingest (202) to the listing
    unchanged: no index row overflows, whatever the characters."""
    agent = uuid.uuid4().hex + agent_tail  # 256 characters, new each example
    who = {"container": container, "name": texts["name"], "image": texts["image"]}
    compose = {"compose_project": texts["project"], "compose_service": texts["project"]}
    events = [
        lifecycle(-20, "start", **who, **compose, labels={label: label}, note=label),
        lifecycle(-15, "health_status", **who, **compose, health=health),
        lifecycle(-12, "network_connect", **who, **compose, network=texts["network"]),
        {**probe(-10, container=container, name=texts["name"]), "network": texts["network"]},
    ]
    response = post(ingest, batch(*events, agent=agent))
    assert response.status_code == 202, response.text
    listed = httpx.get(f"{query.url}/api/v1/addresses", params={"agent": agent}, timeout=30)
    assert listed.status_code == 200, listed.text
    [row] = listed.json()["items"]
    shown = {key: row[key] for key in ("container_id", "container_name", "image", "network")}
    expected = {
        "container_id": container,
        "container_name": texts["name"],
        "image": texts["image"],
        "network": texts["network"],
    }
    assert expected == shown
    assert texts["project"] == row["compose_project"]
