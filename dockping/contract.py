"""The event contract between agents and ingest: POST /api/v1/events.

The names here are binding: other agents are written against them. Fields may be
added; none is renamed or removed.
"""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from datetime import datetime
from typing import Annotated, Literal

import msgspec

# New kinds go at the end: a kind's position is its stored code (probe_errors).
ErrorKind = Literal[
    "refused", "timeout", "unreachable", "reset", "other", "http_status", "tls", "protocol"
]
ERROR_KINDS: tuple[ErrorKind, ...] = (
    "refused",
    "timeout",
    "unreachable",
    "reset",
    "other",
    "http_status",
    "tls",
    "protocol",
)
Protocol = Literal["tcp", "icmp", "http", "https"]
PORTED_PROTOCOLS = frozenset({"tcp", "http", "https"})
# Where a probe was sent from: the agent's own network namespace, or the container's. "none":
# the target was not probed, as no vantage of the agent reaches it (an event that declares it).
Vantage = Literal["host", "container", "none"]
VANTAGES: tuple[Vantage, ...] = ("host", "container", "none")
# What a target of vantage "none" shows (status unknown): the reason is the agent's privileges.
UNPROBED_NOTE = (
    "not reachable from the agent's network: the agent needs CAP_SYS_ADMIN"
    " and the host's PID namespace"
)
ContainerAction = Literal[
    "create",
    "start",
    "restart",
    "stop",
    "die",
    "kill",
    "oom",
    "pause",
    "unpause",
    "destroy",
    "rename",
    "health_status",
    "network_connect",
    "network_disconnect",
]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
# PostgreSQL text cannot hold NUL; refusing it here names the field instead of failing the write.
# Only the strict types at the end of this module carry these patterns: see decode_batch.
NulFreeName = Annotated[Name, msgspec.Meta(pattern="^[^\x00]+$")]
NulFreeText = Annotated[Text, msgspec.Meta(pattern="^[^\x00]*$")]
Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
Count32 = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
Count64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Time = Annotated[datetime, msgspec.Meta(tz=True)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
HttpStatus = Annotated[int, msgspec.Meta(ge=100, le=599)]
# A probe interval or timeout: up to a day, which no monitor waits between two probes.
ProbeMs = Annotated[int, msgspec.Meta(ge=1, le=86_400_000)]
# A container inventory lists at most this many ids (five times the fleet bench/inventory.py
# measures): 3.4 MB of JSON, so that one beside the agent's 4 MB of other records still fits
# ingest.max_body_bytes (8 MB).
MAX_INVENTORY = 50_000
# The store keeps microseconds in an int4: 2,147,483.647 ms (about 36 minutes), far beyond
# any probe timeout. Past it, a broken clock or garbage; refused rather than clamped.
LATENCY_MS_MAX = (2**31 - 1) / 1000
LatencyMs = Annotated[float, msgspec.Meta(ge=0, le=LATENCY_MS_MAX)]
# A text field indexed by the store (a name, a network) must fit a btree row (2,704 bytes)
# beside the others of its index, whatever its characters: 1,024 UTF-8 bytes, not characters.
TEXT_MAX_BYTES = 1024
# Characters that make an agent id look like another one, or like nothing.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


class ContractError(ValueError):
    """An event breaks a rule of the contract that its types alone cannot state."""


def check_bytes(field: str, value: str | None) -> None:
    """ContractError naming the field when its UTF-8 form is longer than TEXT_MAX_BYTES."""
    # Only a text of more than a quarter of the limit in characters can be too long in bytes.
    if value is not None and len(value) > TEXT_MAX_BYTES // 4:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > TEXT_MAX_BYTES:
            raise ContractError(f"{field}: {size} bytes in UTF-8; at most {TEXT_MAX_BYTES}")


def check_agent_id(agent: str) -> None:
    """ContractError when an agent id is blank or holds control or invisible characters."""
    if not agent.strip():
        raise ContractError("agent: must not be blank")
    for char in agent:
        if unicodedata.category(char) in _INVISIBLE:
            raise ContractError(
                f"agent: holds the control or invisible character U+{ord(char):04X}"
            )


class ProbeEvent(msgspec.Struct, tag="probe", tag_field="type", frozen=True, kw_only=True):
    """One probe of one address: its outcome and, when it succeeded, its latency."""

    time: Time
    container_id: Name
    ip: str
    port: Port | None
    ok: bool
    latency_ms: LatencyMs | None = None
    error: ErrorKind | None = None
    protocol: Protocol = "tcp"
    container_name: Text = ""
    network: Text = ""
    http_status: HttpStatus | None = None
    """http and https: the status code of the answer, when one came (also when it failed)."""
    tls_not_after: Time | None = None
    """https: when the server's certificate expires, when the handshake got that far."""
    connect_ms: LatencyMs | None = None
    """http and https: how long the TCP connect took, when it succeeded."""
    vantage: Vantage | None = None
    """Where the probe was sent from; null: not said (an agent from before vantages)."""
    interval_ms: ProbeMs | None = None
    """How often the agent probes this target; with timeout_ms, when its status goes stale."""
    timeout_ms: ProbeMs | None = None
    """The agent's deadline for one probe of this target."""

    def __post_init__(self) -> None:
        canonical_ip(self.ip)
        check_bytes("container_name", self.container_name)
        check_bytes("network", self.network)
        if self.protocol in PORTED_PROTOCOLS and self.port is None:
            raise ContractError(f"port: required for protocol {self.protocol}")
        if self.protocol == "icmp" and self.port is not None:
            raise ContractError("port: must be null for protocol icmp")
        if self.vantage == "none":
            # Not a probe: the declaration of a target that no vantage reaches.
            if self.ok or self.latency_ms is not None or self.error is not None or self.has_detail:
                raise ContractError(
                    "vantage: none declares an unprobed target: ok must be"
                    " false, latency_ms and error null"
                )
            return
        if self.ok:
            if self.latency_ms is None:
                raise ContractError("latency_ms: required when ok is true")
            if self.error is not None:
                raise ContractError("error: must be null when ok is true")
        else:
            if self.latency_ms is not None:
                raise ContractError("latency_ms: must be null when ok is false")
            if self.error is None:
                raise ContractError("error: required when ok is false")
        if self.latency_ms is not None and not math.isfinite(self.latency_ms):
            raise ContractError("latency_ms: must be a finite number")
        # Three comparisons for the usual (TCP) event; the rest only for events with a detail.
        if (
            self.http_status is not None
            or self.tls_not_after is not None
            or self.connect_ms is not None
        ):
            self._check_detail()
        elif self.error == "http_status":
            raise ContractError("http_status: required when error is http_status")

    def _check_detail(self) -> None:
        if self.protocol not in ("http", "https"):
            raise ContractError(
                f"http_status: must be null for protocol {self.protocol}, as tls_not_after and"
                " connect_ms must"
            )
        if self.connect_ms is not None and not math.isfinite(self.connect_ms):
            raise ContractError("connect_ms: must be a finite number")
        if self.error == "http_status" and self.http_status is None:
            raise ContractError("http_status: required when error is http_status")

    @property
    def has_detail(self) -> bool:
        """Whether the event carries an HTTP(S) detail (a status, a certificate, a connect)."""
        return (
            self.http_status is not None
            or self.tls_not_after is not None
            or self.connect_ms is not None
        )


class ContainerEvent(msgspec.Struct, tag="container", tag_field="type", frozen=True, kw_only=True):
    """A change in a container's life: start, stop, die, pause, health, network, ..."""

    time: Time
    container_id: Name
    action: ContainerAction
    name: Text = ""
    image: Text = ""
    exit_code: Int32 | None = None
    compose_project: Text = ""
    compose_service: Text = ""
    health: Text | None = None
    network: Text | None = None
    labels: dict[Text, Text] = msgspec.field(default_factory=dict)
    note: Text | None = None
    """Why the container has no probe (host network, no IP, no port and no ICMP), if so."""

    def __post_init__(self) -> None:
        for field in _CONTAINER_TEXTS:
            check_bytes(field, getattr(self, field))


_CONTAINER_TEXTS = ("name", "image", "compose_project", "compose_service", "health", "network")


class HeartbeatEvent(msgspec.Struct, tag="heartbeat", tag_field="type", frozen=True, kw_only=True):
    """An agent's sign of life, sent every resync."""

    time: Time
    version: Text = ""
    docker_ok: bool = True
    targets: Count32 = 0
    spool_bytes: Count64 = 0
    dropped: Count64 = 0


class InventoryEvent(msgspec.Struct, tag="inventory", tag_field="type", frozen=True, kw_only=True):
    """After a complete resync: every container the engine holds, whatever its state.

    Identified by (agent, time). A container of the agent missing from it, with no probe or
    lifecycle event newer than it, is gone.
    """

    time: Time
    container_ids: Annotated[list[Name], msgspec.Meta(max_length=MAX_INVENTORY)]


Event = ProbeEvent | ContainerEvent | HeartbeatEvent | InventoryEvent


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """The body of POST /api/v1/events."""

    agent: Name
    events: list[Event]

    def __post_init__(self) -> None:
        check_agent_id(self.agent)


class Accepted(msgspec.Struct, frozen=True):
    """The answer to an accepted batch."""

    accepted: int
    duplicates: int


# The same types with every string NUL-free, field for field (tests/test_ingest_fast_paths.py
# puts a NUL in each string field of each type): decode_batch lets them name the first bad
# field of a body that holds a NUL. Subclasses, so the other rules and their order are shared.
class _StrictProbeEvent(ProbeEvent, tag="probe", tag_field="type", frozen=True, kw_only=True):
    container_id: NulFreeName
    container_name: NulFreeText = ""
    network: NulFreeText = ""


class _StrictContainerEvent(
    ContainerEvent, tag="container", tag_field="type", frozen=True, kw_only=True
):
    container_id: NulFreeName
    name: NulFreeText = ""
    image: NulFreeText = ""
    compose_project: NulFreeText = ""
    compose_service: NulFreeText = ""
    health: NulFreeText | None = None
    network: NulFreeText | None = None
    labels: dict[NulFreeText, NulFreeText] = msgspec.field(default_factory=dict)
    note: NulFreeText | None = None


class _StrictHeartbeatEvent(
    HeartbeatEvent, tag="heartbeat", tag_field="type", frozen=True, kw_only=True
):
    version: NulFreeText = ""


class _StrictInventoryEvent(
    InventoryEvent, tag="inventory", tag_field="type", frozen=True, kw_only=True
):
    container_ids: Annotated[list[NulFreeName], msgspec.Meta(max_length=MAX_INVENTORY)]


class _StrictBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Batch with every string field (ip aside: it is parsed) refusing NUL; never returned."""

    agent: NulFreeName
    events: list[
        _StrictProbeEvent | _StrictContainerEvent | _StrictHeartbeatEvent | _StrictInventoryEvent
    ]


_decoder = msgspec.json.Decoder(Batch)
_strict_decoder = msgspec.json.Decoder(_StrictBatch)
_encoder = msgspec.json.Encoder()
_AT = re.compile(r"^(?P<text>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)
_AT_KEY = re.compile(r"^(?P<text>.*) - at `key` in `(?P<path>\$[^`]*)`$", re.DOTALL)
_FIELD_FIRST = re.compile(r"^(?P<field>[a-z_]+): (?P<text>.*)$", re.DOTALL)


class DecodeError(ValueError):
    """A batch that cannot be accepted; `field` is a JSON path such as $.events[3].ip."""

    def __init__(self, detail: str, field: str | None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


def decode_batch(body: bytes) -> Batch:
    """Decode and validate a batch, raising DecodeError that names the first bad field."""
    # JSON carries a NUL only as the escape \u0000. Without one, no string can break the NUL
    # patterns, and the types without them decide the same, three times faster (a regex call
    # per string is most of the strict decoding). With one, the strict types decide, so that the
    # first bad field and its message are the same either way.
    strict = b"\\" in body and b"\\u0000" in body
    try:
        if strict:
            _strict_decoder.decode(body)
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _describe(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"malformed JSON: {exc}", None) from None
    except UnicodeDecodeError as exc:
        raise DecodeError(f"malformed JSON: invalid UTF-8 at byte {exc.start}", None) from None


def encode(value: object) -> bytes:
    """Encode a contract value as JSON."""
    return _encoder.encode(value)


def _describe(message: str) -> DecodeError:
    key = _AT_KEY.match(message)
    if key is not None:
        # A bad key of a mapping (labels): msgspec says "at `key` in `$.events[0].labels`".
        return DecodeError(f"{key.group('text')} (a key)", key.group("path"))
    match = _AT.match(message)
    text, path = (match.group("text"), match.group("path")) if match else (message, None)
    named = _FIELD_FIRST.match(text)
    if named:
        # __post_init__ errors say "ip: ..."; point the path at that field (the batch's own
        # come without a path).
        return DecodeError(text, f"{path or '$'}.{named.group('field')}")
    unknown_tag = re.match(r"^Invalid value '(.*)'$", text)
    if unknown_tag and path is not None and path.endswith(".type"):
        return DecodeError(f"unknown event type {unknown_tag.group(1)!r}", path)
    missing = re.match(r"^Object missing required field `(.*)`$", text)
    if missing:
        return DecodeError(text, f"{path or '$'}.{missing.group(1)}")
    return DecodeError(text, path or "$")


# An agent sends the same few addresses in every batch: parsing each one again would be half
# of the decoding. Bounded, so that a stream of distinct addresses cannot grow it without end.
_CANONICAL_IPS: dict[str, str] = {}
_CANONICAL_IPS_MAX = 65536


def canonical_ip(text: str) -> str:
    """The address in its canonical text form; ContractError if it is none."""
    canonical = _CANONICAL_IPS.get(text)
    if canonical is None:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ContractError(f"ip: {text[:64]!r} is not an IPv4 or IPv6 address") from None
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            # PostgreSQL's inet has no zone id (fe80::1%eth0): the address alone names a target.
            raise ContractError(f"ip: {text[:64]!r} has a zone id, which an address may not carry")
        canonical = str(address)
        if len(_CANONICAL_IPS) >= _CANONICAL_IPS_MAX:
            _CANONICAL_IPS.clear()
        _CANONICAL_IPS[text] = canonical
    return canonical
