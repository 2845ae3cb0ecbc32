"""The agent: discovery feeds the scheduler, probe results and container events feed the shipper."""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio

from agent.discovery import Discovery
from agent.identity_log import IdentityLog
from agent.probes import icmp_available
from agent.probing import ProbeResult
from agent.scheduler import Scheduler
from agent.shipper import Shipper
from agent.targets import Container, Target
from dockping import __version__, logs, tokens
from dockping.contract import ContainerEvent, HeartbeatEvent, ProbeEvent
from dockping.settings import Settings

log = logs.get("dockping.agent")


def docker_url(configured: str) -> str:
    """The Docker endpoint: the setting, else DOCKER_HOST, else the local socket."""
    return configured or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


class Agent:
    """One agent process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = settings.agent
        self.agent_id = config.id or socket.gethostname()
        token = config.token or tokens.shared_token(settings.ingest.token, settings.data_path)
        self.identities = IdentityLog(Path(config.identity_log)) if config.identity_log else None
        self.shipper = Shipper(
            config, self.agent_id, token, settings.data_path / "spool", self.identities
        )
        self.icmp = icmp_available()
        self.scheduler = Scheduler(
            config.probe_interval, config.probe_timeout, config.concurrency, self._on_result
        )
        self.discovery = Discovery(
            docker_url(config.docker_url),
            config.resync_interval,
            self.icmp,
            self._on_container,
            self._on_lifecycle,
            inspect_concurrency=config.inspect_concurrency,
        )
        self._last_ok: dict[tuple[str, str, int | None, str], bool] = {}

    def _on_container(self, container_id: str, container: Container | None) -> None:
        if container is None:
            self.scheduler.remove(container_id)
            for key in [k for k in self._last_ok if k[0] == container_id]:
                del self._last_ok[key]
        else:
            self.scheduler.replace(container_id, container.targets)

    def _on_lifecycle(self, event: ContainerEvent) -> None:
        self.shipper.add(event, urgent=True)

    def _on_result(self, target: Target, result: ProbeResult) -> None:
        event = ProbeEvent(
            time=result.time,
            container_id=target.container_id,
            container_name=target.container_name[:1024],
            network=target.network[:1024],
            ip=target.ip,
            port=target.port,
            protocol=target.protocol,  # type: ignore[arg-type]
            ok=result.ok,
            latency_ms=result.latency_ms,
            error=result.error,
        )
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
        if self.identities is not None:
            self.identities.close()
