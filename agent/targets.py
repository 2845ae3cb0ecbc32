"""What to probe in a container: pure functions over Docker's inspect payload."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from dockping.settings import Duration

ENABLE_LABEL = "dockping.enable"
PORTS_LABEL = "dockping.ports"
INTERVAL_LABEL = "dockping.interval"
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


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


def disabled(labels: dict[str, str]) -> bool:
    """Whether the label dockping.enable turns a container off."""
    return labels.get(ENABLE_LABEL, "").strip().lower() in ("false", "0", "no", "off")


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
        found[str(name)] = tuple(ips)
    return found


def container_of(inspect: dict[str, Any], icmp_available: bool = False) -> Container:
    """Read a container and its targets from an inspect payload; never raises on odd input."""
    config = _dict(inspect.get("Config"))
    state = _dict(inspect.get("State"))
    labels = {str(k): str(v) for k, v in _dict(config.get("Labels")).items()}
    container_id = str(inspect.get("Id") or "")
    name = str(inspect.get("Name") or "").lstrip("/")
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
                        Target(container_id, ip, port, "tcp", network, name, interval)
                        for port in ports
                    )
                elif icmp_available:
                    targets.append(Target(container_id, ip, None, "icmp", network, name, interval))
        if not ports and not icmp_available:
            note = "exposes no TCP port, and this system allows no unprivileged ICMP echo"
    return Container(
        id=container_id,
        name=name,
        image=str(config.get("Image") or ""),
        running=running,
        paused=paused,
        compose_project=labels.get(COMPOSE_PROJECT, ""),
        compose_service=labels.get(COMPOSE_SERVICE, ""),
        labels=labels,
        networks=networks,
        ports=ports,
        targets=tuple(targets),
        note=note,
    )
