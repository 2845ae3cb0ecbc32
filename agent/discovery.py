"""Follow Docker: the event stream applied as it arrives, and a full re-list every resync.

The stream is reconnected with capped exponential backoff and jitter, replaying from
the last event seen; each reconnect is followed by a resync at once.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiodocker
import anyio

from agent.targets import COMPOSE_PROJECT, COMPOSE_SERVICE, Container, container_of
from dockping import logs
from dockping.contract import ContainerEvent

log = logs.get("dockping.agent.discovery")

CONTAINER_ACTIONS = {
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
}
_GONE = {"die", "stop", "kill", "destroy", "oom"}
OnContainer = Callable[[str, Container | None], None]
OnLifecycle = Callable[[ContainerEvent], None]


def docker_time(event: dict[str, Any]) -> datetime:
    """The time of a Docker event, to the microsecond."""
    nanos = event.get("timeNano")
    if isinstance(nanos, int) and nanos > 0:
        return datetime.fromtimestamp(nanos // 1000 / 1e6, UTC)
    seconds = event.get("time")
    if isinstance(seconds, datetime):
        return seconds.astimezone(UTC) if seconds.tzinfo else seconds.replace(tzinfo=UTC)
    if isinstance(seconds, int | float):
        return datetime.fromtimestamp(seconds, UTC)
    return datetime.now(UTC)


def _parse_docker_timestamp(text: str | None) -> datetime | None:
    if not text or text.startswith("0001-"):
        return None
    # Docker writes nanoseconds; Python reads up to microseconds.
    head, _, tail = text.rstrip("Z").partition(".")
    fraction = (tail + "000000")[:6]
    try:
        return datetime.fromisoformat(f"{head}.{fraction}+00:00")
    except ValueError:
        return None


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
        container_id=container.id,
        action=action,  # type: ignore[arg-type]
        name=container.name[:1024],
        image=container.image[:1024],
        exit_code=exit_code,
        compose_project=container.compose_project[:1024],
        compose_service=container.compose_service[:1024],
        network=network,
        health=health,
    )


def _from_attributes(container_id: str, attributes: dict[str, Any]) -> Container:
    labels = {str(k): str(v) for k, v in attributes.items()}
    return Container(
        id=container_id,
        name=labels.get("name", ""),
        image=labels.get("image", ""),
        running=False,
        paused=False,
        compose_project=labels.get(COMPOSE_PROJECT, ""),
        compose_service=labels.get(COMPOSE_SERVICE, ""),
        labels={},
        networks={},
        ports=(),
        targets=(),
    )


class Discovery:
    """Holds the running containers and tells the agent about every change."""

    def __init__(
        self,
        docker_url: str,
        resync_interval: float,
        icmp: bool,
        on_container: OnContainer,
        on_lifecycle: OnLifecycle,
    ) -> None:
        self.docker_url = docker_url
        self.resync_interval = resync_interval
        self.icmp = icmp
        self.on_container = on_container
        self.on_lifecycle = on_lifecycle
        self.containers: dict[str, Container] = {}
        self.docker_ok = False
        self._since: int | None = None
        self._resync_now = anyio.Event()

    async def run(self) -> None:
        """Follow Docker until cancelled, reconnecting whenever it drops."""
        backoff = 0.5
        while True:
            docker = aiodocker.Docker(url=self.docker_url)
            try:
                async with anyio.create_task_group() as group:
                    stream_open = anyio.Event()
                    group.start_soon(self._stream, docker, stream_open)
                    with anyio.fail_after(10):
                        await stream_open.wait()
                    await self.resync(docker)
                    self._set_ok(True)
                    backoff = 0.5
                    group.start_soon(self._resync_loop, docker)
            except* (
                aiodocker.DockerError,
                OSError,
                TimeoutError,
                ValueError,
                _StreamEnded,
            ) as group_error:
                self._set_ok(False, str(group_error.exceptions[0]))
            finally:
                await docker.close()
            await anyio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311
            backoff = min(backoff * 2, 15.0)

    async def _resync_loop(self, docker: aiodocker.Docker) -> None:
        while True:
            with anyio.move_on_after(self.resync_interval):
                await self._resync_now.wait()
            self._resync_now = anyio.Event()
            await self.resync(docker)

    async def _stream(self, docker: aiodocker.Docker, opened: anyio.Event) -> None:
        params: dict[str, Any] = {
            "filters": json.dumps({"type": ["container", "network"]}),
        }
        if self._since is not None:
            # Replay what happened while we were away; resync covers the rest.
            params["since"] = f"{self._since // 1_000_000_000}.{self._since % 1_000_000_000:09d}"
        subscriber = docker.events.subscribe(create_task=False)  # type: ignore[no-untyped-call]
        async with anyio.create_task_group() as group:
            group.start_soon(self._pump, docker, params)
            opened.set()
            while True:
                event = await subscriber.get()
                if event is None:
                    raise _StreamEnded("the Docker event stream ended")
                try:
                    await self._apply(docker, event)
                except (aiodocker.DockerError, KeyError, TypeError, ValueError) as exc:
                    log.warning("docker.event.skipped", error=str(exc))

    async def _pump(self, docker: aiodocker.Docker, params: dict[str, Any]) -> None:
        await docker.events.run(**params)

    async def _apply(self, docker: aiodocker.Docker, event: dict[str, Any]) -> None:
        if not isinstance(event, dict):
            return
        nanos = event.get("timeNano")
        if isinstance(nanos, int):
            self._since = max(self._since or 0, nanos)
        kind = event.get("Type")
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        when = docker_time(event)
        if kind == "network" and action in ("connect", "disconnect"):
            container_id = str(attributes.get("container") or "")
            if container_id:
                container = await self._refresh(docker, container_id)
                if container is not None:
                    self.on_lifecycle(
                        lifecycle_event(
                            f"network_{action}",
                            container,
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
        if action.startswith("health_status"):
            health = action.partition(":")[2].strip() or None
            container = self.containers.get(container_id) or _from_attributes(
                container_id, attributes
            )
            self.on_lifecycle(lifecycle_event("health_status", container, when, health=health))
            return
        if action not in CONTAINER_ACTIONS:
            return
        known = self.containers.get(container_id) or _from_attributes(container_id, attributes)
        if action in _GONE:
            exit_code = None
            if "exitCode" in attributes:
                try:
                    exit_code = int(attributes["exitCode"])
                except (TypeError, ValueError):
                    exit_code = None
            self._forget(container_id)
            self.on_lifecycle(lifecycle_event(action, known, when, exit_code=exit_code))
            return
        container = await self._refresh(docker, container_id)
        self.on_lifecycle(lifecycle_event(action, container or known, when))

    async def _refresh(self, docker: aiodocker.Docker, container_id: str) -> Container | None:
        try:
            inspect = await (await docker.containers.get(container_id)).show()
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                self._forget(container_id)
                return None
            raise
        container = container_of(inspect, self.icmp)
        self._keep(container)
        return container

    def _keep(self, container: Container) -> None:
        if not container.running:
            self._forget(container.id)
            return
        previous = self.containers.get(container.id)
        self.containers[container.id] = container
        if previous is None or previous.targets != container.targets:
            if container.note and not container.targets:
                log.info("container.no_targets", container=container.name, reason=container.note)
            self.on_container(container.id, container)

    def _forget(self, container_id: str) -> None:
        if self.containers.pop(container_id, None) is not None:
            self.on_container(container_id, None)

    async def resync(self, docker: aiodocker.Docker) -> None:
        """List every running container and apply the difference with what we hold."""
        listed = await docker.containers.list(filters=json.dumps({"status": ["running", "paused"]}))
        seen: set[str] = set()
        added = changed = 0
        for item in listed:
            try:
                inspect = await item.show()
            except aiodocker.DockerError as exc:
                if exc.status == 404:
                    continue  # removed between the list and the inspect
                raise
            container = container_of(inspect, self.icmp)
            seen.add(container.id)
            previous = self.containers.get(container.id)
            if previous is None:
                added += 1
                started = _parse_docker_timestamp((inspect.get("State") or {}).get("StartedAt"))
                # The start time is the container's own, so a restarted agent sends the
                # same event again and ingest stores it once.
                self.on_lifecycle(lifecycle_event("start", container, started or datetime.now(UTC)))
            elif previous.targets != container.targets:
                changed += 1
            self._keep(container)
        gone = [cid for cid in self.containers if cid not in seen]
        for container_id in gone:
            known = self.containers[container_id]
            self._forget(container_id)
            self.on_lifecycle(lifecycle_event("stop", known, datetime.now(UTC)))
        if added or changed or gone:
            log.info(
                "docker.resync",
                added=added,
                changed=changed,
                removed=len(gone),
                running=len(self.containers),
            )

    def _set_ok(self, ok: bool, error: str = "") -> None:
        if ok != self.docker_ok:
            if ok:
                log.info("docker.connected", url=self.docker_url)
            else:
                log.warning("docker.unreachable", url=self.docker_url, error=error)
        elif not ok:
            log.debug("docker.stream.reconnect", error=error)
        self.docker_ok = ok


class _StreamEnded(Exception):
    """The Docker event stream closed."""
