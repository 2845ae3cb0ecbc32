"""The grouped views in a real browser: overview, a project, an expanded container, a status page, dark mode.

It uses the services and the Chromium of tests/test_browser.py. Screenshots land in
test-artifacts/; with DOCKPING_SCREENSHOTS=1 those the README shows go to docs/screenshots/.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests import test_browser
from tests.services import wait_for
from tests.test_browser import NOW, System, at, shoot

pytestmark = pytest.mark.browser
# The Chromium and the services of the address table's browser tests.
browser = test_browser.browser
system = test_browser.system
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
# (project, service, container, ports that answer of 80 and 443); one container answers on
# one of its two ports, so it is degraded and its project with it.
FLEET = [
    ("shop", "web", "shop-web-1", (80, 443)),
    ("shop", "web", "shop-web-2", (80,)),
    ("shop", "db", "shop-db-1", (80, 443)),
    ("blog", "app", "blog-app-1", (80, 443)),
    ("blog", "cache", "blog-cache-1", (80, 443)),
    ("", "", "standalone", (80, 443)),
]
DAYS = 20


def container_event(index: int, project: str, service: str, name: str) -> dict[str, Any]:
    """A start event for container number `index`."""
    return {
        "type": "container",
        "time": at(NOW - timedelta(days=DAYS, minutes=1)),
        "container_id": f"{index + 1:064x}",
        "action": "start",
        "name": name,
        "image": f"registry.example/{service or name}:1.{index}",
        "compose_project": project,
        "compose_service": service,
    }


def probe(index: int, hours_ago: float, port: int, ok: bool) -> dict[str, Any]:
    """A probe of one port of container number `index`."""
    return {
        "type": "probe",
        "time": at(NOW - timedelta(hours=hours_ago)),
        "container_id": f"{index + 1:064x}",
        "container_name": FLEET[index][2] if index < len(FLEET) else "",
        "network": "bridge",
        "ip": f"10.30.0.{index + 2}",
        "port": port,
        "protocol": "tcp",
        "ok": ok,
        "latency_ms": 1.0 + index / 10 if ok else None,
        "error": None if ok else "refused",
    }


def seed(system: System) -> None:
    """The fleet above, probed hourly for DAYS days, with an outage of blog's cache 3 days ago."""
    events: list[dict[str, Any]] = []
    for index, (project, service, name, _) in enumerate(FLEET):
        events.append(container_event(index, project, service, name))
    for hours_ago in range(DAYS * 24, 0, -1):
        for index, (_, _, name, answering) in enumerate(FLEET):
            for port in (80, 443):
                ok = port in answering or hours_ago > 2
                if name == "blog-cache-1" and 70 <= hours_ago <= 73:
                    ok = False
                events.append(probe(index, hours_ago - 0.5, port, ok))
    for index, (_, _, _, answering) in enumerate(FLEET):
        for port in (80, 443):
            events.append(probe(index, 0.02, port, port in answering))
    system.send(events)
    # The status page's bars read the hourly rollup, which ingest refreshes on its own.
    wait_for(
        lambda: "day-major" in httpx.get(f"{system.query_url}/status/blog", timeout=5).text,
        60,
        "the hourly rollup of the seeded history",
    )


def test_the_overview_leads_to_a_project_and_an_expanded_container(
    browser: Any, system: System
) -> None:
    """The front page lists every project with its roll-up; a project's containers show, and one opens to its addresses."""
    seed(system)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{system.query_url}/")
    rows = page.locator("#projects tbody tr")
    assert rows.count() == 3
    shop = page.locator('#projects tbody tr[data-key="shop"]')
    assert shop.locator("[data-field=status]").inner_text() == "degraded"
    assert shop.locator("[data-field=containers]").inner_text() == "2 of 3"
    for view in ("/projects", "/containers", "/addresses"):
        assert page.locator(f'nav.views a[href="{view}"]').count() == 1
    shoot(page, "overview", keep=True)

    shop.locator("a.name").click()
    page.wait_for_url("**/containers?project=shop")
    assert page.locator("#containers > tbody > tr").count() == 3
    degraded = page.locator("#containers > tbody > tr", has_text="shop-web-2")
    assert degraded.locator("[data-field=status]").inner_text() == "degraded"
    assert degraded.locator("[data-field=addresses]").inner_text() == "1 of 2"
    assert not degraded.locator(".addresses-of").is_visible()
    degraded.locator("summary").click()
    addresses = degraded.locator(".addresses-of tbody tr")
    assert addresses.count() == 2
    assert sorted(addresses.locator(".status").all_inner_texts()) == ["down", "up"]
    shoot(page, "containers", keep=True)


def test_a_status_page_shows_services_bars_and_incidents_without_addresses(
    browser: Any, system: System
) -> None:
    """A project's status page has a 90-day bar per service, the outage as an incident, and no IP address."""
    seed(system)
    page = browser.new_page(viewport={"width": 900, "height": 800})
    page.goto(f"{system.query_url}/status/blog")
    services = page.locator("li.service")
    assert services.count() == 2
    assert page.locator("svg.bar").first.locator("rect").count() == 90
    assert page.locator("svg.bar rect.day-major").count() >= 1
    assert "cache" in page.locator("ul.incidents").inner_text()
    assert "10.30.0." not in page.content()
    shoot(page, "status", keep=True)


def test_dark_mode_follows_the_system_and_focus_stays_visible(browser: Any, system: System) -> None:
    """With a dark colour scheme the pages turn dark; a focused link shows an outline."""
    seed(system)
    page = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme="dark")
    page.goto(f"{system.query_url}/containers")
    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    shoot(page, "containers-dark", keep=True)
    page.goto(f"{system.query_url}/status/shop")
    assert page.evaluate("getComputedStyle(document.body).color") == "rgb(230, 237, 243)"


def test_the_container_table_reads_on_a_phone_and_changes_live(
    browser: Any, system: System
) -> None:
    """On a phone each container is a card; a status change arrives without a reload."""
    seed(system)
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.goto(f"{system.query_url}/containers?project=blog")
    row = page.locator("#containers > tbody > tr", has_text="blog-app-1")
    assert row.evaluate("r => getComputedStyle(r).display") == "block"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert row.locator("[data-field=status]").inner_text() == "up"
    page.wait_for_selector(".live-state:text('live')")
    system.send([probe(3, 0.01, 443, ok=False)])
    # A predicate as a function, not a string: the page's CSP forbids eval of a string.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#containers > tbody > tr')].some("
        "r => r.textContent.includes('blog-app-1') && r.querySelector('[data-field=status]')"
        ".textContent === 'degraded')",
        timeout=30000,
    )


def test_hostile_names_stay_inert_in_every_grouped_view_and_badge(
    browser: Any, system: System
) -> None:
    """A container and project named with markup run no script in the overview, the container table, the status page or a badge."""
    system.send(
        [
            {
                **container_event(0, HOSTILE, HOSTILE, HOSTILE),
                "time": at(NOW - timedelta(minutes=5)),
            },
            {**probe(0, 0.05, 80, ok=True), "container_name": HOSTILE},
        ]
    )
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    name = quote(HOSTILE, safe="")
    for path in (
        "/",
        "/projects",
        "/containers",
        f"/containers?project={name}",
        f"/status/{name}",
        f"/badge/project/{name}.svg",
        f"/badge/container/{name}.svg",
    ):
        response = page.goto(f"{system.query_url}{path}")
        assert response is not None
        assert response.status == 200, path
        page.wait_for_timeout(100)
        assert page.locator("img[src=x]").count() == 0, path
    page.goto(f"{system.query_url}/containers")
    assert HOSTILE in page.locator("#containers").inner_text()
    assert dialogs == []
