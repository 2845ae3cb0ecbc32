"""The compose stack, started as the README says, on local stand-ins for the images it names.

`make up` in a copy of this checkout, with a .env made from .env.example, a project name of
its own and free host ports; then what a user relies on: the demo targets, the agent's
healthcheck, a database outage, `make down` and `make up` again, and the socket-proxy agent.
The images the stack names are built from Debian's packages (tests/stack_images.py) and kept
for the next run; everything else the test makes is removed.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from agent.health import FILE_NAME, Health
from tests import stack_images
from tests.compose_support import (
    AGENT_ENV,
    NO_LOCAL_AGENT,
    ROOT,
    STACK_ENV,
    compose_tool,
    env_file,
    write_env_file,
)
from tests.docker_support import docker, unavailable
from tests.services import free_port, wait_for

# Cold, the first test also waits for every image to be built (about 3 minutes here).
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

PROBE_INTERVAL = 2.0
"""The stack's agent probes this often here (an override, as the README shows), not 20 s."""
OUTAGE = 30.0
# What a checkout holds that is no part of a fresh clone.
_NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".tools",
    ".data",
    ".env",
    "docker-compose.override.yml",
    "__pycache__",
    "*_cache",
    ".hypothesis",
    "test-artifacts",
    "bench-results",
)


def extra_ca_certs() -> str:
    """The CAs added to this machine's trust store (a TLS-inspecting proxy's), as PEM text."""
    found = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    return "".join(path.read_text(encoding="utf-8") for path in found)


@dataclass
class Stack:
    """The stack in its own copy of the checkout, under a project name of its own."""

    directory: Path
    project: str
    ports: dict[str, int]
    secrets: dict[str, str]
    agent_id: str
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
        """Run a command in the copy; fail with its output unless it succeeds."""
        done = subprocess.run(
            argv,
            cwd=self.directory,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done.stdout

    def compose(self, *args: str, project: str | None = None) -> str:
        """The compose tool in the copy, on this stack's project unless told another."""
        return self.run(
            *compose_tool(), *args, env={"COMPOSE_PROJECT_NAME": project or self.project}
        )

    def container(self, service: str, project: str | None = None) -> str:
        """The id of a service's running container, or "" when none runs."""
        return docker(
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={project or self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        )

    def get(self, service: str, path: str, **params: Any) -> httpx.Response:
        """A GET to a published port on loopback; an answer within 5 s (as a healthcheck
        waits), or an error."""
        return httpx.get(f"http://127.0.0.1:{self.ports[service]}{path}", params=params, timeout=5)

    def address(self, service: str, agent: str | None = None) -> dict[str, Any] | None:
        """The address row of one of this stack's services, as the query API lists it."""
        items = self.get("query", "/api/v1/addresses", q=self.project, limit=500).json()["items"]
        for item in items:
            if (
                item["compose_project"] == self.project
                and service in item["container_name"]
                and item["agent"] == (agent or self.agent_id)
            ):
                found: dict[str, Any] = item
                return found
        return None

    def running_ids(self) -> set[str]:
        """The full ids of this stack's running containers, as Docker says."""
        label = f"label=com.docker.compose.project={self.project}"
        return set(docker("ps", "-q", "--no-trunc", "--filter", label).split())

    def one_row_per_live_address(self) -> bool:
        """Whether the listing shows this stack's addresses once each, all of running ones."""
        items = self.get("query", "/api/v1/addresses", q=self.project, limit=500).json()["items"]
        mine = [i for i in items if i["compose_project"] == self.project]
        keys = [(i["container_name"], i["ip"], i["port"], i["protocol"]) for i in mine]
        running = self.running_ids()
        return (
            bool(mine)
            and len(keys) == len(set(keys))
            and all(i["container_id"] in running for i in mine)
        )

    def health(self, container: str) -> Health:
        """What an agent last wrote to its health file."""
        text = docker("exec", container, "cat", f"/var/lib/dockping/{FILE_NAME}")
        return msgspec.json.decode(text, type=Health)

    def docker_health(self, container: str) -> str:
        """Docker's verdict of a container's healthcheck."""
        return docker("inspect", "--format", "{{.State.Health.Status}}", container)

    def probe_times(self, target_id: int) -> list[datetime]:
        """The times of a target's probe events, oldest first."""
        items = self.get("query", f"/api/v1/targets/{target_id}/events", limit=500).json()["items"]
        return sorted(datetime.fromisoformat(item["time"]) for item in items)


def _remove(project: str) -> None:
    """Whatever a project left behind: containers, then volumes and networks."""
    label = f"label=com.docker.compose.project={project}"
    for kind, listing in (
        ("rm", ["ps", "-aq"]),
        ("volume", ["volume", "ls", "-q"]),
        ("network", ["network", "ls", "-q"]),
    ):
        names = docker(*listing, "--filter", label, check=False).split()
        if names:
            docker(*([kind, "-f"] if kind == "rm" else [kind, "rm"]), *names, check=False)


@pytest.fixture(scope="module")
def stack(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`make up` of a fresh copy, the README's way; everything removed afterwards but the images."""
    compose_tool()
    try:
        stack_images.ensure()
    except stack_images.Unavailable as exc:
        unavailable(str(exc))
    directory = tmp_path_factory.mktemp("stack") / "dockping"
    shutil.copytree(ROOT, directory, ignore=_NOT_IN_A_CLONE)
    suffix = uuid.uuid4().hex[:8]
    stack = Stack(
        directory=directory,
        project=f"dockpingstack{suffix}",
        ports={"ingest": free_port(), "query": free_port(), "notify": free_port()},
        secrets={
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "INGEST_TOKEN": secrets.token_hex(16),
            "NOTIFY_TOKEN": secrets.token_hex(16),
        },
        agent_id=f"stack-{suffix}",
    )
    stack.env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(directory),
        "COMPOSE_PROJECT_NAME": stack.project,
        # One tag of its own, kept between runs for its layers, never a user's dockping image.
        "DOCKPING_IMAGE": "dockping-test-stack:local",
        "EXTRA_CA_CERT": extra_ca_certs(),
        "DOCKER_BUILDKIT": "0",
        # The engine the other Docker tests use, where one is named.
        **{name: os.environ[name] for name in ("DOCKER_HOST",) if name in os.environ},
    }
    # cp .env.example .env, then set the secrets (and, here, ports and an agent id of its own).
    values = env_file(STACK_ENV)
    values.update(stack.secrets)
    values.update({f"{name.upper()}_PORT": str(port) for name, port in stack.ports.items()})
    values["AGENT_ID"] = stack.agent_id
    write_env_file(directory / ".env", values)
    (directory / "docker-compose.override.yml").write_text(
        "services:\n  agent:\n    environment:\n"
        f"      DOCKPING_AGENT__PROBE_INTERVAL: {PROBE_INTERVAL:g}s\n"
        "      DOCKPING_AGENT__RESYNC_INTERVAL: 5s\n",
        encoding="utf-8",
    )
    try:
        stack.run("make", "up")
        yield stack
    finally:
        proxy = directory / "deploy" / ".env"
        if proxy.exists():
            subprocess.run(
                [
                    *compose_tool(),
                    "-f",
                    "deploy/agent-socket-proxy.yml",
                    "--env-file",
                    str(proxy),
                    "down",
                    "-v",
                    "--remove-orphans",
                ],
                cwd=directory,
                env={**stack.env, "COMPOSE_PROJECT_NAME": f"{stack.project}proxy"},
                capture_output=True,
                timeout=300,
                check=False,
            )
        subprocess.run(
            [
                *compose_tool(),
                "--profile",
                "demo",
                "--profile",
                "local-agent",
                "down",
                "-v",
                "--remove-orphans",
            ],
            cwd=directory,
            env=stack.env,
            capture_output=True,
            timeout=300,
            check=False,
        )
        for project in (stack.project, f"{stack.project}proxy"):
            _remove(project)


def test_the_demo_targets_are_up_and_refused_within_a_minute(stack: Stack) -> None:
    """demo-up is up and demo-down is down (refused) within 60 s of `make up`."""
    up = wait_for(
        lambda: (row := stack.address("demo-up")) and row["status"] == "up" and row,
        60,
        "demo-up up",
    )
    down = wait_for(
        lambda: (row := stack.address("demo-down")) and row["status"] == "down" and row,
        60,
        "demo-down down",
    )
    assert up["port"] == 80
    assert (down["port"], down["error"]) == (81, "refused")
    assert stack.get("ingest", "/healthz").status_code == 200
    assert stack.get("query", "/healthz").status_code == 200
    # migrate chose the backend by what the server has: TimescaleDB where the stand-in carries it.
    done = [
        line
        for line in stack.compose("logs", "--no-color", "migrate").splitlines()
        if "migrate.done" in line
    ]
    backend = "timescaledb" if stack_images.has_timescaledb() else "postgres"
    assert len(done) == 1
    assert f'"backend": "{backend}"' in done[0]


def test_the_agent_is_healthy_when_it_reaches_docker_and_ingest(stack: Stack) -> None:
    """The agent's healthcheck passes in the running stack, from what the agent wrote itself."""
    agent = stack.container("agent")
    assert agent
    wait_for(lambda: stack.docker_health(agent) == "healthy", 90, "the agent's healthcheck")
    health = stack.health(agent)
    assert (health.docker_ok, health.ingest_ok) == (True, True)


def test_a_database_outage_is_seen_spooled_and_leaves_no_probe_gap(stack: Stack) -> None:
    """With the database stopped 30 s, /healthz is 503, the agent spools, and no probe is lost."""
    target = wait_for(lambda: stack.address("demo-up"), 60, "demo-up listed")
    agent = stack.container("agent")
    stopped_at = time.time()
    stack.compose("stop", "timescaledb")
    try:
        for service in ("query", "ingest"):
            wait_for(
                lambda service=service: stack.get(service, "/healthz").status_code == 503,
                15,
                f"{service} /healthz 503",
            )
        spooling = wait_for(
            lambda: (health := stack.health(agent)) and not health.ingest_ok and health,
            30,
            "the agent to find ingest refusing",
        )
        assert spooling.spool_bytes > 0
        check = subprocess.run(
            ["docker", "exec", agent, "dockping", "agent", "--check"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 1
        assert "ingest does not take" in check.stderr
        time.sleep(max(0.0, stopped_at + OUTAGE - time.time()))
    finally:
        stack.compose("start", "timescaledb")
    restarted_at = time.time()
    wait_for(lambda: stack.get("ingest", "/healthz").status_code == 200, 90, "ingest healthy again")
    wait_for(lambda: stack.health(agent).ingest_ok, 60, "the agent sending again")
    wait_for(
        lambda: stack.probe_times(target["target_id"])[-1].timestamp() > restarted_at + 5,
        60,
        "probes after the restart stored",
    )
    during = [
        moment.timestamp()
        for moment in stack.probe_times(target["target_id"])
        if stopped_at - 10 <= moment.timestamp() <= restarted_at + 5
    ]
    gaps = [later - earlier for earlier, later in itertools.pairwise(during)]
    # Probed every 2 s throughout: a lost stretch would be a gap near the outage's 30 s.
    assert during[0] < stopped_at
    assert during[-1] > restarted_at
    assert max(gaps) < 5 * PROBE_INTERVAL, gaps


def test_make_down_then_make_up_keeps_the_data(stack: Stack) -> None:
    """After `make down` and `make up` the targets and their history are still there."""
    before = wait_for(lambda: stack.address("demo-up"), 60, "demo-up listed")
    history = stack.probe_times(before["target_id"])
    stack.run("make", "down")
    assert stack.container("timescaledb") == ""
    stack.run("make", "up")
    wait_for(
        lambda: (row := stack.address("demo-up")) and row["status"] == "up",
        90,
        "demo-up up again",
    )
    kept = stack.get("query", f"/api/v1/targets/{before['target_id']}")
    assert kept.status_code == 200
    assert history[0] in stack.probe_times(before["target_id"])
    # The previous run's containers, removed by make down, are gone at the new agent's first
    # inventory: the listing holds one row per live address, every one of a running container.
    wait_for(lambda: stack.one_row_per_live_address(), 60, "one row per live address")
    gone = stack.get("query", f"/api/v1/targets/{before['target_id']}").json()
    assert gone["container_id"] == before["container_id"]
    if before["container_id"] not in stack.running_ids():
        assert gone["status"] == "gone"


def test_the_socket_proxy_agent_replaces_the_root_one_for_good(stack: Stack) -> None:
    """With the README's override the root agent stays off; the proxied agent probes the demo."""
    stack.compose("rm", "--stop", "--force", "agent")
    shutil.copyfile(NO_LOCAL_AGENT, stack.directory / "docker-compose.override.yml")
    stack.run("make", "up")
    assert stack.container("agent") == ""
    proxy_port = free_port()
    proxy_agent = f"{stack.agent_id}-proxied"
    values = env_file(AGENT_ENV)
    values.update(
        {
            "AGENT_ID": proxy_agent,
            "INGEST_URL": f"http://127.0.0.1:{stack.ports['ingest']}",
            "AGENT_TOKEN": stack.secrets["INGEST_TOKEN"],
            "PROXY_PORT": str(proxy_port),
        }
    )
    write_env_file(stack.directory / "deploy" / ".env", values)
    project = f"{stack.project}proxy"
    stack.compose(
        "-f",
        "deploy/agent-socket-proxy.yml",
        "--env-file",
        "deploy/.env",
        "up",
        "-d",
        "--build",
        project=project,
    )
    row = wait_for(
        lambda: (row := stack.address("demo-up", proxy_agent)) and row["status"] == "up" and row,
        90,
        "demo-up up, seen by the proxied agent",
    )
    assert row["port"] == 80
    agent = stack.container("agent", project)
    wait_for(lambda: stack.docker_health(agent) == "healthy", 90, "the proxied agent's healthcheck")
    assert docker("inspect", "--format", "{{.Config.User}}", agent) == "dockping"
    proxy = f"http://127.0.0.1:{proxy_port}"
    assert httpx.get(f"{proxy}/_ping", timeout=5).status_code == 200
    assert httpx.post(f"{proxy}/containers/create", json={}, timeout=5).status_code == 403
    assert stack.container("agent") == ""
