"""Discovery on the real engine under bursts and hostile labels, results read from the store.

The resync interval is long here, so that what is found is found by the event stream.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.docker_support import LABEL, Containers, docker
from tests.engine_proxy import EngineProxy
from tests.services import wait_for
from tests.test_agent_docker import history, rows
from tests.test_agent_shipping import Stack, container_id, running

pytestmark = pytest.mark.docker

BURST = 50
PARALLEL = 16


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """Ingest and an agent whose resync comes too late to help."""
    with running(
        tmp_path, database_url, connected=True, DOCKPING_AGENT__RESYNC_INTERVAL="10m"
    ) as made:
        yield made


def _run(containers: Containers, name: str, *extra: str) -> str:
    """Start a labelled httpd container named `name`; return its id."""
    return docker(
        "run",
        "-d",
        "--name",
        name,
        "--label",
        f"{LABEL}={containers.session}",
        "--expose",
        "8000",
        *extra,
        containers.image,
        "httpd",
        "-f",
        "-p",
        "8000",
    )


def _statuses(stack: Stack, ids: list[str]) -> dict[str, str]:
    return {cid: r[0]["status"] if (r := rows(stack, cid)) else "" for cid in ids}


def test_a_burst_of_50_starts_and_50_stops_is_all_seen_once_and_in_order(
    stack: Stack, containers: Containers
) -> None:
    """50 containers started at once are each `up` with one start after its create; stopped at once, all `stopped`."""
    names = [f"dpt-burst-{containers.session}-{i}" for i in range(BURST)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        ids = list(pool.map(lambda name: _run(containers, name), names))
    wait_for(
        lambda: set(_statuses(stack, ids).values()) == {"up"},
        120,
        "every container of the burst up",
    )
    for cid in ids:
        actions = [e["action"] for e in history(stack, cid)]
        assert [a for a in actions if a in ("create", "start")] == ["create", "start"]
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda name: docker("stop", "-t", "1", name), names))
    wait_for(
        lambda: set(_statuses(stack, ids).values()) == {"stopped"},
        120,
        "every container of the burst stopped",
    )
    for cid in ids:
        actions = [e["action"] for e in history(stack, cid)]
        assert actions.count("start") == 1
        assert actions.count("die") == 1


def test_a_container_with_megabytes_of_labels_does_not_wedge_discovery(
    stack: Stack, containers: Containers, tmp_path: Path
) -> None:
    """Ten labels of 60 kB (events of 600 kB): that container and one started after it are both found."""
    label_file = tmp_path / "labels"
    label_file.write_text(
        "".join(f"dockping.test.big{i}={chr(ord('a') + i) * 60_000}\n" for i in range(10))
    )
    huge = container_id(
        _run(containers, f"dpt-huge-{containers.session}", "--label-file", str(label_file))
    )
    after = container_id(_run(containers, f"dpt-after-{containers.session}"))
    wait_for(lambda: (r := rows(stack, after)) and r[0]["status"] == "up", 60, "the next one up")
    wait_for(lambda: (r := rows(stack, huge)) and r[0]["status"] == "up", 60, "the huge one up")
    assert stack.agent is not None
    log = stack.agent.output()
    assert "docker.unreachable" not in log
    assert "Traceback" not in log


def test_a_resync_heals_a_missed_destroy_and_a_missed_disconnect(
    tmp_path: Path, database_url: str, containers: Containers
) -> None:
    """With the stream cut while a container is removed and another leaves a network, no stale row stays."""
    proxy = EngineProxy(Path(tempfile.mkdtemp(prefix="dpx-", dir="/tmp")) / "engine.sock")
    network = f"dpt-heal-{containers.session}"
    docker("network", "create", network)
    made = Stack(
        tmp_path,
        database_url,
        DOCKPING_AGENT__DOCKER_URL=proxy.url,
        DOCKPING_AGENT__RESYNC_INTERVAL="2s",
    )
    try:
        made.start_ingest()
        made.start_agent()
        kept = container_id(_run(containers, f"dpt-kept-{containers.session}"))
        removed = container_id(_run(containers, f"dpt-removed-{containers.session}"))
        docker("network", "connect", network, kept)
        second = containers.ip(kept, network)
        wait_for(
            lambda: (
                {r["ip"] for r in rows(made, kept) if r["status"] == "up"}
                == {containers.ip(kept), second}
            ),
            60,
            "both addresses up",
        )
        wait_for(lambda: (r := rows(made, removed)) and r[0]["status"] == "up", 60, "up")
        proxy.cut()
        docker("network", "disconnect", network, kept)
        docker("rm", "-f", removed)
        proxy.restore()  # the events of the cut are not replayed: only a resync can see them
        wait_for(lambda: all(r["removed"] for r in rows(made, removed)), 60, "the removed gone")
        wait_for(
            lambda: (
                {r["ip"]: r["removed"] for r in rows(made, kept)}
                == {containers.ip(kept): False, second: True}
            ),
            60,
            "the left network's address gone",
        )
        assert "destroy" in [e["action"] for e in history(made, removed)]
        disconnects = [
            e["detail"]["network"]
            for e in history(made, kept)
            if e["action"] == "network_disconnect"
        ]
        assert disconnects == [network]
    finally:
        made.close()
        proxy.close()
        docker("rm", "-f", *containers.names, check=False)
        containers.cleanup()
        docker("network", "rm", network, check=False)
