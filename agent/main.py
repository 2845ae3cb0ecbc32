"""The agent: discovery feeds the scheduler, probe results and container events feed the shipper."""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio

from agent import health
from agent.discovery import Discovery
from agent.identity_log import IdentityLog
from agent.probes import icmp_available
from agent.probing import ProbeResult
from agent.scheduler import Scheduler
from agent.shipper import Shipper
from agent.targets import Container, Limits, Target
from agent.vantage import Vantages
from dockping import __version__, logs, tokens
from dockping.contract import ContainerEvent, HeartbeatEvent, InventoryEvent, ProbeEvent
from dockping.settings import Settings

log = logs.get("dockping.agent")


def docker_url(configured: str) -> str:
    """The Docker endpoint: the setting, else DOCKER_HOST, else the local socket."""
    return configured or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _ms(seconds: float) -> int:
    """A duration in whole milliseconds, within what the contract takes (1 ms to a day)."""
    return min(max(round(seconds * 1000), 1), 86_400_000)


class Agent:
    """One agent process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Every probe event carries these; the target's own interval, when it has one, instead.
        self._interval_ms = _ms(settings.agent.probe_interval)
        self._timeout_ms = _ms(settings.agent.probe_timeout)
        config = settings.agent
        self.agent_id = config.id or socket.gethostname()
        token = config.token or tokens.shared_token(settings.ingest.token, settings.data_path)
        self.identities = IdentityLog(Path(config.identity_log)) if config.identity_log else None
        self.shipper = Shipper(
            config, self.agent_id, token, settings.data_path / "spool", self.identities
        )
        self.icmp = icmp_available()
        self.vantages = Vantages(config.enter_namespaces)
        self.scheduler = Scheduler(
            config.probe_interval, config.probe_timeout, config.concurrency, self._on_result
        )
        self.discovery = Discovery(
            docker_url(config.docker_url),
            config.resync_interval,
            self.icmp,
            self._on_container,
            self._on_lifecycle,
            http_rules=config.http,
            on_inventory=self._on_inventory,
            limits=Limits.of(config),
            inspect_concurrency=config.inspect_concurrency,
        )
        self._last_ok: dict[tuple[str, str, int | None, str], bool] = {}
        # Per container, the targets declared unprobed (vantage none) since it was last seen.
        self._unprobed: dict[str, set[tuple[str, str, int | None, str]]] = {}
        self._limited: dict[str, str] = {}  # what was said of each container's limits, once

    def _on_container(self, container_id: str, container: Container | None) -> None:
        if container is None:
            self._limited.pop(container_id, None)
            self.scheduler.remove(container_id)
            self.vantages.forget(container_id)
            self._unprobed.pop(container_id, None)
            for key in [k for k in self._last_ok if k[0] == container_id]:
                del self._last_ok[key]
            return
        if container.limited and container.limited != self._limited.get(container_id):
            log.warning("container.limited", container=container.name, reason=container.limited)
        self._limited[container_id] = container.limited
        placed = self.vantages.place(container)
        self.scheduler.replace(container_id, tuple(t for t in placed if t.vantage != "none"))
        declared = self._unprobed.setdefault(container_id, set())
        for target in placed:
            if target.vantage == "none" and target.key not in declared:
                declared.add(target.key)
                self.shipper.add(self._event(target, None), urgent=True)

    def _event(self, target: Target, result: ProbeResult | None) -> ProbeEvent:
        """A probe's result as an event; without a result, the declaration of an unprobed target."""
        detail = result.detail if result is not None else None
        return ProbeEvent(
            time=result.time if result is not None else datetime.now(UTC),
            container_id=target.container_id,
            container_name=target.container_name[:1024],
            network=target.network[:1024],
            ip=target.ip,
            port=target.port,
            protocol=target.protocol,  # type: ignore[arg-type]
            ok=result is not None and result.ok,
            latency_ms=result.latency_ms if result is not None else None,
            error=result.error if result is not None else None,
            http_status=detail.http_status if detail else None,
            connect_ms=detail.connect_ms if detail else None,
            tls_not_after=detail.tls_not_after if detail else None,
            vantage=target.vantage,  # type: ignore[arg-type]
            interval_ms=_ms(target.interval) if target.interval else self._interval_ms,
            timeout_ms=self._timeout_ms,
        )

    def _on_lifecycle(self, event: ContainerEvent) -> None:
        self.shipper.add(event, urgent=True)

    def _on_inventory(self, when: datetime, container_ids: list[str]) -> None:
        # Sent at once, like a lifecycle event: it is what makes a vanished container gone.
        self.shipper.add(InventoryEvent(time=when, container_ids=container_ids), urgent=True)

    def _on_result(self, target: Target, result: ProbeResult) -> None:
        event = self._event(target, result)
        previous = self._last_ok.get(target.key)
        self._last_ok[target.key] = result.ok
        if previous is None or previous != result.ok:
            # The first result of every target is news only when debugging; a change always is.
            (log.debug if previous is None else log.info)(
                "probe.changed" if previous is not None else "probe.first",
                container=target.container_name,
                ip=target.ip,
                port=target.port,
                ok=result.ok,
                error=result.error,
            )
        # A new target or a status change is shipped at once, not held for the batch timer.
        self.shipper.add(event, urgent=previous is None or previous != result.ok)

    def heartbeat(self) -> HeartbeatEvent:
        """The agent's state, as an event."""
        return HeartbeatEvent(
            time=datetime.now(UTC),
            version=__version__,
            docker_ok=self.discovery.docker_ok,
            targets=len(self.scheduler),
            spool_bytes=self.shipper.spool.size(),
            dropped=self.shipper.dropped,
        )

    async def _heartbeats(self) -> None:
        # The first one once Docker answered (or did not, within a few seconds), so that it
        # says how things are rather than that nothing is known yet.
        with anyio.move_on_after(min(5.0, self.settings.agent.resync_interval)):
            await self.discovery.resynced.wait()
        while True:
            self.shipper.add(self.heartbeat(), urgent=True)
            await anyio.sleep(self.settings.agent.resync_interval)

    async def _health(self) -> None:
        # For the container's healthcheck (`dockping agent --check`), which cannot ask the process.
        # A file that cannot be written makes the check fail; it must not stop the probes.
        failed = False
        while True:
            state = health.Health(
                time=time.time(),
                docker_ok=self.discovery.docker_ok,
                ingest_ok=self.shipper.ingest_ok,
                spool_bytes=self.shipper.spool.size(),
            )
            try:
                health.write(self.settings.data_path, state)
            except OSError as exc:
                if not failed:
                    log.warning("health.unwritable", error=str(exc))
                failed = True
            else:
                failed = False
            await anyio.sleep(health.EVERY)

    async def run(self) -> None:
        """Run until SIGTERM or SIGINT, then flush within the shutdown deadline."""
        log.info(
            "agent.start",
            agent=self.agent_id,
            docker=self.discovery.docker_url,
            ingest=self.settings.agent.ingest_url,
            spool_bytes=self.shipper.spool.size(),
        )
        if not self.icmp:
            log.info(
                "icmp.unavailable",
                reason="net.ipv4.ping_group_range allows no unprivileged ICMP socket to this"
                " process: containers without a TCP port get no probe",
            )
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as group:
                group.start_soon(self.discovery.run)
                group.start_soon(self.scheduler.run)
                group.start_soon(self.shipper.run)
                group.start_soon(self._heartbeats)
                group.start_soon(self._health)
                async for signum in signals:
                    log.info("agent.stopping", signal=signal.Signals(signum).name)
                    group.cancel_scope.cancel()
                    break
        # Probes in flight are abandoned; what was collected is spooled, then sent if possible.
        deadline = time.monotonic() + self.settings.agent.shutdown_timeout
        self.shipper.add(self.heartbeat())
        with anyio.CancelScope(shield=True):
            sent = await self.shipper.flush(deadline)
        log.info(
            "agent.stopped",
            flushed=sent,
            sent=self.shipper.sent,
            spool_bytes=self.shipper.spool.size(),
            dropped=self.shipper.dropped,
        )
        self.shipper.spool.close()
        self.vantages.close()
        if self.identities is not None:
            self.identities.close()
