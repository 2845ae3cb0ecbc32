"""The pages in a real browser (Playwright driving Debian's Chromium) against real services.

Ingest and query run as processes of their own on a fresh database; events go in through
ingest's HTTP API. Screenshots land in test-artifacts/ (git-ignored); with
DOCKPING_SCREENSHOTS=1 they are also written to docs/screenshots/ for the README.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from tests import required
from tests.services import Process, service_env, wait_for

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
TOKEN = "test-token"
HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail where DOCKPING_REQUIRE_BROWSER=1 says the browser must be there."""
    required.unavailable("browser", reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium; skips (or fails) where Chromium or playwright is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()


class System:
    """Ingest and query processes on one database, and a way to send them events."""

    def __init__(self, ingest_url: str, query_url: str) -> None:
        self.ingest_url = ingest_url
        self.query_url = query_url

    def send(self, events: list[dict[str, Any]], agent: str = "host-a") -> None:
        """Post a batch to ingest and insist it is accepted."""
        response = httpx.post(
            f"{self.ingest_url}/api/v1/events",
            json={"agent": agent, "events": events},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert response.status_code == 202, response.text

    def api(self, path: str, **params: Any) -> Any:
        """GET a JSON API path of the query service."""
        return httpx.get(f"{self.query_url}{path}", params=params, timeout=10).json()


@pytest.fixture
def system(database_url: str, tmp_path: Path) -> Iterator[System]:
    """Real ingest and query services on a fresh database."""
    env = service_env(
        tmp_path / "data",
        DOCKPING_DATABASE__URL=database_url,
        DOCKPING_INGEST__TOKEN=TOKEN,
        DOCKPING_LOG__LEVEL="warning",
    )
    ingest_url = f"http://127.0.0.1:{env['DOCKPING_INGEST__PORT']}"
    query_url = f"http://127.0.0.1:{env['DOCKPING_QUERY__PORT']}"
    ingest = Process(["ingest"], env, tmp_path / "ingest.log")
    query = Process(["query"], env, tmp_path / "query.log")
    try:
        for url in (ingest_url, query_url):
            wait_for(
                lambda url=url: httpx.get(f"{url}/healthz", timeout=2).status_code == 200,
                60,
                f"{url}/healthz",
            )
        yield System(ingest_url, query_url)
    finally:
        query.stop(15)
        ingest.stop(15)


def at(moment: datetime) -> str:
    """RFC 3339 text of a time."""
    return moment.isoformat().replace("+00:00", "Z")


def probe(
    moment: datetime, index: int, ok: bool, latency: float, name: str | None = None
) -> dict[str, Any]:
    """A probe event of container number `index`."""
    return {
        "type": "probe",
        "time": at(moment),
        "container_id": f"{index:064x}",
        "container_name": name or f"svc-{index:03d}",
        "network": "bridge",
        "ip": f"10.20.{index // 200}.{index % 200 + 2}",
        "port": 8080,
        "protocol": "tcp",
        "ok": ok,
        "latency_ms": latency if ok else None,
        "error": None if ok else "refused",
    }


def seed(system: System, targets: int = 60, minutes: int = 90) -> None:
    """Some targets with a history of one probe a minute; every seventh one down at the end."""
    events: list[dict[str, Any]] = []
    for index in range(targets):
        events.append(
            {
                "type": "container",
                "time": at(NOW - timedelta(minutes=minutes + 1)),
                "container_id": f"{index:064x}",
                "action": "start",
                "name": f"svc-{index:03d}",
                "image": f"registry.example/app-{index % 4}:1.{index % 3}",
                "compose_project": f"stack{index % 3}",
            }
        )
        down_from = minutes - 5 if index % 7 == 3 else minutes + 1
        for minute in range(minutes):
            wave = 1.0 + (index % 5) * 0.4 + ((minute * 7 + index) % 11) / 10
            events.append(
                probe(
                    NOW - timedelta(minutes=minutes - minute),
                    index,
                    ok=minute < down_from and (minute + index) % 29 != 0,
                    latency=wave,
                )
            )
    system.send(events)


def row_ids(page: Any) -> list[str]:
    """The target ids of the table's rows, in order."""
    ids: list[str] = page.eval_on_selector_all(
        "#addresses tbody tr[data-target-id]", "rows => rows.map(r => r.dataset.targetId)"
    )
    return ids


def shoot(page: Any, name: str, keep: bool = False) -> None:
    """A full-page screenshot as a test artifact; with DOCKPING_SCREENSHOTS=1 a view-sized one for the README."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if keep and os.environ.get("DOCKPING_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


def test_the_table_filters_pages_and_opens_a_detail_page(browser: Any, system: System) -> None:
    """Rows show; a status filter narrows them and stays in the URL; Next and Previous page; a detail page draws its chart."""
    seed(system)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{system.query_url}/addresses")
    first = row_ids(page)
    assert len(first) == 50
    assert page.locator("#addresses tbody tr").first.locator(".status").inner_text() in (
        "up",
        "down",
    )
    assert page.locator("svg.spark").count() == 50
    shoot(page, "addresses", keep=True)

    page.select_option("select[name=status]", "down")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**status=down**")
    statuses = page.locator("#addresses tbody [data-field=status]").all_inner_texts()
    assert statuses
    assert set(statuses) == {"down"}

    page.goto(f"{system.query_url}/addresses")
    page.click("a[rel=next]")
    page.wait_for_url("**cursor=**")
    second = row_ids(page)
    assert len(second) == 10
    assert not set(first) & set(second)
    page.click("a[rel=prev]")
    page.wait_for_load_state()
    assert row_ids(page) == first

    page.click("#addresses tbody tr:nth-child(4) a.name")
    page.wait_for_url("**/targets/**")
    chart = page.locator("svg.chart")
    assert chart.count() == 1
    assert chart.locator("polyline.chart-avg").count() >= 1
    assert chart.locator("rect.chart-down, rect.chart-fail").count() >= 1
    assert page.locator("#probes tbody tr").count() == 50
    page.click("nav.ranges a:text('1h')")
    page.wait_for_url("**range=1h**")
    shoot(page, "target", keep=True)
    page.click("a[rel=next]")
    page.wait_for_url("**cursor=**")
    assert page.locator("#probes tbody tr").count() == 40


def test_rows_change_live_without_a_reload(browser: Any, system: System) -> None:
    """An event ingested while the page is open changes its row in place, through the SSE stream."""
    seed(system, targets=5, minutes=5)
    page = browser.new_page(viewport={"width": 1280, "height": 700})
    page.goto(f"{system.query_url}/addresses")
    page.wait_for_selector("#live-state:text('live')")
    page.evaluate("window.__sameDocument = true")
    row = page.locator("#addresses tbody tr").first
    assert row.locator("[data-field=status]").inner_text() == "up"
    target = system.api("/api/v1/addresses")["items"][0]
    system.send([probe(datetime.now(UTC), 0, ok=False, latency=0, name=target["container_name"])])
    # Predicates as functions, not strings: the page's CSP forbids eval of a string.
    page.wait_for_function(
        "() => document.querySelector('#addresses tbody tr [data-field=status]')"
        ".textContent === 'down'",
        timeout=30000,
    )
    assert row.locator("[data-field=error]").inner_text() == "(refused)"
    assert page.evaluate("window.__sameDocument") is True
    shoot(page, "live-update")


def test_hostile_names_stay_inert_in_page_detail_and_live_updates(
    browser: Any, system: System
) -> None:
    """Container names that look like markup show as text everywhere and never run."""
    dialogs: list[str] = []
    moment = datetime.now(UTC) - timedelta(seconds=30)
    system.send([probe(moment, i, ok=True, latency=1.0, name=n) for i, n in enumerate(HOSTILE)])
    page = browser.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{system.query_url}/addresses")
    names = page.locator("#addresses [data-field=name]").all_inner_texts()
    assert sorted(HOSTILE) == sorted(names)
    assert page.locator("#addresses img").count() == 0
    page.wait_for_selector("#live-state:text('live')")
    # A rename arrives over SSE: the new hostile name is written as text, in place.
    system.send(
        [
            {
                "type": "container",
                "time": at(datetime.now(UTC)),
                "container_id": f"{0:064x}",
                "action": "rename",
                "name": HOSTILE[1] + "2",
                "image": "img",
            },
            probe(datetime.now(UTC), 0, ok=False, latency=0, name=HOSTILE[1] + "2"),
        ]
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('#addresses [data-field=name]')]"
        ".some(e => e.textContent.endsWith('>2'))",
        timeout=30000,
    )
    assert page.locator("#addresses img").count() == 0
    exact = re.compile("^" + re.escape(HOSTILE[1]) + "$")
    page.locator("#addresses a.name").filter(has_text=exact).click()
    page.wait_for_url("**/targets/**")
    assert page.locator("main img").count() == 0
    assert page.locator("h1").inner_text().startswith(HOSTILE[1])
    assert dialogs == []


def test_the_table_reads_on_a_phone(browser: Any, system: System) -> None:
    """On a narrow screen each row is a card whose cells carry their column's name."""
    seed(system, targets=6, minutes=60)
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.goto(f"{system.query_url}/addresses")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    label = page.evaluate(
        "getComputedStyle(document.querySelector('#addresses tbody td'), '::before').content"
    )
    assert label == '"Container"'
    shoot(page, "addresses-phone", keep=True)
