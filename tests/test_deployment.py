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
from dockping.settings import Settings, describe_all, load
from ingest.app import create_app
from launcher.cli import main
from tests.compose_support import (
    AGENT_ENV,
    NO_LOCAL_AGENT,
    ROOT,
    SOCKET_PROXY,
    STACK,
    STACK_ENV,
    compose_tool,
    env_file,
    services,
    write_env_file,
)
from tests.conftest import drop_database, fresh_database
from tests.docker_support import Containers, unavailable
from tests.events import batch, probe
from tests.services import Process, free_port, service_env, wait_for

# Every compose file with the example env file it is used with.
COMPOSE_FILES = {
    STACK: STACK_ENV,
    ROOT / "deploy" / "agent.yml": AGENT_ENV,
    SOCKET_PROXY: AGENT_ENV,
}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


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


def required_variables(path: Path) -> list[str]:
    """The variables a compose file cannot do without (`${NAME:?message}`), in order."""
    names = []
    for match in _VARIABLE.finditer(path.read_text(encoding="utf-8")):
        if match.group("op") in (":?", "?") and match.group("name") not in names:
            names.append(match.group("name"))
    return names


def edited(example: Path, compose_file: Path, tmp_path: Path, leave: str = "") -> Path:
    """The example env file as the README says to edit it: every secret it leaves empty set
    (but `leave`)."""
    values = env_file(example)
    for name in required_variables(compose_file):
        if not values.get(name) and name != leave:
            values[name] = f"{name.lower()}0123456789abcdef"
    path = tmp_path / f"{example.name}.{compose_file.stem}.{leave or 'all'}"
    write_env_file(path, values)
    return path


def compose_config(
    tool: list[str], *args: str, listing: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`compose ARGS config LISTING` in the checkout, its output and error kept."""
    return subprocess.run(
        [*tool, *args, "config", *listing],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_the_compose_files_validate_with_their_edited_example_env_files(tmp_path: Path) -> None:
    """`docker compose config` accepts every compose file with its example env file, secrets set."""
    tool = compose_tool()
    for path, example in COMPOSE_FILES.items():
        env = edited(example, path, tmp_path)
        done = compose_config(tool, "-f", str(path), "--env-file", str(env), "--profile", "demo")
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


def test_an_unedited_example_env_file_is_refused_naming_each_secret(tmp_path: Path) -> None:
    """A copy of an example env file with a secret not set is refused, naming that secret."""
    tool = compose_tool()
    refused = set()
    for path, example in COMPOSE_FILES.items():
        done = compose_config(tool, "-f", str(path), "--env-file", str(example))
        assert done.returncode != 0, f"{path.name} starts with {example.name} as it is"
        for name in required_variables(path):
            if env_file(example).get(name):
                continue  # not a secret: the example's value is a working one ({} agent tokens)
            env = edited(example, path, tmp_path, leave=name)
            done = compose_config(tool, "-f", str(path), "--env-file", str(env))
            assert done.returncode != 0, f"{path.name} starts without {name}"
            assert name in done.stderr, done.stderr
            refused.add(name)
    assert {"POSTGRES_PASSWORD", "INGEST_TOKEN", "NOTIFY_TOKEN", "AGENT_TOKEN"} <= refused


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


def test_every_variable_in_the_compose_files_is_a_real_setting(tmp_path: Path) -> None:
    """Each DOCKPING_* name in the Dockerfile and compose files is a setting, and its value loads."""
    known = {env for _, env, _, _ in describe_all()}
    image = dockerfile_env()
    assert image["DOCKPING_LOG__FORMAT"] == "json"
    for path, example in COMPOSE_FILES.items():
        variables = env_file(edited(example, path, tmp_path))
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
    # notify too: a healthcheck, and it waits for migrate (its silences API on loopback only).
    for name, port, published in (
        ("ingest", 8080, "8080:8080"),
        ("query", 8081, "8081:8081"),
        ("notify", 8082, "127.0.0.1:8082:8082"),
    ):
        service = stack[name]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert [published] == [interpolate(spec, {}) for spec in service["ports"]]
        moved = {f"{name.upper()}_PORT": "18000"}
        assert [published.replace(f"{port}:", "18000:", 1)] == [
            interpolate(spec, moved) for spec in service["ports"]
        ]
        assert service["environment"][f"DOCKPING_{name.upper()}__HOST"] == "0.0.0.0"
        assert f"127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])
        assert "user" not in service  # the image's own non-root user
    agent = stack["agent"]
    assert agent["network_mode"] == "host"
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in agent["volumes"]
    # The agent sends to the port ingest is published on, wherever INGEST_PORT moves it.
    url = agent["environment"]["DOCKPING_AGENT__INGEST_URL"]
    assert interpolate(url, {"INGEST_PORT": "18000"}) == "http://127.0.0.1:18000"
    for demo in ("demo-up", "demo-down"):
        assert stack[demo]["profiles"] == ["demo"]
    assert "--profile demo up" in (ROOT / "Makefile").read_text(encoding="utf-8")
    proxy = services(ROOT / "deploy" / "agent-socket-proxy.yml")["docker-socket-proxy"]
    allowed = {key for key, value in proxy["environment"].items() if value == "1"}
    assert {"CONTAINERS", "EVENTS", "NETWORKS", "INFO"} == allowed


def test_every_service_built_from_the_dockerfile_runs_one_image_name() -> None:
    """Each service built here names the same image (one tag, not one per service)."""
    names = set()
    for path in COMPOSE_FILES:
        for name, service in services(path).items():
            if "build" in service:
                assert "image" in service, f"{path.name}: {name} has no image name"
                names.add(interpolate(service["image"], {}))
    assert {"dockping:local"} == names


def test_the_build_takes_an_extra_ca_for_a_tls_inspecting_proxy() -> None:
    """Every build passes EXTRA_CA_CERT, and the Dockerfile trusts it before pip and uv run."""
    for path in COMPOSE_FILES:
        for name, service in services(path).items():
            if "build" in service:
                assert service["build"]["args"] == {"EXTRA_CA_CERT": "${EXTRA_CA_CERT:-}"}, name
    build_stage = (ROOT / "Dockerfile").read_text(encoding="utf-8").split("\nFROM ")[1]
    assert build_stage.index("ARG EXTRA_CA_CERT") < build_stage.index('"$EXTRA_CA_CERT"')
    assert build_stage.index('"$EXTRA_CA_CERT"') < build_stage.index("pip install")
    for variable in ("PIP_CERT", "SSL_CERT_FILE"):
        assert f"{variable}=/etc/ssl/build-ca.pem" in build_stage


def test_the_agents_have_a_healthcheck_and_the_local_one_can_be_kept_off(tmp_path: Path) -> None:
    """Every agent is checked by `dockping agent --check`; deploy/no-local-agent.yml leaves it out."""
    for path in COMPOSE_FILES:
        agent = services(path)["agent"]
        assert agent["healthcheck"]["test"] == ["CMD", "dockping", "agent", "--check"]
    tool = compose_tool()
    env = edited(STACK_ENV, STACK, tmp_path)
    rendered = {}
    for files in ([STACK], [STACK, NO_LOCAL_AGENT]):
        flags = [arg for path in files for arg in ("-f", str(path))]
        done = compose_config(tool, *flags, "--env-file", str(env), "--profile", "demo")
        assert done.returncode == 0, done.stderr
        rendered[len(files)] = yaml.safe_load(done.stdout)["services"]
    assert "profiles" not in rendered[1]["agent"]
    # Compose v2 leaves a service of a profile not enabled out of `config`; v1 shows it, marked.
    assert rendered[2].get("agent", {"profiles": ["local-agent"]})["profiles"] == ["local-agent"]
    assert set(rendered[1]) - {"agent"} == set(rendered[2]) - {"agent"}
    assert "local-agent" not in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_the_readme_says_what_the_stack_does() -> None:
    """The README's table names every service that waits for migrate, and its `down -v` the demo."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    waiting = {
        name
        for name, service in services(STACK).items()
        if "migrate" in (service.get("depends_on") or {})
    }
    row = next(line for line in readme.splitlines() if line.startswith("| `migrate` |"))
    assert waiting == set(re.findall(r"`(\w+)`", row.split("start only after")[0])) - {"migrate"}
    checked = {name for name, service in services(STACK).items() if "healthcheck" in service}
    assert {"timescaledb", "ingest", "query", "notify", "agent"} == checked
    downs = [line for line in readme.splitlines() if "down -v" in line]
    assert downs
    for line in downs:
        assert "--profile demo down -v" in line, line


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


def test_healthz_answers_503_in_time_when_the_database_does_not_answer(tmp_path: Path) -> None:
    """A database that takes connections and never answers makes /healthz a 503 within the 5 s
    the healthchecks wait, not a timeout; the compose healthcheck fails on it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"postgresql://postgres:x@127.0.0.1:{silent.getsockname()[1]}/dockping"
        env = service_env(tmp_path / "data", DOCKPING_DATABASE__URL=url)
        port = int(env["DOCKPING_QUERY__PORT"])
        query = Process(["query"], env, tmp_path / "query.log")
        try:
            answer = wait_for(
                lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5),
                60,
                "query /healthz to answer",
            )
            assert answer.status_code == 503
            assert "database" in answer.json()["detail"]
            assert healthcheck("query", port) != 0
        finally:
            query.stop()
    assert "Traceback" not in query.output()


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
