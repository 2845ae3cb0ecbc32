"""Follow Docker (or Podman): the event stream applied as it arrives, and a re-list every resync.

Every event is checked against the container's inspect payload, the authority on what
runs now, so that an event replayed late or out of order never undoes a newer state.
Containers are applied concurrently, each one's events in order. The stream is
reconnected with capped exponential backoff and jitter, replaying from the last event
seen; each reconnect asks for a resync at once, and the resync runs on its own schedule
whatever the stream does. What a resync finds without an event is emitted as one.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
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
    Target,
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
# After each complete resync: when, and the ids of every container the engine holds.
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


@dataclass(frozen=True)
class _Event:
    """One stream event about one container, as read from the stream."""

    action: str
    """A contract action (network events as network_connect, network_disconnect)."""
    container_id: str
    attributes: dict[str, Any]
    when: datetime
    network: str | None = None
    health: str | None = None

    @property
    def needs_inspect(self) -> bool:
        """Whether what the event means must be read from an inspect."""
        return self.action not in ("health_status", "destroy")


# The listed states whose containers run (and are probed): the rest are held by the engine
# only, and named by the inventory.
_RUNS = frozenset({"running", "paused"})

# Podman names a container's removal `remove`, where Docker says `destroy`.
_SYNONYMS = {"remove": "destroy"}


def _parse(event: dict[str, Any]) -> _Event | str | None:
    """The stream event in our terms; the name of an action we do not handle; None if not ours."""
    kind = event.get("Type")
    action = str(event.get("Action") or event.get("status") or "")
    actor = event.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    if not isinstance(attributes, dict):
        attributes = {}
    when = docker_time(event)
    if kind == "network" and action in ("connect", "disconnect"):
        container_id = attributes.get("container")
        network: str | None = str(attributes.get("name") or "")
        if not container_id:
            # Podman's shape: the actor is the container, and no attribute names the
            # network (its `name` is the container's); the inspect's difference says which.
            container_id, network = actor.get("ID") or event.get("id"), None
        if not isinstance(container_id, str) or not container_id:
            return None
        return _Event(f"network_{action}", container_id, attributes, when, network)
    if kind != "container":
        return f"{kind}.{action.partition(':')[0]}" if isinstance(kind, str) else None
    container_id = actor.get("ID") or event.get("id") or ""
    if not isinstance(container_id, str) or not container_id:
        return None
    if action.startswith("health_status"):
        health = action.partition(":")[2].strip() or None
        return _Event("health_status", container_id, attributes, when, health=health)
    action = _SYNONYMS.get(action, action)
    if action not in CONTAINER_ACTIONS:
        # exec_create carries the command after a colon: the name is what comes before.
        return f"container.{action.partition(':')[0]}"
    return _Event(action, container_id, attributes, when)


@dataclass
class _Round:
    """One resync: its refreshes in flight, and what they found."""

    pending: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    error: str = ""
    done: anyio.Event = dataclasses.field(default_factory=anyio.Event)

    def finish_one(self) -> None:
        """One refresh of this resync is done."""
        self.pending -= 1
        if self.pending <= 0:
            self.done.set()


@dataclass(frozen=True)
class _Check:
    """A resync's ask to refresh a container: listed anew, or held but no longer listed."""

    round: _Round
    fingerprint: str | None
    """The listing's fingerprint; None for a container held but not listed."""


_Work = _Event | _Check
# The start of a container, as its own actions say it (re)appears.
_APPEARING = frozenset({"start", "restart"})
_ENDING = frozenset({"stop", "die", "kill", "oom", "destroy"})


def _with_members(owner: Container, ports: set[int]) -> Container:
    """The owner of a network namespace, probed on the ports of the containers sharing it too."""
    extra = sorted(ports - set(owner.ports))
    if not extra or disabled(owner.labels) or not any(owner.networks.values()):
        return owner
    interval = owner.targets[0].interval if owner.targets else None
    own = tuple(t for t in owner.targets if t.protocol != "icmp")  # TCP ports now
    added = tuple(
        Target(owner.id, ip, port, "tcp", network, owner.name, interval)
        for network, ips in sorted(owner.networks.items())
        for ip in ips
        for port in extra
    )
    return dataclasses.replace(
        owner, ports=tuple(sorted({*owner.ports, *extra})), targets=own + added, note=""
    )


class _Networks:
    """A container's networks before and after a refresh, and which events said so."""

    def __init__(self, before: dict[str, tuple[str, ...]], container: Container | None) -> None:
        self.before = before
        self.now = {n: ips for n, ips in (container.networks if container else {}).items() if ips}
        self.said: set[tuple[str, str]] = set()

    def _left(self) -> list[str]:
        # A network whose IPs are not all held still: left, or rejoined with a new address.
        return sorted(
            n for n, ips in self.before.items() if not set(ips) <= set(self.now.get(n, ()))
        )

    def _joined(self) -> list[str]:
        return sorted(n for n in self.now if n not in self.before)

    def named(self, event: _Event) -> list[str | None]:
        """The networks an event is emitted for: its own, or for Podman's nameless ones the
        difference; one None for an event that is not about a network."""
        if not event.action.startswith("network_"):
            return [None]
        if event.network is None:
            found = self._left() if event.action == "network_disconnect" else self._joined()
            names = [n for n in found if (event.action, n) not in self.said]
        else:
            names = [event.network]
        self.said.update((event.action, n) for n in names)
        if event.action == "network_disconnect":
            self.before = {n: ips for n, ips in self.before.items() if n not in names}
        return list(names)

    def left(self) -> list[str]:
        """Networks left (or whose IP changed) that no event of the batch said."""
        return [n for n in self._left() if ("network_disconnect", n) not in self.said]

    def joined(self) -> list[str]:
        """Networks joined that no event of the batch said."""
        return [n for n in self._joined() if ("network_connect", n) not in self.said]


class Discovery:
    """Holds the running containers and tells the agent about every change.

    Three kinds of task share what it holds: the stream reader, which only reads and hands
    each event to its container's queue; one worker per container with work, which applies
    that container's events in order (those arriving during its inspect are one refresh);
    and the resync loop, which lists every so often whatever the stream does, and hands each
    container that needs a look to the same queues.
    """

    def __init__(
        self,
        docker_url: str,
        resync_interval: float,
        icmp: bool,
        on_container: OnContainer,
        on_lifecycle: OnLifecycle,
        call_timeout: float = docker_api.CALL_TIMEOUT,
        inspect_concurrency: int = 16,
        http_rules: Sequence[HttpRule] = (),
        on_inventory: OnInventory = lambda when, ids: None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.docker_url = docker_url
        self.resync_interval = resync_interval
        self.icmp = icmp
        self.on_container = on_container
        self.on_lifecycle = on_lifecycle
        self.call_timeout = call_timeout
        self.http_rules = tuple(http_rules)
        self.on_inventory = on_inventory
        self.limits = limits
        self.containers: dict[str, Container] = {}
        self._fingerprints: dict[str, str] = {}
        self._reachable: bool | None = None
        self._stream_up = False
        self._calls_ok = False
        self._since: int | None = None
        self._at_since: set[str] = set()  # the events seen at that nanosecond
        self._pending: dict[str, list[_Work]] = {}
        self._inspects = anyio.CapacityLimiter(inspect_concurrency)
        self._resync_wanted = anyio.Event()
        self._group: anyio.abc.TaskGroup | None = None
        self._client: aiodocker.Docker | None = None
        self._started: dict[str, datetime] = {}
        """The last start emitted per container, so that stream and resync emit it once."""
        self._addresses: dict[str, dict[str, tuple[str, ...]]] = {}
        """Per container, its networks' IPs when last seen running, kept while it is stopped."""
        self._bases: dict[str, Container] = {}
        """The running containers as their own inspect says, before sharing a namespace."""
        self._owners: dict[str, str] = {}
        """Per container sharing another's network namespace, that container's id."""
        self.unhandled: Counter[str] = Counter()
        """Events of actions discovery does not handle, by type.action; each logged once."""
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
        """Follow Docker until cancelled: the stream and the resyncs, each recovering alone."""
        async with (
            docker_api.client_for(self.docker_url, self.call_timeout) as client,
            anyio.create_task_group() as group,
        ):
            self._client, self._group = client, group
            group.start_soon(self._stream_loop, client)
            group.start_soon(self._resync_loop, client)

    # The stream

    async def _stream_loop(self, client: aiodocker.Docker) -> None:
        backoff = BACKOFF_FIRST
        while True:
            since = None
            if self._since is not None:
                # Replay what happened while we were away; the resync covers what Docker forgot.
                since = f"{self._since // 1_000_000_000}.{self._since % 1_000_000_000:09d}"
            opened = anyio.current_time()
            read = 0
            try:
                async with docker_api.event_stream(client, since) as events:
                    self._stream_state(True)
                    self._resync_wanted.set()  # what the stream missed meanwhile
                    async for item in events:
                        read += 1
                        self._dispatch(item)
            except DockerUnavailable as exc:
                self._stream_state(False, str(exc))
            except Exception as exc:  # an answer of a shape we did not foresee: never the end
                log.error("docker.session.failed", error=f"{type(exc).__name__}: {exc}")
                self._stream_state(False, f"{type(exc).__name__}: {exc}")
            if read or anyio.current_time() - opened > BACKOFF_CAP:
                backoff = BACKOFF_FIRST  # it worked for a while: a new outage starts over
            delay = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
            log.debug("docker.stream.reconnect", delay_s=round(delay, 3))
            await anyio.sleep(delay)
            backoff = min(backoff * 2, BACKOFF_CAP)

    def _dispatch(self, item: docker_api.EventItem) -> None:
        """Hand one stream item to its container's queue; never waits."""
        if item is None:
            log.warning("docker.event.garbage")
            return
        if isinstance(item, docker_api.OverlongEvent):
            log.warning(
                "docker.event.overlong",
                bytes=item.size,
                container_id=str(((item.event or {}).get("Actor") or {}).get("ID") or ""),
                action=str((item.event or {}).get("Action") or ""),
            )
            if item.event is None:
                self._resync_wanted.set()  # whom it was about is unknown: look at everyone
                return
            item = item.event
        nanos = item.get("timeNano")
        if isinstance(nanos, int) and not isinstance(nanos, bool) and self._replayed(item, nanos):
            return
        try:
            event = _parse(item)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # An event of a shape we do not know is skipped; the resync heals what it meant.
            log.warning("docker.event.skipped", error=f"{type(exc).__name__}: {exc}")
            return
        if isinstance(event, str):
            self.unhandled[event] += 1
            if self.unhandled[event] == 1:
                log.debug("docker.event.unhandled", action=event)
        elif event is not None:
            self._enqueue(event.container_id, event)

    def _replayed(self, item: dict[str, Any], nanos: int) -> bool:
        """Whether an event is one we had, sent again: a reconnect asks for the events since
        the newest one's time, and the engine sends those of that very nanosecond again. An
        ending event is stamped when it is applied, so a replay would be stored twice."""
        actor = item.get("Actor")
        key = repr(
            (
                item.get("Type"),
                item.get("Action"),
                actor.get("ID") if isinstance(actor, dict) else None,
            )
        )
        if self._since is None or nanos > self._since:
            self._since, self._at_since = nanos, {key}
            return False
        if nanos == self._since:
            if key in self._at_since:
                log.debug("docker.event.replayed", action=str(item.get("Action") or ""))
                return True
            self._at_since.add(key)
        return False

    # The queues

    def _enqueue(self, container_id: str, work: _Work) -> None:
        queue = self._pending.get(container_id)
        if queue is not None:
            queue.append(work)  # its worker takes it after the refresh in flight
            return
        self._pending[container_id] = [work]
        if self._group is None or self._client is None:
            raise RuntimeError("the workers run inside Discovery.run()")
        self._group.start_soon(self._work, self._client, container_id)

    async def _work(self, client: aiodocker.Docker, container_id: str) -> None:
        """Apply a container's queue until it is empty, one batch (one inspect) at a time."""
        try:
            while batch := self._pending.get(container_id):
                self._pending[container_id] = []
                try:
                    await self._apply(client, container_id, batch)
                except Exception as exc:  # one container's surprise never ends discovery
                    log.error(
                        "docker.event.failed",
                        container_id=container_id,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    self._fail_checks(batch, f"{type(exc).__name__}: {exc}")
                    for work in batch:
                        if isinstance(work, _Check):
                            work.round.finish_one()  # its resync ends, failed, and is retried
        finally:
            self._pending.pop(container_id, None)

    async def _apply(self, client: aiodocker.Docker, container_id: str, batch: list[_Work]) -> None:
        """Apply one batch of a container's work: at most one inspect, then its events in order."""
        events = [w for w in batch if isinstance(w, _Event)]
        checks = [w for w in batch if isinstance(w, _Check)]
        previous = self.containers.get(container_id)
        container: Container | None = None
        started: datetime | None = None
        gone = bool(events) and events[-1].action == "destroy"
        if not gone and (checks or any(e.needs_inspect for e in events)):
            try:
                async with self._inspects:
                    inspect = await docker_api.inspect_container(client, container_id)
            except NotFound:
                gone = True
            except DockerUnavailable as exc:
                self._calls_state(False, str(exc))
                self._fail_checks(batch, str(exc))
                self._fingerprints.pop(container_id, None)  # the next resync looks again
                self._resync_wanted.set()
            else:
                # Only a whole resync says Docker is back: an answer on a pooled connection
                # to a daemon that is shutting down does not.
                container = container_of(inspect, self.icmp, self.http_rules, self.limits)
                self._note_owner(container_id, inspect)
                started = docker_timestamp((inspect.get("State") or {}).get("StartedAt"))
        if gone:
            self._forget(container_id)
            self._fingerprints.pop(container_id, None)
        elif container is not None:
            if disabled(container.labels):
                self._forget(container_id)
            else:
                self._keep(container)
        for check in checks:
            if container is not None and check.fingerprint is not None:
                self._fingerprints[container_id] = check.fingerprint
        if not checks and container is not None:
            # Refreshed for events: the fingerprint of an older listing no longer describes
            # what we hold, and may match a later one that differs from it (a network joined
            # by an event, then left unseen): the next resync inspects it again.
            self._fingerprints.pop(container_id, None)
        self._emit(container_id, events, checks, previous, container, started, gone)
        told = [e.health for e in events if e.action == "health_status"]
        if told and container is None and container_id in self.containers:
            # Held as the stream says, so that the next inspect repeats no event.
            self.containers[container_id] = dataclasses.replace(
                self.containers[container_id], health=told[-1]
            )
        for check in checks:
            check.round.finish_one()

    def _emit(
        self,
        container_id: str,
        events: list[_Event],
        checks: list[_Check],
        previous: Container | None,
        container: Container | None,
        started: datetime | None,
        gone: bool,
    ) -> None:
        """Emit the batch's lifecycle events in order, then those it found without an event."""
        last_start = max((i for i, e in enumerate(events) if e.action == "start"), default=-1)
        running = container is not None and container.running
        moved = _Networks(self._addresses.get(container_id, {}), container if running else None)
        for index, event in enumerate(events):
            known = container or previous or _from_attributes(container_id, event.attributes)
            if disabled(known.labels):
                continue
            when = event.when
            if index == last_start and running and started is not None:
                # The start's own time, which a resync finding it uses too: one event, once.
                when = started
            if event.action == "start":
                if self._started.get(container_id) == when:
                    continue
                self._started[container_id] = when
            exit_code = _exit_code(event.attributes) if event.action in ("die", "oom") else None
            for network in moved.named(event):
                stamp = when
                if (event.action in _ENDING and not running) or (
                    event.action == "network_disconnect" and network not in moved.now
                ):
                    # Its targets were probed until now, when they are dropped: stamped with
                    # the engine's earlier time, a probe made meanwhile would outlive the end.
                    stamp = max(when, datetime.now(UTC))
                self.on_lifecycle(
                    lifecycle_event(
                        event.action,
                        known,
                        stamp,
                        exit_code=exit_code,
                        network=network,
                        health=event.health,
                    )
                )
        if gone:
            self._started.pop(container_id, None)
            self._addresses.pop(container_id, None)
        elif running and container is not None:
            self._addresses[container_id] = moved.now
            told = any(e.action == "health_status" for e in events)
            held = previous.health if previous is not None else None
            if not told and container.health != held and not disabled(container.labels):
                # An inspect that finds a health we did not hear of (a missed event, a new agent).
                when = container.health_at or datetime.now(UTC)
                self.on_lifecycle(
                    lifecycle_event("health_status", container, when, health=container.health)
                )
            if not disabled(container.labels):
                # Left without an event (or its IP changed, as a restart may do): the old
                # address leaves the listing, being detached after its last probe.
                healed = datetime.now(UTC)
                for network in moved.left():
                    self.on_lifecycle(
                        lifecycle_event("network_disconnect", container, healed, network=network)
                    )
                if previous is not None:
                    for network in moved.joined():
                        self.on_lifecycle(
                            lifecycle_event("network_connect", container, healed, network=network)
                        )
        elif container_id in self._addresses:
            self._addresses[container_id] = moved.before  # less what its events detached
        if checks:
            self._heal(container_id, events, checks[0].round, previous, container, started, gone)

    def _heal(
        self,
        container_id: str,
        events: list[_Event],
        round_: _Round,
        previous: Container | None,
        container: Container | None,
        started: datetime | None,
        gone: bool,
    ) -> None:
        """What a resync found that no event of the batch said: a start, a stop, a removal."""
        actions = {e.action for e in events}
        running = container is not None and container.running
        if previous is None and running and container is not None:
            round_.added += 1
            if not disabled(container.labels) and not actions & _APPEARING:
                when = started or datetime.now(UTC)
                if self._started.get(container_id) != when:
                    self._started[container_id] = when
                    self.on_lifecycle(lifecycle_event("start", container, when))
        elif previous is not None and not running and (gone or container is not None):
            round_.removed += 1
            if not disabled(previous.labels) and not actions & _ENDING:
                action = "destroy" if gone else "stop"
                self.on_lifecycle(lifecycle_event(action, previous, datetime.now(UTC)))
        elif previous is not None and container is not None and not _same(previous, container):
            round_.changed += 1

    def _fail_checks(self, batch: list[_Work], error: str) -> None:
        for work in batch:
            if isinstance(work, _Check):
                work.round.error = work.round.error or error

    def _note_owner(self, container_id: str, inspect: dict[str, Any]) -> None:
        """Remember whose network namespace a container shares (`container:ID`, a pod's infra)."""
        mode = str((inspect.get("HostConfig") or {}).get("NetworkMode") or "")
        owner = mode.removeprefix("container:") if mode.startswith("container:") else ""
        if owner and owner != container_id:
            self._owners[container_id] = owner
        else:
            self._owners.pop(container_id, None)

    def _keep(self, container: Container) -> None:
        if not container.running:
            self._forget(container.id)
            return
        self._bases[container.id] = container
        self._publish(container.id)
        owner = self._owners.get(container.id)
        if owner is not None:
            self._publish(owner)  # its ports are probed on the owner's addresses

    def _forget(self, container_id: str) -> None:
        self._bases.pop(container_id, None)
        owner = self._owners.pop(container_id, None)
        if self.containers.pop(container_id, None) is not None:
            self.on_container(container_id, None)
        if owner is not None:
            self._publish(owner)

    def _publish(self, container_id: str) -> None:
        """Tell the agent a container's targets: one set per network namespace, its owner's."""
        base = self._bases.get(container_id)
        if base is None:
            return
        owner = self._owners.get(container_id)
        if owner is not None:
            shown = dataclasses.replace(
                base,
                targets=(),
                note=f"shares the network namespace of container {owner[:12]}:"
                " its ports are probed on that container's addresses",
            )
        else:
            shown = _with_members(
                base,
                {
                    port
                    for member, of in self._owners.items()
                    if of == container_id and member in self._bases
                    for port in self._bases[member].ports
                },
            )
        previous = self.containers.get(container_id)
        self.containers[container_id] = shown
        if previous is None or not _same(previous, shown):
            if shown.note and not shown.targets:
                log.info("container.no_probe", container=shown.name, reason=shown.note)
            self.on_container(container_id, shown)

    # The resync

    async def _resync_loop(self, client: aiodocker.Docker) -> None:
        backoff = BACKOFF_FIRST
        # The first waits for the stream to open (so that nothing falls between the two),
        # but not for long: the resync never depends on the stream.
        wait = min(1.0, self.resync_interval)
        while True:
            with anyio.move_on_after(wait):
                await self._resync_wanted.wait()
            self._resync_wanted = anyio.Event()
            try:
                await self.resync(client)
            except DockerUnavailable as exc:
                self._calls_state(False, str(exc))
            except Exception as exc:  # a listing of a shape we did not foresee: retried
                log.error("docker.session.failed", error=f"{type(exc).__name__}: {exc}")
                self._calls_state(False, f"{type(exc).__name__}: {exc}")
            else:
                backoff, wait = BACKOFF_FIRST, self.resync_interval
                continue
            wait = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
            backoff = min(backoff * 2, BACKOFF_CAP)

    async def resync(self, client: aiodocker.Docker) -> ResyncDiff:
        """List every running container and apply the difference with what we hold."""
        # The inventory's time is taken before the list: a container made after it has an
        # event newer than the inventory, and is never taken for gone.
        taken = datetime.now(UTC)
        every = await docker_api.list_containers(client)
        existing = [str(item.get("Id") or "") for item in every if item.get("Id")]
        listed = [item for item in every if item.get("State") in _RUNS]
        round_ = _Round()
        seen: set[str] = set()
        checks: list[tuple[str, _Check]] = []
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
            checks.append((container_id, _Check(round_, fingerprint)))
        # Held but not listed: stopped or removed without an event we saw, as an inspect says.
        checks += [(cid, _Check(round_, None)) for cid in self.containers if cid not in seen]
        for container_id in [cid for cid in self._fingerprints if cid not in seen]:
            del self._fingerprints[container_id]
        round_.pending = len(checks)
        for container_id, check in checks:
            self._enqueue(container_id, check)
        if checks:
            await round_.done.wait()
        if round_.error:
            raise DockerUnavailable(round_.error)
        self._calls_state(True)
        return self._resync_done(round_, taken, existing)

    def _resync_done(self, round_: _Round, taken: datetime, existing: list[str]) -> ResyncDiff:
        """A complete resync: what we hold is what Docker lists. The inventory names every
        container the engine holds, stopped ones too, so that one removed while no agent
        watched is gone whatever its last state."""
        self.resyncs += 1
        self.resynced.set()
        self.on_inventory(taken, sorted(set(existing)))
        self.last_diff = ResyncDiff(round_.added, round_.changed, round_.removed)
        (log.info if round_.added or round_.changed or round_.removed else log.debug)(
            "docker.resync",
            added=round_.added,
            changed=round_.changed,
            removed=round_.removed,
            running=len(self.containers),
        )
        return self.last_diff

    # Reachability: the stream connected, and the last call answered

    def _stream_state(self, up: bool, error: str = "") -> None:
        if up:
            self._calls_ok = False  # until the resync that follows answers
        self._stream_up = up
        self._set_ok(self._stream_up and self._calls_ok, error)

    def _calls_state(self, ok: bool, error: str = "") -> None:
        self._calls_ok = ok
        self._set_ok(self._stream_up and self._calls_ok, error)

    def _set_ok(self, ok: bool, error: str = "") -> None:
        if ok != self._reachable:
            if ok:
                log.info("docker.connected", url=self.docker_url)
            elif self._reachable is not None or error:
                log.warning("docker.unreachable", url=self.docker_url, error=error)
            else:
                return  # nothing known yet, and nothing wrong: not an outage
        elif not ok and error:
            log.debug("docker.still_unreachable", error=error)
        self._reachable = ok
