"""The optional read token: a Bearer header for programs, a login form and cookie for people."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from dockping.settings import Settings, load
from query.app import create_app as query_app
from query.auth import COOKIE
from tests.services import Process, service_env, wait_for

pytestmark = pytest.mark.anyio
READ = "read-secret-4f1c"


@pytest.fixture
def guarded(tmp_path: Path) -> Settings:
    """Settings with a read token."""
    return load(None, {"DOCKPING_DATA_DIR": str(tmp_path), "DOCKPING_QUERY__TOKEN": READ})


@pytest.fixture
async def query(guarded: Settings, database_url: str) -> AsyncIterator[AsyncTestClient]:
    """A query app that needs the read token."""
    async with AsyncTestClient(app=query_app(guarded, database_url)) as client:
        yield client


async def test_the_api_needs_the_bearer_token(query: AsyncTestClient) -> None:
    """Without the token, or with a wrong one, the API is a 401; with it, a 200."""
    for path in ("/api/v1/addresses", "/api/v1/agents", "/metrics", "/schema/openapi.json"):
        missing = await query.get(path)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await query.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await query.get(path, headers={"Authorization": f"Bearer {READ}"})
        assert right.status_code == 200, path


async def test_a_token_in_the_url_is_not_accepted(query: AsyncTestClient) -> None:
    """The token is never taken from a query string, where logs and history would keep it."""
    response = await query.get("/api/v1/addresses", params={"token": READ})
    assert response.status_code == 401


async def test_health_static_and_login_stay_open(query: AsyncTestClient) -> None:
    """/healthz, /static and the login form answer without a token."""
    assert (await query.get("/healthz")).status_code == 200
    assert (await query.get("/static/app.css")).status_code == 200
    assert (await query.get("/static/live.js")).status_code == 200
    assert (await query.get("/login")).status_code == 200


async def test_people_log_in_with_a_form_and_get_an_httponly_cookie(
    query: AsyncTestClient,
) -> None:
    """A page sends people to the login form; the right token sets an HttpOnly cookie that opens pages and API."""
    first = await query.get("/addresses?status=up", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/login?next=%2Faddresses%3Fstatus%3Dup"
    bad = await query.post(
        "/login", data={"token": "wrong", "next": "/addresses"}, follow_redirects=False
    )
    assert bad.status_code == 401
    assert COOKIE not in bad.cookies
    good = await query.post(
        "/login", data={"token": READ, "next": "/addresses?status=up"}, follow_redirects=False
    )
    assert good.status_code == 303
    assert good.headers["location"] == "/addresses?status=up"
    header = good.headers["set-cookie"]
    assert "HttpOnly" in header
    assert "samesite=strict" in header.lower()
    assert READ not in header
    query.cookies.set(COOKIE, good.cookies[COOKIE])
    assert (await query.get("/addresses")).status_code == 200
    assert (await query.get("/api/v1/addresses")).status_code == 200
    out = await query.post("/logout", follow_redirects=False)
    assert out.status_code == 303
    query.cookies.clear()
    assert (await query.get("/api/v1/addresses")).status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
async def test_login_never_redirects_off_site(query: AsyncTestClient, target: str) -> None:
    """After login, a `next` that leaves the site becomes /addresses."""
    response = await query.post(
        "/login", data={"token": READ, "next": target}, follow_redirects=False
    )
    assert response.headers["location"] == "/addresses"


def test_no_token_reaches_the_log(database_url: str, tmp_path: Path) -> None:
    """The read token appears in no log line, whatever requests carry it, at debug level."""
    env = service_env(
        tmp_path / "data",
        DOCKPING_DATABASE__URL=database_url,
        DOCKPING_QUERY__TOKEN=READ,
        DOCKPING_LOG__LEVEL="debug",
    )
    url = f"http://127.0.0.1:{env['DOCKPING_QUERY__PORT']}"
    process = Process(["query"], env, tmp_path / "query.log")
    try:
        wait_for(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, 60, "healthz")
        with httpx.Client(base_url=url, timeout=5) as client:
            assert (
                client.get(
                    "/api/v1/addresses", headers={"Authorization": f"Bearer {READ}"}
                ).status_code
                == 200
            )
            assert client.get("/api/v1/addresses", params={"token": READ}).status_code == 401
            assert client.post("/login", data={"token": READ}).status_code in (200, 303)
            assert client.post("/login", data={"token": READ + "x"}).status_code == 401
    finally:
        process.stop(15)
    output = process.output()
    assert "live.listening" in output  # the log was captured at all
    assert READ not in output
