"""Every place a secret is checked shares one limiter that forged headers cannot dodge; the
silences API has a token of its own; a login session expires and logout ends it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from litestar.testing import TestClient

from dockping import tokens
from dockping.settings import Settings, SettingsError, load
from notify.api import create_app as notify_app
from query.app import create_app as query_app
from query.auth import COOKIE
from tests.chaos_support import TOKEN, running
from tests.events import batch, probe
from web import ratelimit

READ_TOKEN = "read-token-5e0c7a"
BAD = {"Authorization": "Bearer guess"}


def client_from(address: str) -> httpx.Client:
    """An HTTP client whose connections come from one loopback address."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def test_a_forged_forwarded_for_does_not_dodge_the_limiter(
    database_url: str, tmp_path: Path
) -> None:
    """With no trusted proxy, a new X-Forwarded-For per guess is ignored, from loopback too
    (which uvicorn would believe by default): the 11th guess gets 429."""
    with (
        running("ingest", database_url, tmp_path / "data", tmp_path / "ingest.log") as ingest,
        client_from("127.0.0.1") as guesser,
    ):
        statuses = [
            guesser.post(
                f"{ingest.url}/api/v1/events",
                json=batch(probe(-1)),
                headers={**BAD, "X-Forwarded-For": f"10.66.0.{n}"},
            ).status_code
            for n in range(ratelimit.BURST + 4)
        ]
    assert statuses == [401] * ratelimit.BURST + [429] * 4


def test_forwarded_for_is_believed_from_a_trusted_proxy(database_url: str, tmp_path: Path) -> None:
    """With 127.0.0.4 as trusted proxy, each forwarded address has a bucket of its own."""
    with (
        running(
            "ingest",
            database_url,
            tmp_path / "data",
            tmp_path / "ingest.log",
            DOCKPING_INGEST__TRUSTED_PROXIES='["127.0.0.4"]',
        ) as ingest,
        client_from("127.0.0.4") as proxy,
    ):

        def guess(forwarded: str) -> int:
            return proxy.post(
                f"{ingest.url}/api/v1/events",
                json=batch(probe(-1)),
                headers={**BAD, "X-Forwarded-For": forwarded},
            ).status_code

        assert [guess("10.67.0.1") for _ in range(ratelimit.BURST + 1)][-1] == 429
        assert guess("10.67.0.2") == 401


def test_query_bearer_and_login_share_the_limiter(database_url: str, tmp_path: Path) -> None:
    """Wrong read tokens, by header or through /login, get 429 past the burst, per address."""
    with running(
        "query",
        database_url,
        tmp_path / "data",
        tmp_path / "query.log",
        DOCKPING_QUERY__TOKEN=READ_TOKEN,
    ) as query:
        with client_from("127.0.0.5") as guesser:
            bearer = [
                guesser.get(f"{query.url}/api/v1/addresses", headers=BAD).status_code
                for _ in range(ratelimit.BURST + 1)
            ]
            right = {"Authorization": f"Bearer {READ_TOKEN}"}
            blocked = guesser.get(f"{query.url}/api/v1/addresses", headers=right).status_code
        with client_from("127.0.0.6") as guesser:
            login = [
                guesser.post(f"{query.url}/login", data={"token": "guess"}).status_code
                for _ in range(ratelimit.BURST + 1)
            ]
        with client_from("127.0.0.7") as other:
            fine = other.get(f"{query.url}/api/v1/addresses", headers=right).status_code
    assert bearer == [401] * ratelimit.BURST + [429]
    assert blocked == 429
    assert login == [401] * ratelimit.BURST + [429]
    assert fine == 200


@pytest.fixture
def notify_settings(tmp_path: Path) -> Settings:
    """Settings with the ingest token set and no notify.token."""
    return load(
        None, {"DOCKPING_DATA_DIR": str(tmp_path / "data"), "DOCKPING_INGEST__TOKEN": TOKEN}
    )


def test_the_silences_api_has_a_token_of_its_own(
    notify_settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """Without notify.token, a token is generated in data_dir/notify-token; the ingest token
    opens nothing there; a guesser gets 429 past the burst."""
    with TestClient(app=notify_app(notify_settings, database_url, follow=False)) as client:
        own = (tmp_path / "data" / tokens.NOTIFY_TOKEN_FILE).read_text().strip()
        assert len(own) >= 43
        assert own != TOKEN
        good = {"Authorization": f"Bearer {own}"}
        assert client.get("/api/v1/silences", headers=good).status_code == 200
        ingest = {"Authorization": f"Bearer {TOKEN}"}
        statuses = [
            client.get("/api/v1/silences", headers=ingest).status_code
            for _ in range(ratelimit.BURST)
        ]
        assert statuses == [401] * ratelimit.BURST
        assert client.get("/api/v1/silences", headers=BAD).status_code == 429


def test_a_silences_token_equal_to_the_ingest_token_is_refused(tmp_path: Path) -> None:
    """notify.token may not be the ingest token, configured or generated in the same data_dir."""
    with pytest.raises(SettingsError, match=r"notify\.token"):
        load(None, {"DOCKPING_INGEST__TOKEN": TOKEN, "DOCKPING_NOTIFY__TOKEN": TOKEN})
    generated = tokens.shared_token("", tmp_path)
    with pytest.raises(tokens.SameToken, match="ingest token"):
        tokens.notify_token(generated, "", tmp_path)


@pytest.fixture
def query_client(tmp_path: Path, database_url: str) -> Iterator[TestClient[Any]]:
    """A query app with a read token and one-second sessions."""
    settings = load(
        None,
        {
            "DOCKPING_DATA_DIR": str(tmp_path / "data"),
            "DOCKPING_QUERY__TOKEN": READ_TOKEN,
            "DOCKPING_QUERY__SESSION_LIFETIME": "1s",
        },
    )
    with TestClient(app=query_app(settings, database_url)) as client:
        yield client


def login(client: TestClient[Any]) -> str:
    """Log in with the read token; return the session cookie."""
    response = client.post("/login", data={"token": READ_TOKEN}, follow_redirects=False)
    assert response.status_code == 303, response.text
    cookie: str = response.cookies[COOKIE]
    client.cookies.clear()
    return cookie


def with_cookie(client: TestClient[Any], cookie: str) -> int:
    """The status of an API call with only this session cookie."""
    client.cookies.clear()
    return client.get("/api/v1/addresses", cookies={COOKIE: cookie}).status_code


def test_a_session_holds_no_token_ends_at_logout_and_expires(
    query_client: TestClient[Any],
) -> None:
    """The cookie is a signed random session: it works, logout ends it for good, another
    session expires after session_lifetime, and one signed with another key is refused."""
    first = login(query_client)
    assert READ_TOKEN not in first
    assert with_cookie(query_client, first) == 200
    out = query_client.post("/logout", cookies={COOKIE: first}, follow_redirects=False)
    assert out.status_code == 303
    assert with_cookie(query_client, first) == 401  # a copy of the cookie is no use either
    second = login(query_client)
    assert second != first
    assert with_cookie(query_client, second) == 200
    time.sleep(2.2)
    assert with_cookie(query_client, second) == 401
    forged = URLSafeTimedSerializer("not-the-token", salt="dockping-query-session").dumps("x")
    assert with_cookie(query_client, forged) == 401
