"""Targets from Docker's inspect payload: pure, total, and label-aware."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agent.targets import Limits, container_of, parse_ports


def inspect(**changes: Any) -> dict[str, Any]:
    """A running container with two networks and two exposed ports."""
    payload: dict[str, Any] = {
        "Id": "abc123",
        "Name": "/web",
        "Config": {
            "Image": "nginx:1",
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "443/tcp": {}},
            "Labels": {"com.docker.compose.project": "shop"},
        },
        "State": {"Running": True, "Paused": False},
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkSettings": {
            "Networks": {
                "bridge": {"IPAddress": "172.17.0.2", "GlobalIPv6Address": ""},
                "backend": {"IPAddress": "172.20.0.5", "GlobalIPv6Address": "fd00::5"},
            }
        },
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            payload[section][field] = value
        else:
            payload[section] = value
    return payload


def test_every_ip_of_every_network_times_every_tcp_port() -> None:
    """Three IPs (IPv4 and IPv6) times two TCP ports; UDP is not probed."""
    container = container_of(inspect())
    assert sorted((t.network, t.ip, t.port) for t in container.targets) == [
        ("backend", "172.20.0.5", 80),
        ("backend", "172.20.0.5", 443),
        ("backend", "fd00::5", 80),
        ("backend", "fd00::5", 443),
        ("bridge", "172.17.0.2", 80),
        ("bridge", "172.17.0.2", 443),
    ]
    assert container.name == "web"
    assert container.compose_project == "shop"


def test_labels_override_ports_and_can_disable() -> None:
    """dockping.ports replaces the ports; dockping.enable=false skips the container."""
    ports = container_of(inspect(Config__Labels={"dockping.ports": "8080, 9090"}))
    assert {t.port for t in ports.targets} == {8080, 9090}
    off = container_of(inspect(Config__Labels={"dockping.enable": "false"}))
    assert off.targets == ()
    assert "dockping.enable" in off.note


def test_an_interval_label_sets_the_interval() -> None:
    """dockping.interval=5s gives every target a 5 s interval."""
    container = container_of(inspect(Config__Labels={"dockping.interval": "5s"}))
    assert {t.interval for t in container.targets} == {5.0}


def test_host_network_and_no_ip_are_explained() -> None:
    """A container on the host network or without an IP has no targets and a reason."""
    host = container_of(
        inspect(
            HostConfig={"NetworkMode": "host"},
            NetworkSettings={"Networks": {"host": {"IPAddress": ""}}},
        )
    )
    assert host.targets == ()
    assert "host network" in host.note
    none = container_of(inspect(NetworkSettings={"Networks": {"none": {"IPAddress": ""}}}))
    assert none.targets == ()
    assert "no IP" in none.note


def test_no_port_means_icmp_where_allowed_or_a_reason() -> None:
    """Without a port, a container gets an ICMP target, or a note saying why not."""
    bare = inspect(Config__ExposedPorts={})
    with_icmp = container_of(bare, icmp_available=True)
    assert {(t.protocol, t.port) for t in with_icmp.targets} == {("icmp", None)}
    without = container_of(bare, icmp_available=False)
    assert without.targets == ()
    assert "ICMP" in without.note


def test_a_bad_ports_label_is_explained_and_falls_back() -> None:
    """dockping.ports=http is a note, and the exposed ports are probed."""
    container = container_of(inspect(Config__Labels={"dockping.ports": "http"}))
    assert {t.port for t in container.targets} == {80, 443}
    assert "dockping.ports" in container.note


def test_parse_ports() -> None:
    """A port list is sorted, de-duplicated, and checked."""
    assert parse_ports("443,80,80/tcp") == (80, 443)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "Id",
                    "Name",
                    "Config",
                    "State",
                    "Running",
                    "NetworkSettings",
                    "Networks",
                    "IPAddress",
                    "ExposedPorts",
                    "Labels",
                    "HostConfig",
                    "80/tcp",
                    "bridge",
                    "GlobalIPv6Address",
                    "PortBindings",
                    "Ports",
                    "Image",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@given(
    st.dictionaries(
        st.sampled_from(["Id", "Name", "Config", "State", "NetworkSettings", "HostConfig"]),
        json_values,
    )
)
def test_any_payload_gives_a_container_and_never_raises(payload: dict[str, Any]) -> None:
    """Odd inspect payloads (missing, wrong types) never crash target extraction."""
    container = container_of(payload)
    for target in container.targets:
        assert target.port is None or 1 <= target.port <= 65535


network_names = st.text(alphabet="abcdefghij-_0123456789", min_size=1, max_size=12)
endpoints = st.tuples(
    st.none() | st.ip_addresses(v=4).map(str), st.none() | st.ip_addresses(v=6).map(str)
)
port_specs = st.lists(
    st.tuples(st.integers(1, 65535), st.sampled_from(["tcp", "udp", "sctp"])), max_size=6
)


@given(st.dictionaries(network_names, endpoints, max_size=4), port_specs, port_specs, st.booleans())
def test_targets_are_every_ip_times_every_exposed_or_published_tcp_port(
    networks: dict[str, tuple[str | None, str | None]],
    exposed: list[tuple[int, str]],
    published: list[tuple[int, str]],
    icmp: bool,
) -> None:
    """For any networks and ports: IPs (v4 and v6) times TCP ports, else ICMP per IP where allowed."""
    payload = inspect(
        Config__ExposedPorts={f"{p}/{proto}": {} for p, proto in exposed},
        HostConfig={
            "NetworkMode": "bridge",
            "PortBindings": {f"{p}/{proto}": [] for p, proto in published},
        },
        NetworkSettings={
            "Networks": {
                name: {"IPAddress": v4 or "", "GlobalIPv6Address": v6 or ""}
                for name, (v4, v6) in networks.items()
            }
        },
    )
    container = container_of(payload, icmp_available=icmp)
    tcp = {p for p, proto in [*exposed, *published] if proto == "tcp"}
    ips = {(name, ip) for name, pair in networks.items() for ip in pair if ip}
    if tcp:
        expected = {(name, ip, port, "tcp") for name, ip in ips for port in tcp}
    elif icmp:
        expected = {(name, ip, None, "icmp") for name, ip in ips}
    else:
        expected = set()
    got = [(t.network, t.ip, t.port, t.protocol) for t in container.targets]
    assert len(got) == len(set(got))  # no target twice
    assert set(got) == expected
    assert bool(container.note) == (not expected or (not tcp and not icmp))


@given(st.sampled_from(["5s", "250ms", "1m", "0s", "-1s", "soon", ""]))
def test_an_interval_label_is_used_or_explained(text: str) -> None:
    """A valid positive dockping.interval is used; anything else is explained and ignored."""
    # A floor below every interval here: clamping is tests/test_hostile_caps.py's.
    labels = {"dockping.interval": text}
    container = container_of(inspect(Config__Labels=labels), limits=Limits(min_interval=0.1))
    intervals = {t.interval for t in container.targets}
    if text in ("5s", "250ms", "1m"):
        assert intervals == {{"5s": 5.0, "250ms": 0.25, "1m": 60.0}[text]}
        assert container.note == ""
    else:
        assert intervals == {None}
        assert "dockping.interval" in container.note
