"""What to probe in a container: pure functions over Docker's inspect payload."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.http_labels import HttpPlan, plan_of
from agent.untrusted import fit, fit_labels, fit_name
from dockping.http_check import HttpCheck
from dockping.settings import AgentSettings, Duration, HttpRule, format_duration

if TYPE_CHECKING:
    from agent.netns import Namespace

ENABLE_LABEL = "dockping.enable"
PORTS_LABEL = "dockping.ports"
INTERVAL_LABEL = "dockping.interval"
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")
HEALTH_STATES = frozenset({"healthy", "unhealthy", "starting"})
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
# A Swarm task's stack and service fill the same columns as a compose project and service.
STACK_NAMESPACE = "com.docker.stack.namespace"
SWARM_SERVICE = "com.docker.swarm.service.name"


@dataclass(frozen=True, order=True)
class Target:
    """One address of one container, probed with one protocol."""

    container_id: str
    ip: str
    port: int | None
    protocol: str
    network: str = field(compare=False, default="")
    container_name: str = field(compare=False, default="")
    interval: float | None = field(compare=False, default=None)
    http: HttpCheck | None = field(compare=False, default=None)
    """For protocols http and https: the request and the accepted answers."""
    vantage: str = field(compare=False, default="host")
    """host: probed from the agent's own network; container: from inside the container's
    (through `netns`); none: not probed, no vantage of the agent reaches it (agent/vantage.py)."""
    netns: Namespace | None = field(compare=False, default=None, repr=False)

    @property
    def key(self) -> tuple[str, str, int | None, str]:
        """The identity of the target, as in the event contract."""
        return (self.container_id, self.ip, self.port, self.protocol)


@dataclass(frozen=True)
class Container:
    """What we keep of a container: who it is, and its targets."""

    id: str
    name: str
    image: str
    running: bool
    paused: bool
    compose_project: str
    compose_service: str
    labels: dict[str, str]
    networks: dict[str, tuple[str, ...]]  # network name -> its IPs (IPv4 and IPv6)
    ports: tuple[int, ...]
    targets: tuple[Target, ...]
    note: str = ""
    """Why the container has no targets, when it has none."""
    health: str | None = None
    """Docker's State.Health.Status: healthy, unhealthy, starting; None without a healthcheck."""
    health_at: datetime | None = field(default=None, compare=False)
    """When Docker last checked that health (its last health log entry)."""
    pid: int = 0
    """State.Pid: a process in the container's namespaces, as the host's PID namespace sees it."""
    limited: str = ""
    """What the agent's limits changed of what the labels ask (interval floor, target cap)."""


_DEFAULTS = AgentSettings()


@dataclass(frozen=True)
class Limits:
    """What a container may ask for: the shortest interval, the most targets."""

    min_interval: float = _DEFAULTS.min_interval
    max_targets: int = _DEFAULTS.max_targets_per_container

    @classmethod
    def of(cls, settings: AgentSettings) -> Limits:
        """The limits of these settings."""
        return cls(settings.min_interval, settings.max_targets_per_container)


DEFAULT_LIMITS = Limits()


def disabled(labels: dict[str, str]) -> bool:
    """Whether the label dockping.enable turns a container off."""
    return labels.get(ENABLE_LABEL, "").strip().lower() in ("false", "0", "no", "off")


def project_of(labels: dict[str, str]) -> str:
    """The compose project, or else the Swarm stack, a container belongs to."""
    return labels.get(COMPOSE_PROJECT) or labels.get(STACK_NAMESPACE, "")


def service_of(labels: dict[str, str]) -> str:
    """The compose service, or else the Swarm service, a container runs."""
    return labels.get(COMPOSE_SERVICE) or labels.get(SWARM_SERVICE, "")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_ports(text: str) -> tuple[int, ...]:
    """Parse a dockping.ports label: "80,8443"; raise ValueError naming the bad part."""
    ports: set[int] = set()
    for part in text.split(","):
        part = part.strip().removesuffix("/tcp")
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 65535:
            raise ValueError(f"{PORTS_LABEL}: {part!r} is not a TCP port")
        ports.add(int(part))
    return tuple(sorted(ports))


def _exposed_tcp_ports(inspect: dict[str, Any]) -> tuple[int, ...]:
    ports: set[int] = set()
    config = _dict(inspect.get("Config"))
    host_config = _dict(inspect.get("HostConfig"))
    settings = _dict(inspect.get("NetworkSettings"))
    for source in (
        config.get("ExposedPorts"),
        host_config.get("PortBindings"),
        settings.get("Ports"),
    ):
        if not isinstance(source, dict):
            continue
        for spec in source:
            number, _, proto = str(spec).partition("/")
            if (proto or "tcp") == "tcp" and number.isdigit() and 1 <= int(number) <= 65535:
                ports.add(int(number))
    return tuple(sorted(ports))


def _networks(inspect: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    networks = _dict(_dict(inspect.get("NetworkSettings")).get("Networks"))
    for name, endpoint in networks.items():
        if not isinstance(endpoint, dict):
            continue
        ips: list[str] = []
        for key in ("IPAddress", "GlobalIPv6Address"):
            value = endpoint.get(key)
            if isinstance(value, str) and value:
                try:
                    ips.append(str(ipaddress.ip_address(value)))
                except ValueError:
                    continue
        found[fit(name)] = tuple(ips)
    return found


def health_of(state: dict[str, Any]) -> tuple[str | None, datetime | None]:
    """Docker's health of a container (State.Health.Status) and when its last check ended;
    (None, None) without a healthcheck."""
    health = _dict(state.get("Health"))
    status = health.get("Status")
    if status not in HEALTH_STATES:
        return None, None
    log = health.get("Log")
    last = _dict(log[-1]) if isinstance(log, list) and log else {}
    return str(status), docker_timestamp(last.get("End"))


def docker_timestamp(text: object) -> datetime | None:
    """A timestamp of an inspect payload (RFC 3339, nanoseconds), to the microsecond."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    match = _TIMESTAMP.match(text)
    if match is None:
        return None
    fraction = ((match.group(2) or "") + "000000")[:6]
    zone = match.group(3).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone}").astimezone(UTC)
    except ValueError:
        return None


def container_of(
    inspect: dict[str, Any],
    icmp_available: bool = False,
    http_rules: Sequence[HttpRule] = (),
    limits: Limits = DEFAULT_LIMITS,
) -> Container:
    """Read a container and its targets from an inspect payload; never raises on odd input.

    A container chooses its labels: an interval under limits.min_interval is raised to it,
    and targets past limits.max_targets are left out; `limited` says so.
    """
    config = _dict(inspect.get("Config"))
    state = _dict(inspect.get("State"))
    # Every text a container chose is made to fit the contract here, before any event has it.
    labels = fit_labels(config.get("Labels"))
    container_id = fit_name(inspect.get("Id") or "")
    name = fit(str(inspect.get("Name") or "").lstrip("/"))
    # Podman's stop grace period: `stopping`, Running false, and still serving until it stops.
    running = bool(state.get("Running")) or state.get("Status") == "stopping"
    paused = bool(state.get("Paused"))
    networks = _networks(inspect)
    note = ""
    try:
        ports = (
            parse_ports(labels[PORTS_LABEL])
            if PORTS_LABEL in labels
            else _exposed_tcp_ports(inspect)
        )
    except ValueError as exc:
        ports, note = _exposed_tcp_ports(inspect), str(exc)
    interval: float | None = None
    if INTERVAL_LABEL in labels:
        try:
            interval = float(Duration.parse(labels[INTERVAL_LABEL]))
            if interval <= 0:
                raise ValueError("must be longer than zero")
        except ValueError as exc:
            note = f"{INTERVAL_LABEL}: {exc}"
            interval = None
    health, health_at = health_of(state)
    http = plan_of(labels, str(config.get("Image") or ""), http_rules)
    if http.notes:
        note = "; ".join(filter(None, (note, *http.notes)))
    if http.ports:
        ports = tuple(sorted({*ports, *http.ports}))
    limited: list[str] = []
    if interval is not None and interval < limits.min_interval:
        limited.append(
            f"{INTERVAL_LABEL}: {labels[INTERVAL_LABEL][:64]!r} is shorter than agent.min_interval;"
            f" probed every {format_duration(limits.min_interval)}"
        )
        interval = limits.min_interval
    targets: list[Target] = []
    host_mode = str(_dict(inspect.get("HostConfig")).get("NetworkMode") or "") == "host"
    if disabled(labels):
        note = f"disabled by the label {ENABLE_LABEL}"
    elif not running:
        note = "not running"
    elif host_mode:
        note = "uses the host network: it has no address of its own to probe"
    elif not any(networks.values()):
        note = "has no IP address on any network"
    else:
        for network, ips in sorted(networks.items()):
            for ip in ips:
                if ports:
                    targets.extend(
                        _port_target(container_id, ip, port, network, name, interval, http)
                        for port in ports
                    )
                elif icmp_available:
                    targets.append(Target(container_id, ip, None, "icmp", network, name, interval))
        if not ports and not icmp_available:
            note = "exposes no TCP port, and this system allows no unprivileged ICMP echo"
        if len(targets) > limits.max_targets:
            limited.append(
                f"{len(targets)} targets, more than agent.max_targets_per_container: only the"
                f" first {limits.max_targets} (by network, address and port) are probed"
            )
            del targets[limits.max_targets :]
    return Container(
        id=container_id,
        name=name,
        image=fit(config.get("Image") or ""),
        running=running,
        paused=paused,
        compose_project=project_of(labels),
        compose_service=service_of(labels),
        labels=labels,
        networks=networks,
        ports=ports,
        targets=tuple(targets),
        note=note,
        health=health,
        health_at=health_at,
        pid=_pid(state),
        limited="; ".join(limited),
    )


def _port_target(
    container_id: str,
    ip: str,
    port: int,
    network: str,
    name: str,
    interval: float | None,
    http: HttpPlan,
) -> Target:
    """A TCP port's target: a bare connect, or the HTTP(S) check its labels or rules ask for."""
    planned = http.for_port(port)
    if planned is None:
        return Target(container_id, ip, port, "tcp", network, name, interval)
    protocol, check = planned
    return Target(container_id, ip, port, protocol, network, name, interval, check)


def _pid(state: dict[str, Any]) -> int:
    pid = state.get("Pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else 0
