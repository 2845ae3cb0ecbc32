"""Grouped views at scale (issue 23): containers, projects, a status page and badges on the 10,000-target dataset of bench/query_read.py.

The dataset, the `dockping query` process and the client are query_read's; each figure is a
p99 against /healthz measured in the same run:

- GET /api/v1/containers (50 rows) unfiltered, with each filter (status, text, agent,
  project) and 40 pages deep; the /containers page for the same cases;
- GET /api/v1/projects (40 projects over 10,000 containers);
- GET /status/stack7 (250 containers);
- the badges of a project, a container and a target, each with and without ?metric=uptime.
"""

from __future__ import annotations

import os

import httpx

from bench import Figure
from bench.query_read import ROUNDS, _get, _ms, _scale, _timed, dataset, query_service
from bench.storage_support import server

# The badges the figures pool: one of each kind, as status and as uptime.
BADGES = ("/badge/project/stack7.svg", "/badge/container/web-00008.svg", "/badge/target/8.svg")


def _container_cases(client: httpx.Client) -> list[dict[str, str]]:
    """The container listing unfiltered and with each filter, and a page 40 deep."""
    cases: list[dict[str, str]] = [
        {"limit": "50", **extra}
        for extra in (
            {},
            {"status": "down"},
            {"q": "web-0"},
            {"agent": "agent-3"},
            {"project": "stack7"},
        )
    ]
    params = {"limit": "50"}
    for _ in range(40):
        page = client.get("/api/v1/containers", params=params).json()
        if not page["next_cursor"]:
            break
        params = {"limit": "50", "cursor": page["next_cursor"]}
    return [*cases, params]


def _samples(
    client: httpx.Client, paths: list[tuple[str, dict[str, str]]], rounds: int
) -> list[float]:
    samples: list[float] = []
    for path, params in paths:
        samples += _timed(_get(client, path, params), rounds)
    return samples


def _figures(base: str) -> list[Figure]:
    with httpx.Client(base_url=base, timeout=30) as client:
        health = _timed(_get(client, "/healthz"), ROUNDS * 4)
        h99, h50 = _ms(health, 0.99), _ms(health, 0.5)
        cases = _container_cases(client)
        badges = [(path, params) for path in BADGES for params in ({}, {"metric": "uptime"})]
        html_rounds = max(10, ROUNDS // 2)
        measured = [
            (
                f"GET /api/v1/containers ({len(cases)} cases)",
                _samples(client, [("/api/v1/containers", c) for c in cases], ROUNDS),
                15.0,
            ),
            ("GET /api/v1/projects", _samples(client, [("/api/v1/projects", {})], ROUNDS), 20.0),
            (
                f"GET /containers HTML ({len(cases)} cases)",
                _samples(client, [("/containers", c) for c in cases], html_rounds),
                30.0,
            ),
            (
                "GET /status/stack7 HTML",
                _samples(client, [("/status/stack7", {})], ROUNDS),
                30.0,
            ),
            (
                f"GET /badge/... ({len(badges)} cases: project, container, target)",
                _samples(client, badges, ROUNDS),
                5.0,
            ),
        ]
    figures = [
        Figure("GET /healthz p99 (baseline)", h99, "ms"),
        Figure("GET /healthz p50 (baseline)", h50, "ms"),
    ]
    for label, samples, bound in measured:
        p99, p50 = _ms(samples, 0.99), _ms(samples, 0.5)
        target = f"p99 <= {bound:g} ms"
        figures.append(Figure(f"{label} p99", p99, "ms", h99, "healthz p99", target, p99 <= bound))
        figures.append(Figure(f"{label} p50", p50, "ms", h50, "healthz p50"))
    return figures


def run() -> list[Figure]:
    """Make (or reuse) query_read's dataset, serve it, measure the grouped views."""
    targets, events = _scale()
    with server() as admin, dataset(admin, targets, events) as url, query_service(url) as base:
        figures = _figures(base)
    figures.insert(0, Figure("dataset: targets", float(targets), "targets"))
    # Timings on a shared machine mean little without the load they were taken under.
    figures.append(Figure("load average (1 min) at the end, 2 cores", os.getloadavg()[0], "procs"))
    return figures
