"""One frozen settings tree, loaded once from settings.toml with environment overrides."""

from __future__ import annotations

import itertools
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from dockping.http_check import parse_path, parse_statuses

ENV_PREFIX = "DOCKPING_"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


class SettingsError(Exception):
    """The settings file or an environment override is invalid; the message names the key."""


class Duration(float):
    """A length of time in seconds, written in settings as "250ms", "20s", "5m" or "30d"."""

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse "20s"-style text; raise ValueError naming the accepted units otherwise."""
        match = _DURATION.match(text)
        if match is None:
            raise ValueError(
                f"invalid duration {text!r}: expected a number and a unit (us, ms, s, m, h, d, w),"
                ' like "20s" or "30d"'
            )
        return cls(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])

    def __repr__(self) -> str:
        return f"Duration({format_duration(self)!r})"


def format_duration(seconds: float) -> str:
    """Write seconds back in the shortest exact settings form."""
    for unit in ("w", "d", "h", "m", "s", "ms"):
        count = seconds / _UNIT_SECONDS[unit]
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{round(seconds * 1e6)}us"


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class LogSettings(_Section, frozen=True):
    """How the services log."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """debug, info, warning or error."""
    format: Literal["console", "json"] = "console"
    """console (for a terminal) or json (for containers and log shippers)."""


class DatabaseSettings(_Section, frozen=True):
    """Where the event store lives and how long it keeps events."""

    url: str = ""
    """Empty: the embedded PostgreSQL under data_dir/pg."""
    backend: Literal["auto", "postgres", "timescaledb"] = "auto"
    """At the first migration: auto (TimescaleDB where it can be had), postgres or timescaledb."""
    pool_size: int = 8
    """Connections per service process."""
    retention: Duration = Duration(30 * 86400)
    """Events older than this are dropped, a whole partition or chunk at a time."""
    compress_after: Duration = Duration(7 * 86400)
    """TimescaleDB only: chunks older than this are compressed."""
    partition_interval: Duration = Duration(86400)
    """The time span of one partition (plain PostgreSQL) or chunk (TimescaleDB): whole hours."""
    rollup_interval: Duration = Duration(10)
    """Plain PostgreSQL: how often ingest recomputes the latency rollups of ended minutes."""
    request_timeout: Duration = Duration(1.5)
    """Query, notify and /healthz: a database call slower than this (a frozen server) is a 503."""


class IngestSettings(_Section, frozen=True):
    """The ingest service: POST /api/v1/events."""

    host: str = "127.0.0.1"
    """Address ingest listens on."""
    port: int = 8080
    """Port ingest listens on."""
    token: str = ""
    """Shared agent token. Empty: generated once and kept in data_dir/token."""
    agent_tokens: dict[str, str] = msgspec.field(default_factory=dict)
    """Per-agent tokens (agent id -> token). An agent listed here must use its own."""
    max_body_bytes: int = 8 * 1024 * 1024
    """Largest request body accepted (413 above)."""
    max_events: int = 10_000
    """Most events in one batch (413 above)."""
    max_future_skew: Duration = Duration(300)
    """Events further ahead than this are refused (422)."""
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    """Addresses (or CIDRs) of reverse proxies whose X-Forwarded-For is believed; empty: none."""


class QuerySettings(_Section, frozen=True):
    """The query service: /addresses, /api/v1, /metrics."""

    host: str = "127.0.0.1"
    """Address query listens on."""
    port: int = 8081
    """Port query listens on."""
    token: str = ""
    """Empty: no read token. Set it when the service is reachable beyond loopback."""
    max_points: int = 5_000
    """Most points one latency request may return (400 above)."""
    stale_after: Duration = Duration(40)
    """A target not probed for its interval plus timeout plus this long is `stale`, not `up`."""
    status_detail: bool = False
    """Whether /status/{project} pages show container ids and IP addresses."""
    public_status: list[str] = msgspec.field(default_factory=list)
    """Projects whose /status page and badges need no read token."""
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    """Addresses (or CIDRs) of reverse proxies whose X-Forwarded-For is believed; empty: none."""
    session_lifetime: Duration = Duration(12 * 3600)
    """A login session (the cookie of /login) ends this long after it began."""


class HttpRule(_Section, frozen=True):
    """Probe the TCP ports of matching images with HTTP(S) instead of a bare connect."""

    image: str
    """Glob on the container's image ("nginx*"); the first matching rule applies."""
    path: str = "/"
    """The path to GET; the labels dockping.http and dockping.https override it."""
    tls: bool = False
    """true: https (the certificate is not verified unless tls_verify is)."""
    port: int = 0
    """Only this port; 0: every TCP port probed."""
    status: str = "200-399"
    """Accepted status codes: a comma list of codes and ranges."""
    tls_verify: bool = False
    """Verify the certificate chain against the system's CAs."""

    def __post_init__(self) -> None:
        if not self.image:
            raise ValueError("image: must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} is out of range (0..65535)")
        for name, parse in (("path", parse_path), ("status", parse_statuses)):
            try:
                parse(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None


class AgentSettings(_Section, frozen=True):
    """The agent: Docker discovery, probes, shipping."""

    id: str = ""
    """Empty: the hostname."""
    docker_url: str = ""
    """Empty: DOCKER_HOST, or else unix:///var/run/docker.sock."""
    ingest_url: str = ""
    """Where the agent sends its events. Empty: ingest.host and ingest.port (0.0.0.0 as 127.0.0.1)."""
    token: str = ""
    """Empty: the token generated in data_dir/token (the single-host default)."""
    resync_interval: Duration = Duration(20)
    """How often Docker is re-listed to heal missed events; also the heartbeat interval."""
    probe_interval: Duration = Duration(20)
    """How often each target is probed (the label dockping.interval overrides it)."""
    probe_timeout: Duration = Duration(2)
    """A probe slower than this fails with `timeout`."""
    concurrency: int = 256
    """Most probes in flight at once."""
    inspect_concurrency: Annotated[int, msgspec.Meta(ge=1)] = 16
    """Most Docker inspects in flight at once, for events and resyncs together."""
    batch_interval: Duration = Duration(1)
    """Steady-state results are sent at least this often."""
    batch_max_events: int = 1000
    """A batch is sent sooner once it holds this many events."""
    spool_max_bytes: int = 256 * 1024 * 1024
    """Disk the spool may use while ingest is unreachable; past it the oldest events go."""
    shutdown_timeout: Duration = Duration(10)
    """On SIGTERM, how long to keep sending before spooling the rest and exiting."""
    identity_log: str = ""
    """Empty: off. A file to which the identity of every event spooled (or dropped) is appended."""
    http: list[HttpRule] = msgspec.field(default_factory=list)
    """HTTP(S) probe rules by image ([[agent.http]] tables); labels override them."""
    enter_namespaces: bool = True
    """Addresses the agent's network does not reach directly are probed from inside the container's network namespace; false: not probed."""
    min_interval: Duration = Duration(1)
    """The shortest probe interval a dockping.interval label may ask; shorter ones are raised to it."""
    max_targets_per_container: int = 64
    """Most targets one container may have (ports x addresses); past it the rest are not probed."""


class NotifyRule(_Section, frozen=True):
    """One notification rule: which targets, when they count as down, and where to tell."""

    name: str
    """The rule's name; a container labelled dockping.notify=NAME goes to this rule only."""
    agent: str = ""
    """Glob on the agent id; empty matches any."""
    project: str = ""
    """Glob on the compose project; empty matches any."""
    container: str = ""
    """Glob on the container name; empty matches any."""
    image: str = ""
    """Glob on the image; empty matches any."""
    label: str = ""
    """Glob on a container label as key=value (labels as the store has them); empty matches any."""
    down_after: int | str = 3
    """Consecutive failures (a number), or a duration ("1m") failing, before a target is down."""
    repeat: Duration = Duration(0)
    """How often to remind while a target stays down; 0: never."""
    urls: list[str] = msgspec.field(default_factory=list)
    """Apprise URLs to notify (slack://, tgram://, ntfy://, json://, ...)."""
    tls_expires_within: Duration = Duration(0)
    """A probe whose certificate expires within this ("14d") counts as failing; 0: off."""
    unhealthy: bool = False
    """true: while Docker reports the container unhealthy, its probes count as failing."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: must not be empty")
        if isinstance(self.down_after, int) and not isinstance(self.down_after, bool):
            if self.down_after < 1:
                raise ValueError("down_after: must be at least 1")
        elif isinstance(self.down_after, str) and not self.down_after.strip().isdigit():
            try:
                seconds = Duration.parse(self.down_after)
            except ValueError as exc:
                raise ValueError(f"down_after: {exc}") from None
            if seconds <= 0:
                raise ValueError("down_after: must be longer than zero")
        elif isinstance(self.down_after, str) and int(self.down_after) < 1:
            raise ValueError("down_after: must be at least 1")


class NotifySettings(_Section, frozen=True):
    """The notifier: rules, delivery and the silences API."""

    host: str = "127.0.0.1"
    """Address the silences API listens on."""
    port: int = 8082
    """Port the silences API listens on."""
    token: str = ""
    """Bearer token of the silences API. Empty: generated once in data_dir/notify-token (never the ingest token)."""
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    """Addresses (or CIDRs) of reverse proxies whose X-Forwarded-For is believed; empty: none."""
    public_url: str = ""
    """Base URL of the query service in messages. Empty: http://query.host:query.port."""
    rules: list[NotifyRule] = msgspec.field(default_factory=list)
    """Notification rules ([[notify.rules]] tables); every matching rule applies."""
    digest_threshold: int = 10
    """This many changes of one kind at once on one channel go out as one digest."""
    digest_wait: Duration = Duration(2)
    """Messages wait this long so that changes arriving together make one digest."""
    flap_changes: int = 4
    """More status changes than this within flap_window: reported once as flapping."""
    flap_window: Duration = Duration(600)
    """The flapping window; a flapping target settles once stable this long."""
    agent_silent_after: int = 3
    """An agent without a heartbeat for this many resync intervals is silent."""
    retry_backoff: Duration = Duration(5)
    """First retry delay of a failed delivery; it doubles each attempt."""
    retry_max_delay: Duration = Duration(600)
    """Longest delay between two delivery attempts."""
    max_attempts: int = 12
    """Attempts before a delivery is given up (and stored as dropped)."""
    check_interval: Duration = Duration(5)
    """How often agents, due retries and a catch-up of every target are checked."""
    max_catch_up: Duration = Duration(3600)
    """A target first seen is followed from this far back, not from its first event."""


class Settings(_Section, frozen=True):
    """The whole settings tree."""

    data_dir: str = ".data"
    """The embedded PostgreSQL, the agent's spool and the generated token live here."""
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    ingest: IngestSettings = msgspec.field(default_factory=IngestSettings)
    query: QuerySettings = msgspec.field(default_factory=QuerySettings)
    agent: AgentSettings = msgspec.field(default_factory=AgentSettings)
    notify: NotifySettings = msgspec.field(default_factory=NotifySettings)

    @property
    def data_path(self) -> Path:
        """data_dir as an absolute path."""
        return Path(self.data_dir).expanduser().resolve()


_SECTIONS: dict[str, type[_Section]] = {
    field.name: field.type for field in msgspec.structs.fields(Settings) if field.name != "data_dir"
}
_RANGES: dict[str, tuple[int, int]] = {
    "ingest.port": (1, 65535),
    "query.port": (1, 65535),
    "notify.port": (1, 65535),
    "notify.digest_threshold": (2, 1_000_000),
    "notify.flap_changes": (1, 1000),
    "notify.agent_silent_after": (1, 1000),
    "notify.max_attempts": (1, 1000),
    "agent.concurrency": (1, 100_000),
    "agent.batch_max_events": (1, 100_000),
    "agent.max_targets_per_container": (1, 1_000_000),
    "agent.spool_max_bytes": (1024, 1 << 40),
    "ingest.max_events": (1, 1_000_000),
    "ingest.max_body_bytes": (1024, 1 << 31),
    "query.max_points": (10, 1_000_000),
    "database.pool_size": (1, 1000),
}


def _decode_hook(kind: type, value: Any) -> Any:
    if kind is Duration:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return Duration(value)
        if isinstance(value, str):
            return Duration.parse(value)
        raise ValueError(f'invalid duration {value!r}: expected a string like "20s"')
    raise NotImplementedError


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key == "data_dir":
            data["data_dir"] = value
            continue
        if "__" not in key:
            continue  # DOCKPING_* variables without a section belong to tests and tools
        section, _, field = key.partition("__")
        if section not in _SECTIONS:
            raise SettingsError(f"{name}: unknown settings section {section!r}")
        if field not in _SECTIONS[section].__struct_fields__:
            raise SettingsError(f"{name}: unknown key {section}.{field}")
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise SettingsError(f"{section}: expected a table")
        data[section][field] = _env_value(value)


def _env_value(value: str) -> Any:
    # Tables (agent_tokens) and lists (trusted_proxies) can be given as inline TOML:
    # {a = "x"}, ["10.0.0.1"].
    if value.startswith(("{", "[")):
        try:
            return tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            return value
    return value


def _check(settings: Settings) -> None:
    for dotted, (low, high) in _RANGES.items():
        section, _, field = dotted.partition(".")
        value = getattr(getattr(settings, section), field)
        if not low <= value <= high:
            raise SettingsError(f"{dotted}: {value} is out of range ({low}..{high})")
    for dotted in (
        "agent.probe_interval",
        "agent.resync_interval",
        "agent.probe_timeout",
        "agent.batch_interval",
        "query.session_lifetime",
        "agent.min_interval",
        "database.request_timeout",
        "database.retention",
        "database.partition_interval",
        "database.rollup_interval",
        "notify.flap_window",
        "notify.retry_backoff",
        "notify.check_interval",
    ):
        section, _, field = dotted.partition(".")
        if getattr(getattr(settings, section), field) <= 0:
            raise SettingsError(f"{dotted}: must be longer than zero")
    if settings.notify.token and settings.notify.token == settings.ingest.token:
        raise SettingsError("notify.token: must differ from ingest.token")
    if settings.database.partition_interval < 3600:
        raise SettingsError("database.partition_interval: must be at least 1h")
    if settings.database.partition_interval % 3600:
        # Hourly rollup rows must fall in the partition of their hour's events.
        raise SettingsError("database.partition_interval: must be a whole number of hours")


def load(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from a TOML file (optional) and DOCKPING_* environment overrides."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"{path}: settings file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{path}: cannot read settings: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    _apply_env(data, environ)
    try:
        settings = msgspec.convert(data, Settings, strict=False, dec_hook=_decode_hook)
    except msgspec.ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    _check(settings)
    return _with_agent_ingest_url(settings)


def _with_agent_ingest_url(settings: Settings) -> Settings:
    """agent.ingest_url left empty follows ingest's own address (`dockping up`, one host)."""
    if settings.agent.ingest_url:
        return settings
    host = settings.ingest.host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{settings.ingest.port}"
    agent = msgspec.structs.replace(settings.agent, ingest_url=url)
    return msgspec.structs.replace(settings, agent=agent)


def _describe(exc: msgspec.ValidationError) -> str:
    """Turn msgspec's "... - at `$.agent.port`" into "agent.port: ..."."""
    message = str(exc)
    match = re.match(r"^(.*) - at `\$\.?(.*)`$", message)
    if match is None:
        unknown = re.match(r"^Object contains unknown field `(.*)`$", message)
        if unknown:
            return f"{unknown.group(1)}: unknown key"
        return message
    text, where = match.groups()
    unknown = re.match(r"^Object contains unknown field `(.*)`$", text)
    if unknown:
        return f"{where}.{unknown.group(1)}: unknown key"
    return f"{where}: {text}"


def describe_all() -> list[tuple[str, str, str, str]]:
    """Every settings key as (key, environment variable, default, description), for the README."""
    rows: list[tuple[str, str, str, str]] = [
        ("data_dir", "DOCKPING_DATA_DIR", '".data"', _field_docs(Settings)["data_dir"])
    ]
    defaults = Settings()
    for section, kind in _SECTIONS.items():
        docs = _field_docs(kind)
        for field in kind.__struct_fields__:
            value = getattr(getattr(defaults, section), field)
            if isinstance(value, Duration):
                shown = f'"{format_duration(value)}"'
            elif isinstance(value, str):
                shown = f'"{value}"'
            elif isinstance(value, dict):
                shown = "{}"
            else:
                shown = str(value)
            rows.append(
                (
                    f"{section}.{field}",
                    f"DOCKPING_{section.upper()}__{field.upper()}",
                    shown,
                    docs.get(field, ""),
                )
            )
    return rows


def _field_docs(kind: type) -> dict[str, str]:
    """Read the string literal that follows each field in the class body."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(kind))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for current, following in itertools.pairwise(body):
        if (
            isinstance(current, ast.AnnAssign)
            and isinstance(current.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[current.target.id] = following.value.value
    return docs
