"""Follow Docker: the event stream applied as it arrives, and a full re-list every resync.

Every event is checked against the container's inspect payload, the authority on what
runs now, so that an event replayed late or out of order never undoes a newer state.
The stream is reconnected with capped exponential backoff and jitter, replaying from
the last event seen; each reconnect is followed by a resync at once.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import aiodocker
import anyio

from agent import docker_api
from agent.docker_api import DockerUnavailable, NotFound
from agent.targets import (
    DEFAULT_LIMITS,
    Container,
    Limits,
    container_of,
    disabled,
    docker_timestamp,
    project_of,
    service_of,
)
from agent.untrusted import fit, fit_labels, fit_name
from dockping import logs
from dockping.contract import ContainerAction, ContainerEvent
from dockping.settings import HttpRule

log = logs.get("dockping.agent.discovery")

# Lifecycle actions taken from the stream as they are; health and networks have their own.
CONTAINER_ACTIONS = frozenset(get_args(ContainerAction)) - {
    "health_status",
    "network_connect",
    "network_disconnect",
}
BACKOFF_FIRST = 0.25
BACKOFF_CAP = 10.0
OnContainer = Callable[[str, Container | None], None]
OnLifecycle = Callable[[ContainerEvent], None]
# After each complete resync: when, and the ids of every container held (running or paused).
OnInventory = Callable[[datetime, list[str]], None]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def docker_time(event: dict[str, Any]) -> datetime:
    """The time of a Docker event, to the microsecond."""
    nanos = event.get("timeNano")
    if isinstance(nanos, int) and not isinstance(nanos, bool) and nanos > 0:
        return _EPOCH + timedelta(microseconds=nanos // 1000)  # exact, unlike a float
    seconds = event.get("time")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        return datetime.fromtimestamp(seconds, UTC)
    return datetime.now(UTC)


def lifecycle_event(
    action: str,
    container: Container,
    when: datetime,
    exit_code: int | None = None,
    network: str | None = None,
    health: str | None = None,
) -> ContainerEvent:
    """A container event in the contract's terms."""
    return ContainerEvent(
        time=when,
        container_id=fit_name(container.id),
        action=action,  # type: ignore[arg-type]
        name=fit(container.name),
        image=fit(container.image),
        exit_code=exit_code,
        compose_project=fit(container.compose_project),
        compose_service=fit(container.compose_service),
        network=fit(network) if network is not None else None,
        health=fit(health) if health is not None else None,
        note=(fit(container.note) or None) if not container.targets else None,
        labels=_labels_for(action, container),
    )


# Labels ride along where a container (re)appears, not on every event: they can be many.
_LABELLED_ACTIONS = frozenset({"create", "start", "restart", "rename"})


def _labels_for(action: str, container: Container) -> dict[str, str]:
    if action not in _LABELLED_ACTIONS:
        return {}
    return {
        key[:1024]: value[:1024]
        for key, value in sorted(container.labels.items())[:200]
        if "\x00" not in key and "\x00" not in value
    }


def _from_attributes(container_id: str, attributes: dict[str, Any]) -> Container:
    """What a Docker event says of a container, for one we hold nothing about."""
    labels = fit_labels(attributes)
    return Container(
        id=fit_name(container_id),
        name=labels.get("name", ""),
        image=labels.get("image", ""),
        running=False,
        paused=False,
        compose_project=project_of(labels),
        compose_service=service_of(labels),
        labels=labels,
        networks={},
        ports=(),
        targets=(),
    )


def _exit_code(attributes: dict[str, Any]) -> int | None:
    try:
        return int(attributes["exitCode"])
    except (KeyError, TypeError, ValueError):
        return None


def _fingerprint(item: dict[str, Any]) -> str:
    """What of a listed container decides its targets: unchanged means no inspect needed."""
    networks = (item.get("NetworkSettings") or {}).get("Networks") or {}
    return json.dumps(
        [
            item.get("State"),
            _listed_health(item.get("Status")),
            item.get("Names"),
            item.get("Labels"),
            item.get("Ports"),
            (item.get("HostConfig") or {}).get("NetworkMode"),
            {
                name: [(n or {}).get("IPAddress"), (n or {}).get("GlobalIPv6Address")]
                for name, n in networks.items()
            }
            if isinstance(networks, dict)
            else None,
        ],
        sort_keys=True,
        default=str,
    )


def _listed_health(status: object) -> str | None:
    """The health in a listed container's Status ("Up 2 minutes (unhealthy)"), if any."""
    text = str(status or "")
    for health in ("unhealthy", "healthy", "starting"):
        if f"({health})" in text or f"(health: {health})" in text:
            return health
    return None


def _same(a: Container, b: Container) -> bool:
    """Whether the scheduler must hear of b: its name, PID or a target (with details) changed."""
    # A new PID is a new namespace to probe from (a restart whose events were missed).
    return (
        a.name == b.name
        and a.pid == b.pid
        and [dataclasses.astuple(t) for t in a.targets]
        == [dataclasses.astuple(t) for t in b.targets]
    )


@dataclass(frozen=True)
class ResyncDiff:
    """What a resync changed."""

    added: int = 0
    changed: int = 0
    removed: int = 0


class Discovery:
    """Holds the running containers and tells the agent about every change."""

    def __init__(
        self,
        docker_url: str,
        resync_interval: float,
        icmp: bool,
        on_container: OnContainer,
        on_lifecycle: OnLifecycle,
        call_timeout: float = docker_api.CALL_TIMEOUT,
        http_rules: Sequence[HttpRule] = (),
        on_inventory: OnInventory = lambda when, ids: None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.docker_url = docker_url
        self.limits = limits
        self.resync_interval = resync_interval
        self.icmp = icmp
        self.on_container = on_container
        self.on_lifecycle = on_lifecycle
        self.on_inventory = on_inventory
        self.call_timeout = call_timeout
        self.http_rules = tuple(http_rules)
        self.containers: dict[str, Container] = {}
        self._fingerprints: dict[str, str] = {}
        self._reachable: bool | None = None
        self._since: int | None = None
        self._lock = anyio.Lock()
        self._backoff = BACKOFF_FIRST
        self.resyncs = 0
        """Resyncs done, for tests and the heartbeat's readers."""
        self.resynced = anyio.Event()
        """Set once the first resync is done."""
        self.last_diff = ResyncDiff()

    @property
    def docker_ok(self) -> bool:
        """Whether the event stream is connected and the last call answered."""
        return bool(self._reachable)

    async def run(self) -> None:
        """Follow Docker until cancelled, reconnecting whenever it drops."""
        while True:
            try:
                async with docker_api.client_for(self.docker_url, self.call_timeout) as client:
                    await self._session(client)
            except* DockerUnavailable as group:
                self._set_ok(False, str(group.exceptions[0]))
            except* Exception as group:
                # An answer of a shape we did not foresee: never the end of the agent.
                error = group.exceptions[0]
                log.error("docker.session.failed", error=f"{type(error).__name__}: {error}")
                self._set_ok(False, f"{type(error).__name__}: {error}")
            delay = self._backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
            log.debug("docker.stream.reconnect", delay_s=round(delay, 3))
            await anyio.sleep(delay)
            self._backoff = min(self._backoff * 2, BACKOFF_CAP)

    async def _session(self, client: aiodocker.Docker) -> None:
        since = None
        if self._since is not None:
            # Replay what happened while we were away; the resync covers what Docker forgot.
            since = f"{self._since // 1_000_000_000}.{self._since % 1_000_000_000:09d}"
        async with docker_api.event_stream(client, since) as events:
            # The stream is open before the resync, so that nothing falls between the two.
            await self.resync(client)
            self._set_ok(True)
            self._backoff = BACKOFF_FIRST
            async with anyio.create_task_group() as group:
                group.start_soon(self._resync_loop, client)
                async for event in events:
                    if event is None:
                        log.warning("docker.event.garbage")
                        continue
                    async with self._lock:
                        await self._apply_safely(client, event)

    async def _resync_loop(self, client: aiodocker.Docker) -> None:
        while True:
            await anyio.sleep(self.resync_interval)
            await self.resync(client)

    async def _apply_safely(self, client: aiodocker.Docker, event: dict[str, Any]) -> None:
        try:
            await self.apply(client, event)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # An event of a shape we do not know is skipped; the resync heals what it meant.
            log.warning("docker.event.skipped", error=f"{type(exc).__name__}: {exc}")

    async def apply(self, client: aiodocker.Docker, event: dict[str, Any]) -> None:
        """Apply one Docker event: refresh the container it names and emit its lifecycle event."""
        nanos = event.get("timeNano")
        if isinstance(nanos, int) and not isinstance(nanos, bool):
            self._since = max(self._since or 0, nanos)
        kind = event.get("Type")
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        if not isinstance(attributes, dict):
            attributes = {}
        when = docker_time(event)
        if kind == "network" and action in ("connect", "disconnect"):
            container_id = str(attributes.get("container") or "")
            if container_id:
                container = await self._refresh(client, container_id)
                known = container or self.containers.get(container_id)
                if known is not None and not disabled(known.labels):
                    self.on_lifecycle(
                        lifecycle_event(
                            f"network_{action}",
                            known,
                            when,
                            network=str(attributes.get("name") or ""),
                        )
                    )
            return
        if kind != "container":
            return
        container_id = str(actor.get("ID") or event.get("id") or "")
        if not container_id:
            return
        known = self.containers.get(container_id) or _from_attributes(container_id, attributes)
        if disabled(known.labels):
            self._forget(container_id)
            return
        if action.startswith("health_status"):
            health = action.partition(":")[2].strip() or None
            if container_id in self.containers:
                # Held as the stream says, so that the next inspect repeats no event.
                self.containers[container_id] = dataclasses.replace(known, health=health)
            self.on_lifecycle(lifecycle_event("health_status", known, when, health=health))
            return
        if action not in CONTAINER_ACTIONS:
            return
        if action == "destroy":
            self._forget(container_id)
            self._fingerprints.pop(container_id, None)
            container = None
        else:
            container = await self._refresh(client, container_id)
        exit_code = _exit_code(attributes) if action in ("die", "oom") else None
        self.on_lifecycle(lifecycle_event(action, container or known, when, exit_code=exit_code))

    async def _refresh(self, client: aiodocker.Docker, container_id: str) -> Container | None:
        try:
            inspect = await docker_api.inspect_container(client, container_id)
        except NotFound:
            self._forget(container_id)
            return None
        container = container_of(inspect, self.icmp, self.http_rules, self.limits)
        self._keep(container)
        return container

    def _keep(self, container: Container) -> None:
        if not container.running:
            self._forget(container.id)
            return
        previous = self.containers.get(container.id)
        self.containers[container.id] = container
        if container.health != (previous.health if previous else None) and not disabled(
            container.labels
        ):
            # An inspect that finds a health we did not hear of (a missed event, a new agent).
            when = container.health_at or datetime.now(UTC)
            self.on_lifecycle(
                lifecycle_event("health_status", container, when, health=container.health)
            )
        if previous is None or not _same(previous, container):
            if container.note and not container.targets:
                log.info("container.no_probe", container=container.name, reason=container.note)
            self.on_container(container.id, container)

    def _forget(self, container_id: str) -> None:
        if self.containers.pop(container_id, None) is not None:
            self.on_container(container_id, None)

    async def resync(self, client: aiodocker.Docker) -> ResyncDiff:
        """List every running container and apply the difference with what we hold."""
        async with self._lock:
            listed = await docker_api.list_containers(client)
            seen: set[str] = set()
            added = changed = 0
            for item in listed:
                container_id = str(item.get("Id") or "")
                if not container_id:
                    continue
                seen.add(container_id)
                fingerprint = _fingerprint(item)
                if (
                    container_id in self.containers
                    and self._fingerprints.get(container_id) == fingerprint
                ):
                    continue  # unchanged since we last inspected it
                try:
                    inspect = await docker_api.inspect_container(client, container_id)
                except NotFound:
                    continue  # removed between the list and the inspect
                self._fingerprints[container_id] = fingerprint
                container = container_of(inspect, self.icmp, self.http_rules, self.limits)
                previous = self.containers.get(container_id)
                if previous is None and container.running:
                    added += 1
                    if not disabled(container.labels):
                        started = docker_timestamp((inspect.get("State") or {}).get("StartedAt"))
                        # The start time is the container's own, so that a restarted agent sends
                        # the same event again and ingest stores it once.
                        self.on_lifecycle(
                            lifecycle_event("start", container, started or datetime.now(UTC))
                        )
                elif previous is not None and not _same(previous, container):
                    changed += 1
                self._keep(container)
            gone = [cid for cid in self.containers if cid not in seen]
            for container_id in gone:
                known = self.containers[container_id]
                self._forget(container_id)
                if not disabled(known.labels):
                    self.on_lifecycle(lifecycle_event("stop", known, datetime.now(UTC)))
            for container_id in [cid for cid in self._fingerprints if cid not in seen]:
                del self._fingerprints[container_id]
            self.resyncs += 1
            self.resynced.set()
            self.on_inventory(datetime.now(UTC), sorted(self.containers))
            self.last_diff = ResyncDiff(added, changed, len(gone))
            (log.info if added or changed or gone else log.debug)(
                "docker.resync",
                added=added,
                changed=changed,
                removed=len(gone),
                running=len(self.containers),
            )
            return self.last_diff

    def _set_ok(self, ok: bool, error: str = "") -> None:
        if ok != self._reachable:
            if ok:
                log.info("docker.connected", url=self.docker_url)
            else:
                log.warning("docker.unreachable", url=self.docker_url, error=error)
        elif not ok:
            log.debug("docker.still_unreachable", error=error)
        self._reachable = ok
