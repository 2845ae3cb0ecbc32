"""The docker compose deployment: valid files, the same install and commands the tests use.

No image can be pulled or built here, so the stack itself never starts in a test; what can
be checked without it is checked: the compose tool's own validation, the Dockerfile against
the Makefile, the commands against the CLI, the variables against the settings, the
healthchecks against running services, the README's backup and upgrade steps, and the agent
behind a proxy that allows what deploy/agent-socket-proxy.yml allows.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from litestar.testing import TestClient

from db.embedded import BIN
from db.migrate import latest_version, migrate
from dockping.cli import main
from dockping.settings import Settings, describe_all, load
from ingest.app import create_app
from tests.conftest import drop_database, fresh_database
from tests.docker_support import Containers, unavailable
from tests.events import batch, probe
from tests.services import Process, free_port, service_env, wait_for

ROOT = Path(__file__).parent.parent
STACK = ROOT / "docker-compose.yml"
STACK_ENV = ROOT / ".env.example"
AGENT_ENV = ROOT / "deploy" / "agent.env.example"
# Every compose file with the example env file it is used with.
COMPOSE_FILES = {
    STACK: STACK_ENV,
    ROOT / "deploy" / "agent.yml": AGENT_ENV,
    ROOT / "deploy" / "agent-socket-proxy.yml": AGENT_ENV,
}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def compose_tool() -> list[str]:
    """The compose plugin, or Debian's docker-compose; skips (or fails) where neither is."""
    if shutil.which("docker"):
        plugin = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False, timeout=30
        )
        if plugin.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    unavailable("no compose tool (the docker compose plugin or Debian's docker-compose)")
    raise AssertionError("unreachable")


def env_file(path: Path) -> dict[str, str]:
    """The variables of an env file, as compose reads the simple ones the examples hold."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip().strip("'\"")
    return found


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?message}, enough for our files."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        given = variables.get(name, "")
        if op in (":?", "?") and not given:
            raise AssertionError(f"{name} is required, and the example env file leaves it empty")
        if op in (":-", "-") and not given:
            return str(arg)
        return given

    return _VARIABLE.sub(one, value)


def services(path: Path) -> dict[str, dict[str, Any]]:
    """The services of a compose file, as YAML (anchors and merge keys resolved)."""
    found: dict[str, dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["services"]
    return found


def environment(service: dict[str, Any], variables: dict[str, str]) -> dict[str, str]:
    """A service's environment, interpolated with an example env file."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] for item in raw)
    return {name: interpolate(str(value), variables) for name, value in raw.items()}


def dockerfile_env() -> dict[str, str]:
    """The DOCKPING_* variables the Dockerfile sets for every service."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for word in shlex.split(line[4:]):
                name, _, value = word.partition("=")
                if name.startswith("DOCKPING_"):
                    found[name] = value
    return found


def sync_flags(text: str, marker: str) -> list[set[str]]:
    """The options of every `uv sync` in a file; `--python X` picks an interpreter, not a set."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        if marker in line:
            words = shlex.split(line.split(marker, 1)[1])
            flags = {w for w in words if w.startswith("--")}
            flags.discard("--python")
            found.append(flags)
    return found


def test_the_compose_files_validate_with_their_example_env_files() -> None:
    """`docker compose config` accepts every compose file with the example env file beside it."""
    tool = compose_tool()
    for path, example in COMPOSE_FILES.items():
        done = subprocess.run(
            [*tool, "-f", str(path), "--env-file", str(example), "--profile", "demo", "config"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{path.name}: {done.stderr}"
        rendered = yaml.safe_load(done.stdout)
        assert set(services(path)) == set(rendered["services"])
    assert {
        "timescaledb",
        "migrate",
        "ingest",
        "query",
        "notify",
        "agent",
        "demo-up",
        "demo-down",
    } == set(services(STACK))


def test_the_stack_refuses_to_run_without_the_secrets(tmp_path: Path) -> None:
    """Without an env file there is no default password or token: compose names what is missing."""
    tool = compose_tool()
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    done = subprocess.run(
        [*tool, "-f", str(STACK), "--env-file", str(empty), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "POSTGRES_PASSWORD" in done.stderr + done.stdout


def test_the_image_installs_with_the_command_the_makefile_uses() -> None:
    """The Dockerfile installs from uv.lock with `uv sync --frozen`, as `make test` does, less dev."""
    makefile = sync_flags((ROOT / "Makefile").read_text(encoding="utf-8"), "$(UV) sync")
    dockerfile_text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    image = sync_flags(dockerfile_text, "uv sync")
    assert len(makefile) == 1
    assert len(image) >= 1
    # What the image leaves out on purpose: the dev tools, an editable install, and (in the
    # dependency layer) the project itself. Everything else must be the same command.
    production_only = {"--no-dev", "--no-editable", "--no-install-project"}
    for flags in image:
        assert makefile[0] == flags - production_only
        assert "--no-dev" in flags
    assert "COPY pyproject.toml uv.lock" in dockerfile_text


def test_the_image_holds_every_package_the_wheel_ships() -> None:
    """Each package of the wheel is copied into the build and let through .dockerignore."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore
    assert ".env" not in ignore  # ignored by "*", and never let through
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile
        assert f"!{package}/" in ignore


def test_every_compose_command_is_a_dockping_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    """The image runs `dockping`, and each service built from it runs a real subcommand."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["dockping"]' in dockerfile
    with pytest.raises(SystemExit) as unknown:
        main(["no-such-command", "--help"])
    assert unknown.value.code == 2
    used: set[str] = set()
    for path in COMPOSE_FILES:
        for name, service in services(path).items():
            if "build" not in service:
                continue
            assert "entrypoint" not in service, f"{path.name}: {name} replaces the entrypoint"
            command = service["command"]
            with pytest.raises(SystemExit) as parsed:
                main([*command, "--help"])
            assert parsed.value.code == 0, f"{path.name}: {name} runs {command}"
            used.add(command[0])
    capsys.readouterr()
    assert {"migrate", "ingest", "query", "notify", "agent"} <= used


def test_every_variable_in_the_compose_files_is_a_real_setting() -> None:
    """Each DOCKPING_* name in the Dockerfile and compose files is a setting, and its value loads."""
    known = {env for _, env, _, _ in describe_all()}
    image = dockerfile_env()
    assert image["DOCKPING_LOG__FORMAT"] == "json"
    for path, example in COMPOSE_FILES.items():
        variables = env_file(example)
        for name, service in services(path).items():
            if "build" not in service:
                continue
            env = {**image, **environment(service, variables)}
            settings_names = {key for key in env if key.startswith("DOCKPING_")}
            assert settings_names <= known, f"{path.name}: {name}: {settings_names - known}"
            load(None, env)  # raises SettingsError on a bad value


def test_the_stack_has_the_shape_the_readme_describes() -> None:
    """Pinned TimescaleDB on a volume; migrate first; agent on the host network with the socket."""
    stack = services(STACK)
    database = stack["timescaledb"]
    assert re.fullmatch(r"timescale/timescaledb:\d+\.\d+\.\d+-pg\d+", database["image"])
    assert database["volumes"][0].split(":")[0] in yaml.safe_load(STACK.read_text())["volumes"]
    assert "healthcheck" in database
    assert stack["migrate"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    for name, port in (("ingest", 8080), ("query", 8081)):
        service = stack[name]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert f"{port}:{port}" in service["ports"]
        assert service["environment"][f"DOCKPING_{name.upper()}__HOST"] == "0.0.0.0"
        assert f"127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])
        assert "user" not in service  # the image's own non-root user
    agent = stack["agent"]
    assert agent["network_mode"] == "host"
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in agent["volumes"]
    for demo in ("demo-up", "demo-down"):
        assert stack[demo]["profiles"] == ["demo"]
    assert "--profile demo up" in (ROOT / "Makefile").read_text(encoding="utf-8")
    proxy = services(ROOT / "deploy" / "agent-socket-proxy.yml")["docker-socket-proxy"]
    allowed = {key for key, value in proxy["environment"].items() if value == "1"}
    assert {"CONTAINERS", "EVENTS", "NETWORKS", "INFO"} == allowed


def healthcheck(service: str, port: int) -> int:
    """Run a compose healthcheck here, aimed at a port, with this Python; return its exit code."""
    test = services(STACK)[service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1] == "python"
    default = {"ingest": 8080, "query": 8081}[service]
    argv = [sys.executable, *(arg.replace(f":{default}/", f":{port}/") for arg in test[2:])]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode


def test_the_healthchecks_pass_on_live_services_and_fail_on_dead_ones(
    database_url: str, tmp_path: Path
) -> None:
    """The compose healthcheck commands succeed against running ingest and query, not a closed port."""
    env = service_env(
        tmp_path / "data", DOCKPING_DATABASE__URL=database_url, DOCKPING_INGEST__TOKEN="t"
    )
    ports = {"ingest": int(env["DOCKPING_INGEST__PORT"]), "query": int(env["DOCKPING_QUERY__PORT"])}
    running = [Process([name], env, tmp_path / f"{name}.log") for name in ports]
    try:
        for name, port in ports.items():
            wait_for(
                lambda port=port: (
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
                ),
                60,
                f"{name} /healthz",
            )
            assert healthcheck(name, port) == 0
            assert healthcheck(name, free_port()) != 0
    finally:
        for process in running:
            process.stop()
    for process in running:
        assert "Traceback" not in process.output()


@pytest.mark.parametrize("command", ["migrate", "ingest", "query", "notify"])
def test_services_refuse_a_schema_newer_than_themselves(
    database_url: str, tmp_path: Path, command: str
) -> None:
    """`dockping migrate` and every service exit 1 on a newer schema instead of running on it."""
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO dockping_migrations (version, name, backend)"
            " VALUES (%s, 'from_the_future', 'postgres')",
            (latest_version() + 1,),
        )
    env = service_env(tmp_path / "data", DOCKPING_DATABASE__URL=database_url)
    process = Process([command], env, tmp_path / f"{command}.log")
    code = process.process.wait(60)
    output = process.output()
    process.stop()
    assert code == 1
    assert "newer than this program" in output
    assert "Traceback" not in output


def test_a_pg_dump_restores_to_the_same_history_and_schema_version(
    settings: Settings, database_url: str, pg_admin_url: str
) -> None:
    """A pg_dump of the one database, restored elsewhere, holds the same history and schema."""
    with TestClient(app=create_app(settings, database_url)) as client:
        sent = batch(probe(-30), probe(-20, ok=False), probe(-10, ip="10.9.0.3"))
        response = client.post(
            "/api/v1/events", json=sent, headers={"Authorization": "Bearer test-token"}
        )
        assert response.status_code == 202
    dump = subprocess.run(
        [str(BIN / "pg_dump"), "--format=custom", f"--dbname={database_url}"],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    name, restored = fresh_database(pg_admin_url, "template0")
    try:
        subprocess.run(
            [str(BIN / "pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={restored}"],
            input=dump,
            capture_output=True,
            timeout=120,
            check=True,
        )
        history = "SELECT time, ip, port, ok, latency_ms, error FROM probe_history ORDER BY 1, 2"
        state = "SELECT ip, port, status, error FROM latest_state ORDER BY 1, 2"
        with psycopg.connect(database_url) as source, psycopg.connect(restored) as copy:
            for query in (history, state):
                original = source.execute(query).fetchall()
                assert len(original) >= 2
                assert original == copy.execute(query).fetchall()
        assert migrate(restored) == ("postgres", [])
    finally:
        drop_database(pg_admin_url, name)


# What deploy/agent-socket-proxy.yml lets through, as Tecnativa's proxy matches it: GET or
# HEAD on these API sections, with or without a version prefix.
_PROXY_ALLOWED = re.compile(
    rb"^(GET|HEAD) /(v[\d.]+/)?(containers|events|networks|info|_ping|version)\b"
)


class ReadOnlyDockerProxy(socketserver.ThreadingTCPServer):
    """A stand-in for docker-socket-proxy on 127.0.0.1: allowed requests go to the real socket."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.allowed: list[bytes] = []
        self.denied: list[bytes] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: ReadOnlyDockerProxy

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0]
        if not _PROXY_ALLOWED.match(line):
            self.server.denied.append(line)
            self.request.sendall(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        self.server.allowed.append(line)
        # One request per connection, so that each one is checked.
        lines = [
            part
            for part in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if not part.lower().startswith(b"connection:")
        ]
        forwarded = b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"
        with socket.socket(socket.AF_UNIX) as upstream:
            upstream.connect(self.server.socket_path)
            upstream.sendall(forwarded + head.split(b"\r\n\r\n", 1)[1])
            while chunk := upstream.recv(65536):
                self.request.sendall(chunk)


@pytest.mark.docker
def test_the_agent_needs_only_what_the_socket_proxy_allows(
    containers: Containers, database_url: str, tmp_path: Path
) -> None:
    """Through a proxy that allows only reads of containers, events, networks and info, the agent works."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    socket_path = host.removeprefix("unix://")
    if not Path(socket_path).exists():
        unavailable(f"no Docker socket at {socket_path}")
    serving = containers.run("proxied", "httpd", "-f", "-p", "8000", expose=(8000,))
    proxy = ReadOnlyDockerProxy(socket_path)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    env = service_env(
        tmp_path / "data",
        DOCKPING_DATABASE__URL=database_url,
        DOCKPING_INGEST__TOKEN="proxy-token",
        DOCKPING_AGENT__DOCKER_URL=f"tcp://127.0.0.1:{proxy.server_address[1]}",
    )
    query_url = f"http://127.0.0.1:{env['DOCKPING_QUERY__PORT']}"
    running = [Process([name], env, tmp_path / f"{name}.log") for name in ("ingest", "query")]
    running.append(Process(["agent"], env, tmp_path / "agent.log"))
    try:
        wait_for(
            lambda: any(
                item["container_name"] == serving and item["status"] == "up"
                for item in httpx.get(
                    f"{query_url}/api/v1/addresses", params={"q": serving}, timeout=5
                ).json()["items"]
            ),
            90,
            f"{serving} up, discovered through the proxy",
        )
    finally:
        for process in reversed(running):
            process.stop()
        proxy.shutdown()
        proxy.server_close()
    assert proxy.denied == []
    assert any(b"/containers/" in line for line in proxy.allowed)
    assert any(b"/events" in line for line in proxy.allowed)
