"""Schemathesis against the live ingest and query services: every operation, no 5xx, no broken schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.chaos_support import AUTH, Service, running
from tests.events import batch, lifecycle, probe

EXAMPLES = 40
CHECKS = [not_a_server_error, response_schema_conformance]


def success_schema_conformance(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """The response schema check, for 2xx answers only (ingest documents no error bodies)."""
    if 200 <= response.status_code < 300:
        return response_schema_conformance(ctx, response, case)  # type: ignore[no-any-return]
    return None


@pytest.fixture(scope="module")
def ingest(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`dockping ingest` on the module's database."""
    where = tmp_path_factory.mktemp("ingest")
    with running("ingest", module_database_url, where / "data", where / "ingest.log") as service:
        yield service


@pytest.fixture(scope="module")
def query(
    module_database_url: str, ingest: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """`dockping query` on the module's database, after some events went in through ingest."""
    body = batch(probe(-30), probe(-20, ok=False), lifecycle(-25, "start"), probe(-10, port=443))
    response = httpx.post(f"{ingest.url}/api/v1/events", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 202, response.text
    where = tmp_path_factory.mktemp("query")
    with running("query", module_database_url, where / "data", where / "query.log") as service:
        yield service


def fuzz(
    service: Service, checks: list[Any], body: st.SearchStrategy[object] | None = None
) -> list[str]:
    """Run every operation of a service's OpenAPI, positive and negative; return their labels."""
    schema = schemathesis.openapi.from_url(f"{service.url}/schema/openapi.json")
    labels: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        # Negative cases need a parameter to break; those without any get positive ones only.
        modes = [GenerationMode.POSITIVE]
        if list(operation.iter_parameters()):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode)

            @given(case=strategy, extra=body if body is not None else st.none())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case, extra: object) -> None:
                headers = dict(AUTH)
                if extra is not None:
                    # Raw bytes: NaN and huge numbers go out as written, which a JSON encoder refuses.
                    case.body = json.dumps(extra, allow_nan=True).encode()
                    case.media_type = "application/octet-stream"
                    headers["Content-Type"] = "application/json"
                case.call_and_validate(base_url=service.url, headers=headers, checks=checks)

            run()
    return labels


# The ingest OpenAPI does not describe its request body (the handler reads it itself), so
# bodies are drawn here: valid batches, batches with hostile values, and arbitrary JSON.
# No lone surrogates: they only make the JSON malformed, which test_hostile_decoder.py covers.
_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)
_bodies = st.one_of(
    st.just(batch(probe(-1))),
    st.builds(
        lambda port, ip, latency: batch(probe(-1, port=port, ip=ip, latency=latency)),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from(["10.0.0.1", "::1", "999.1.1.1", "", "x" * 300]),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    _json,
    st.fixed_dictionaries({"agent": _text, "events": st.lists(_json, max_size=3)}),
)


def test_every_ingest_operation_survives_fuzzing(ingest: Service) -> None:
    """No generated request to ingest gets a 5xx or a response outside its documented schema."""
    labels = fuzz(ingest, CHECKS, _bodies)
    assert {"POST /api/v1/events", "GET /healthz", "GET /metrics"} <= set(labels)
    # The drawn bodies reached the decoder: ingest counted both refused and stored batches.
    metrics = httpx.get(f"{ingest.url}/metrics", timeout=10).text
    assert 'dockping_ingest_rejected_total{reason="invalid"}' in metrics
    assert "dockping_ingest_batches_total" in metrics
    stored = [
        line for line in metrics.splitlines() if line.startswith("dockping_ingest_batches_total ")
    ]
    assert float(stored[0].split()[1]) >= 1


def test_every_query_operation_survives_fuzzing(query: Service) -> None:
    """No generated request to query gets a 5xx, nor an answer outside its documented schema."""
    labels = fuzz(query, [not_a_server_error, response_schema_conformance])
    assert {
        "GET /api/v1/addresses",
        "GET /api/v1/targets/{target_id}",
        "GET /api/v1/targets/{target_id}/events",
        "GET /api/v1/agents",
    } <= set(labels)


def test_query_error_bodies_match_the_documented_schema(query: Service) -> None:
    """A 400 from query has the body its OpenAPI documents for 400."""
    document = httpx.get(f"{query.url}/schema/openapi.json", timeout=10).json()
    operation = document["paths"]["/api/v1/addresses"]["get"]
    schema = operation["responses"]["400"]["content"]["application/json"]["schema"]
    # The schema may be a $ref into components: validate with the document's components beside it.
    documented = {**schema, "components": document.get("components", {})}
    response = httpx.get(f"{query.url}/api/v1/addresses", params={"sort": "bogus"}, timeout=10)
    assert response.status_code == 400
    assert jsonschema_rs.validator_for(documented).is_valid(response.json()), response.text


@pytest.mark.parametrize("parameter", ["agent", "q"])
def test_a_nul_in_a_text_parameter_is_a_400(query: Service, parameter: str) -> None:
    """A NUL character in a text parameter gets a 400 naming the parameter."""
    response = httpx.get(f"{query.url}/api/v1/addresses", params={parameter: "a\x00b"}, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == parameter
