"""Auth under attack: bad tokens get 401, comparisons are constant-time, guessers get 429, logs keep secrets."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from litestar.testing import TestClient

from dockping import tokens
from dockping.settings import Settings, load
from ingest.app import create_app
from tests.chaos_support import TOKEN, fingerprint, log_lines, running
from tests.events import batch, probe
from tests.services import Process, free_port, service_env, wait_for
from web import ratelimit
from web.ratelimit import FailureLimiter

OTHER_TOKEN = "token-of-agent-b-4c1d8e"


@pytest.fixture
def agent_settings(tmp_path: Path) -> Settings:
    """A shared token, and agent-b with a token of its own."""
    return load(
        None,
        {
            "DOCKPING_DATA_DIR": str(tmp_path / "data"),
            "DOCKPING_INGEST__TOKEN": TOKEN,
            "DOCKPING_INGEST__AGENT_TOKENS": f'{{agent-b = "{OTHER_TOKEN}"}}',
        },
    )


@pytest.fixture
def client(agent_settings: Settings, database_url: str) -> Iterator[TestClient[Any]]:
    """An ingest app on a fresh database."""
    with TestClient(app=create_app(agent_settings, database_url)) as client:
        yield client


@pytest.mark.parametrize(
    ("agent", "authorization"),
    [
        ("agent-a", None),
        ("agent-a", ""),
        ("agent-a", "Bearer"),
        ("agent-a", "Bearer "),
        ("agent-a", "Bearer wrong-token"),
        ("agent-a", f"Bearer {TOKEN[:-1]}"),
        ("agent-a", f"Bearer {TOKEN[:8]}"),
        ("agent-a", f"Bearer {TOKEN}x"),
        ("agent-a", f"Basic {TOKEN}"),
        ("agent-a", f"Bearer {TOKEN.upper()}"),
        ("agent-a", f"Bearer {OTHER_TOKEN}"),  # agent-b's token, for another agent
        ("agent-b", f"Bearer {TOKEN}"),  # the shared token, for an agent with its own
    ],
)
def test_bad_tokens_get_401_and_store_nothing(
    client: TestClient[Any], database_url: str, agent: str, authorization: str | None
) -> None:
    """Missing, wrong, truncated or another agent's tokens get a 401, and nothing is stored."""
    before = fingerprint(database_url)
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.post(
        "/api/v1/events", json={**batch(probe(-1)), "agent": agent}, headers=headers
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert before == fingerprint(database_url)


@pytest.mark.parametrize(("agent", "token"), [("agent-a", TOKEN), ("agent-b", OTHER_TOKEN)])
def test_right_tokens_are_accepted(client: TestClient[Any], agent: str, token: str) -> None:
    """The shared token for an agent without its own, and an agent's own token, are accepted."""
    response = client.post(
        "/api/v1/events",
        json={**batch(probe(-1)), "agent": agent},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202, response.text


def test_token_comparison_uses_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """tokens.same compares with hmac.compare_digest, whose time does not depend on the content."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    assert tokens.same("abc", "abc")
    assert not tokens.same("abd", "abc")
    assert not tokens.same("ab", "abc")
    assert not tokens.same("é", "e")
    assert [(b"abc", b"abc"), (b"abd", b"abc"), (b"ab", b"abc"), ("é".encode(), b"e")] == calls


def test_every_known_token_is_compared_whichever_matches(
    client: TestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest compares a given token with every known token, so its timing does not tell which is near."""
    compared: list[str] = []
    real = tokens.same

    def spy(given: str, expected: str) -> bool:
        compared.append(expected)
        return real(given, expected)

    monkeypatch.setattr(tokens, "same", spy)
    for token in (TOKEN, OTHER_TOKEN, "wrong"):
        compared.clear()
        client.post(
            "/api/v1/events", json=batch(probe(-1)), headers={"Authorization": f"Bearer {token}"}
        )
        # authorize() compares with both known tokens; check_agent() then with the agent's own.
        assert {TOKEN, OTHER_TOKEN} <= set(compared[:2]), token


def test_the_limiter_allows_a_burst_then_refills() -> None:
    """An address gets `burst` failures, then waits; the wait shrinks as the bucket refills."""
    now = [0.0]
    limiter = FailureLimiter(burst=3, per_second=0.5, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 2
    assert limiter.retry_after("10.0.0.2") == 0
    now[0] = 1.0
    assert limiter.retry_after("10.0.0.1") == 1
    now[0] = 2.0
    assert limiter.retry_after("10.0.0.1") == 0


def test_the_limiter_forgets_the_least_recent_address_past_its_bound() -> None:
    """However many addresses fail, the limiter keeps at most max_addresses of them."""
    limiter = FailureLimiter(burst=1, per_second=0.001, max_addresses=100, clock=lambda: 0.0)
    for number in range(1000):
        limiter.failed(f"10.0.{number // 256}.{number % 256}")
    assert len(limiter._buckets) == 100
    assert limiter.retry_after("10.0.3.231") > 0  # the most recent is kept
    assert limiter.retry_after("10.0.0.0") == 0  # the oldest went


def test_failed_attempts_are_rate_limited_per_client_address(
    database_url: str, tmp_path: Path
) -> None:
    """Past the burst of failures an address gets 429 with Retry-After; another address does not."""
    good = {"Authorization": f"Bearer {TOKEN}"}
    bad = {"Authorization": "Bearer guess"}
    body = batch(probe(-1))
    with running("ingest", database_url, tmp_path / "data", tmp_path / "ingest.log") as ingest:
        url = f"{ingest.url}/api/v1/events"
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.1")) as guesser:
            statuses = [
                guesser.post(url, json=body, headers=bad).status_code
                for _ in range(ratelimit.BURST)
            ]
            assert statuses == [401] * ratelimit.BURST
            refused = guesser.post(url, json=body, headers=bad)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"] == "too_many_failures"
            # Blocked means blocked: a right guess from there is not told apart from a wrong one.
            assert guesser.post(url, json=body, headers=good).status_code == 429
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
            assert other.post(url, json=body, headers=bad).status_code == 401
            assert other.post(url, json=body, headers=good).status_code == 202


def test_no_token_or_password_reaches_any_log_line(
    database_url: str, tmp_path: Path, docker_engine: str
) -> None:
    """At debug level, ingest, query and the agent log neither the token nor the database password."""
    password = str(psycopg.conninfo.conninfo_to_dict(database_url).get("password", ""))
    assert password
    overrides = {
        "DOCKPING_LOG__LEVEL": "debug",
        "DOCKPING_AGENT__TOKEN": TOKEN,
        "DOCKPING_AGENT__ID": "secret-test-agent",
    }
    logs = [tmp_path / "ingest.log", tmp_path / "query.log", tmp_path / "agent.log"]
    with (
        running("ingest", database_url, tmp_path / "data", logs[0], **overrides) as ingest,
        running("query", database_url, tmp_path / "data", logs[1], **overrides) as query,
    ):
        env = service_env(
            tmp_path / "data",
            DOCKPING_DATABASE__URL=database_url,
            DOCKPING_INGEST__TOKEN=TOKEN,
            DOCKPING_AGENT__INGEST_URL=ingest.url,
            **overrides,
        )
        agent = Process(["agent"], env, logs[2])
        try:
            wait_for(
                lambda: any(
                    a["agent"] == "secret-test-agent"
                    for a in httpx.get(f"{query.url}/api/v1/agents", timeout=5).json()
                ),
                60,
                "the agent's heartbeat",
            )
            # Failures that services might be tempted to log in full.
            for header in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer wrong"):
                httpx.post(
                    f"{ingest.url}/api/v1/events",
                    json=batch(probe(-1)),
                    headers={"Authorization": header},
                    timeout=5,
                )
            httpx.post(
                f"{ingest.url}/api/v1/events",
                content=b"{not json",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=5,
            )
        finally:
            agent.stop()
    # A database that refuses: the connection errors, with the URL's password, get logged.
    unreachable = f"postgresql://postgres:{password}@127.0.0.1:{free_port()}/dockping"
    logs.append(tmp_path / "query-unreachable.log")
    env = service_env(tmp_path / "data", DOCKPING_DATABASE__URL=unreachable, **overrides)
    lonely = Process(["query"], env, logs[-1])
    try:
        wait_for(
            lambda: (
                httpx.get(
                    f"http://127.0.0.1:{env['DOCKPING_QUERY__PORT']}/healthz", timeout=15
                ).status_code
                == 503
            ),
            60,
            "query to answer 503 without its database",
        )
    finally:
        lonely.stop()
    lines = log_lines(*logs)
    assert any("database.unavailable" in line for line in log_lines(logs[-1]))
    assert len(lines) > 10
    assert any(json.loads(line).get("level") == "debug" for line in lines if line.startswith("{"))
    leaks = [line for line in lines if TOKEN in line or password in line]
    assert leaks == []
