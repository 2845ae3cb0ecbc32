"""The write path: one batch of events, appended once, with the projections, in one transaction."""

from __future__ import annotations

import math
import operator
import struct
import sys
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format
from psycopg.types.json import Jsonb

from db.connector import SchemaError
from db.queries import by_target, sql
from dockping.contract import (
    Batch,
    ContainerEvent,
    HeartbeatEvent,
    InventoryEvent,
    ProbeEvent,
    canonical_ip,
)
from dockping.projection import VANTAGE_CODES, encode_latency

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The protocols whose probe events may carry details (http_status, connect_ms, tls_not_after).
_DETAILED = frozenset({"http", "https"})
_PROTOCOL = operator.attrgetter("protocol")


class Int4Array(bytes):
    """A list of int4 already in PostgreSQL's binary array format, for a %(name)b parameter.

    psycopg dumps a list element by element in Python: for the two int4 arrays of a batch that
    was about a tenth of ingest's CPU; packing them with `array` costs a tenth of that.
    """

    @classmethod
    def of(cls, values: list[int]) -> Int4Array:
        """The array of these values (each within int4, as ids and encoded latencies are)."""
        if not values:
            return cls(struct.pack("!iiI", 0, 0, _INT4_OID))
        # Each element is its length (4) and its value, big-endian.
        items = array("i", [4]) * (2 * len(values))
        items[1::2] = array("i", values)
        if sys.byteorder == "little":
            items.byteswap()
        return cls(struct.pack("!iiIii", 1, 0, _INT4_OID, len(values), 1) + items.tobytes())


class _Int4ArrayDumper(Dumper):
    format = Format.BINARY
    oid = psycopg.postgres.types["int4"].array_oid

    def dump(self, obj: Buffer) -> Buffer:
        return obj


_INT4_OID = psycopg.postgres.types["int4"].oid
psycopg.adapters.register_dumper(Int4Array, _Int4ArrayDumper)

TargetKey = tuple[int, str, int | None, str]  # container_key, ip, port, protocol
# agent_id, container_id, ip, port, protocol, vantage: a target whose vantage changes is a miss.
ProbeKey = tuple[int, str, str, int | None, str, str | None]
Window = tuple[int, int]  # a target's probe interval and timeout, in ms


class ProjectionBehind(SchemaError):
    """A target's state is behind its stored events (a hand edit): `dockping rebuild` mends it."""


@dataclass(frozen=True)
class AppendResult:
    """What one batch did to the store."""

    accepted: int
    duplicates: int
    changed_targets: frozenset[int]
    changed_containers: frozenset[int]


@dataclass
class _Containers:
    ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)


class EventWriter:
    """Appends batches; caches dimension ids, which never change once made."""

    def __init__(self, backend: str, partition_interval: float) -> None:
        self.backend = backend
        self.step = timedelta(seconds=partition_interval)
        self._agents: dict[str, int] = {}
        self._containers: dict[tuple[int, str], int] = {}
        self._targets: dict[TargetKey, int] = {}
        self._vantages: dict[TargetKey, str] = {}  # the vantage stored, where one was given
        # A probe's target id straight from its fields: one lookup per event once known.
        self._probe_targets: dict[ProbeKey, int] = {}
        # Per target, the time of a probe event this writer saw committed (appended, or found
        # stored): an event of that target and time is a duplicate without asking the
        # database. Events are never deleted but whole partitions past retention, whose times
        # ingest refuses anyway, so the fact stays true for as long as the database is the
        # same one (ingest drops its writer on each new connection: see Ingest.forget).
        self._stored: dict[int, datetime] = {}
        self._partitions: set[int] = set()
        # The HTTP(S) targets this writer knows, whose events may carry details.
        self._detailed: set[int] = set()
        # Per target, the probe interval and timeout stored (as this writer last wrote them).
        self._windows: dict[int, Window] = {}

    async def ensure_partitions(
        self, conn: psycopg.AsyncConnection, start: datetime, end: datetime
    ) -> None:
        """Make sure partitions exist for [start, end]; a short transaction of its own."""
        if self.backend != "postgres":
            return
        step = self.step.total_seconds()
        first = math.floor((start - _EPOCH).total_seconds() / step)
        last = math.floor((end - _EPOCH).total_seconds() / step)
        wanted = set(range(first, last + 1))
        if wanted <= self._partitions:
            return
        async with conn.transaction():
            # One maker at a time, so that two ingest replicas never race on CREATE TABLE.
            await conn.execute("SELECT pg_advisory_xact_lock(dockping_lock('storage'))")
            await conn.execute(
                sql("ensure_partitions"),
                {"start_at": start, "end_at": end + timedelta(microseconds=1), "step": self.step},
            )
        self._partitions |= wanted

    async def append(self, conn: psycopg.AsyncConnection, batch: Batch) -> AppendResult:
        """Append a whole batch in one transaction; duplicates by identity are skipped."""
        probes: list[ProbeEvent] = []
        declared: list[ProbeEvent] = []  # targets no vantage reaches: a row, never an event
        lifecycle: list[ContainerEvent] = []
        heartbeats: list[HeartbeatEvent] = []
        inventories: list[InventoryEvent] = []
        for event in batch.events:
            if isinstance(event, ProbeEvent):
                (declared if event.vantage == "none" else probes).append(event)
            elif isinstance(event, ContainerEvent):
                lifecycle.append(event)
            elif isinstance(event, HeartbeatEvent):
                heartbeats.append(event)
            else:
                inventories.append(event)
        times = [e.time for e in batch.events]
        if times:
            await self.ensure_partitions(conn, min(times), max(times))
        others = _Others(lifecycle, heartbeats, inventories)
        agent_id = self._agents.get(batch.agent)
        cached = None
        if agent_id is not None and len(probes) == len(batch.events):
            cached = self._known_target_ids(_probe_keys(agent_id, probes))
        if (
            agent_id is not None
            and cached is not None
            and self._detailed.isdisjoint(cached)
            and not self._new_windows(probes, cached)
        ):
            # Nothing to write but probe events whose ids this writer knows (the usual
            # batch): the one call is the whole batch, as a transaction of its own, in one
            # round trip. The call sends the NOTIFY itself.
            await conn.set_autocommit(True)
            try:
                accepted, changed = await self._append_probes(
                    conn, agent_id, batch.agent, probes, cached, notify=True
                )
            finally:
                await conn.set_autocommit(False)
            self._stored.update(zip(cached, times, strict=True))
            return AppendResult(
                accepted=accepted,
                duplicates=len(batch.events) - accepted,
                changed_targets=frozenset(changed),
                changed_containers=frozenset(),
            )
        return await self._write(conn, batch, probes, declared, others)

    async def _write(
        self,
        conn: psycopg.AsyncConnection,
        batch: Batch,
        probes: list[ProbeEvent],
        declared: list[ProbeEvent],
        others: _Others,
    ) -> AppendResult:
        """The batch in a transaction: the ids it needs made first, then its events."""
        lifecycle, heartbeats = others.lifecycle, others.heartbeats
        new_agents: dict[str, int] = {}
        new_containers: dict[tuple[int, str], int] = {}
        new_targets: dict[TargetKey, int] = {}
        new_vantages: dict[TargetKey, str] = {}
        made_windows: dict[int, Window] = {}
        async with conn.transaction():
            agent_id = await self._agent_id(conn, batch.agent, new_agents)
            # Batches of one agent, and so of one target, fold one after the other.
            await conn.execute(sql("lock_agent"), {"agent_id": agent_id})
            probe_keys = _probe_keys(agent_id, probes)
            # None for a target not seen yet: the batch's are resolved from the tables.
            cached = None if declared else self._known_target_ids(probe_keys)
            dimensions = [*probes, *declared]
            keys = await self._container_keys(
                conn,
                agent_id,
                dimensions if cached is None else [],
                lifecycle,
                new_containers,
                [i for inventory in others.inventories for i in inventory.container_ids],
            )
            declared_ids: list[int] = []
            if cached is None:
                target_ids = await self._target_ids(
                    conn, dimensions, keys, new_targets, new_vantages, made_windows
                )
                target_ids, declared_ids = target_ids[: len(probes)], target_ids[len(probes) :]
            else:
                target_ids = cached
            # Those the upsert of targets wrote already are not written again.
            windows = {
                target_id: window
                for target_id, window in self._new_windows(probes, target_ids).items()
                if made_windows.get(target_id) != window
            }
            if windows:
                await _write_windows(conn, windows)
            accepted_probes, changed_targets = await self._append_probes(
                conn, agent_id, batch.agent, probes, target_ids, notify=False
            )
            if not _DETAILED.isdisjoint(map(_PROTOCOL, probes)):
                await _append_details(conn, probes, target_ids)
            accepted_lifecycle, changed_containers = await self._append_lifecycle(
                conn, lifecycle, keys
            )
            accepted_heartbeats = await self._append_heartbeats(conn, agent_id, heartbeats)
            # A declaration is taken each time (it only writes its target's row).
            changed_targets |= set(declared_ids)
            accepted_inventories = await self._append_inventories(
                conn, agent_id, others.inventories, keys, changed_containers
            )
            accepted = (
                accepted_probes
                + len(declared)
                + accepted_lifecycle
                + accepted_heartbeats
                + accepted_inventories
            )
            if accepted:
                await conn.execute(
                    sql("notify_events"),
                    {
                        "agent": batch.agent,
                        "targets": sorted(changed_targets),
                        "containers": sorted(changed_containers),
                    },
                )
        # Only ids that are committed may be cached: a rolled-back insert made no row.
        self._agents.update(new_agents)
        self._containers.update(new_containers)
        self._targets.update(new_targets)
        self._vantages.update(new_vantages)
        self._windows.update(made_windows)
        self._windows.update(windows)
        if cached is None:
            self._probe_targets.update(zip(probe_keys, target_ids, strict=True))
            self._detailed.update(
                t for k, t in zip(probe_keys, target_ids, strict=True) if k[4] in _DETAILED
            )
        # Every probe event of a committed batch is stored: appended now, or before.
        self._stored.update(zip(target_ids, [p.time for p in probes], strict=True))
        return AppendResult(
            accepted=accepted,
            duplicates=len(batch.events) - accepted,
            changed_targets=frozenset(changed_targets),
            changed_containers=frozenset(changed_containers),
        )

    def _new_windows(self, probes: list[ProbeEvent], target_ids: list[int]) -> dict[int, Window]:
        """The probe intervals and timeouts of these probes that differ from those stored."""
        known = self._windows
        return {
            target_id: window
            for probe, target_id in zip(probes, target_ids, strict=True)
            if probe.interval_ms is not None
            and probe.timeout_ms is not None
            and known.get(target_id) != (window := (probe.interval_ms, probe.timeout_ms))
        }

    def _known_target_ids(self, keys: list[ProbeKey]) -> list[int] | None:
        """The target ids of these probes, when this writer knows every one."""
        try:
            return [self._probe_targets[key] for key in keys]
        except KeyError:
            return None

    def _unknown(
        self, probes: list[ProbeEvent], target_ids: list[int], times: list[datetime]
    ) -> tuple[list[ProbeEvent], list[int], list[datetime]]:
        """The probes, target ids and times without the events known to be stored.

        A batch sent again (its answer was lost) is mostly the newest event of each target,
        which this writer just committed: those are duplicates without a lookup or a
        speculative insert in the database, which cost more than appending a new event.
        """
        known = list(map(self._stored.get, target_ids))
        if not any(map(operator.eq, known, times)):
            return probes, target_ids, times  # the usual batch: none known as stored
        keep = [i for i, pair in enumerate(zip(known, times, strict=True)) if pair[0] != pair[1]]
        return [probes[i] for i in keep], [target_ids[i] for i in keep], [times[i] for i in keep]

    async def _agent_id(
        self, conn: psycopg.AsyncConnection, name: str, made: dict[str, int]
    ) -> int:
        if name in self._agents:
            return self._agents[name]
        row = await (await conn.execute(sql("upsert_agent"), {"name": name})).fetchone()
        assert row is not None
        made[name] = row[0]
        return int(row[0])

    async def _container_keys(
        self,
        conn: psycopg.AsyncConnection,
        agent_id: int,
        probes: list[ProbeEvent],
        lifecycle: list[ContainerEvent],
        made: dict[tuple[int, str], int],
        listed: list[str],
    ) -> dict[str, int]:
        keys: dict[str, int] = {}
        pending: dict[str, tuple[str, str, str, str]] = {}
        for probe in probes:
            cached = self._containers.get((agent_id, probe.container_id))
            if cached is not None:
                keys[probe.container_id] = cached
            elif probe.container_id not in pending:
                pending[probe.container_id] = (probe.container_name, "", "", "")
        for container_id in listed:
            # An inventory names containers by id only: one not seen before gets its key now.
            cached = self._containers.get((agent_id, container_id))
            if cached is not None:
                keys[container_id] = cached
            elif container_id not in pending:
                pending[container_id] = ("", "", "", "")
        # Lifecycle events carry the container's metadata (a rename, say): always write it.
        for event in sorted(lifecycle, key=lambda e: e.time):
            pending[event.container_id] = (
                event.name,
                event.image,
                event.compose_project,
                event.compose_service,
            )
        if not pending:
            return keys
        rows = _Containers()
        for container_id, (name, image, project, service) in sorted(pending.items()):
            rows.ids.append(container_id)
            rows.names.append(name)
            rows.images.append(image)
            rows.projects.append(project)
            rows.services.append(service)
        cursor = await conn.execute(
            sql("upsert_containers"),
            {
                "agent_id": agent_id,
                "container_ids": rows.ids,
                "names": rows.names,
                "images": rows.images,
                "projects": rows.projects,
                "services": rows.services,
            },
        )
        for container_id, key in await cursor.fetchall():
            keys[container_id] = key
            made[(agent_id, container_id)] = key
        return keys

    async def _target_ids(
        self,
        conn: psycopg.AsyncConnection,
        probes: list[ProbeEvent],
        keys: dict[str, int],
        made: dict[TargetKey, int],
        made_vantages: dict[TargetKey, str],
        made_windows: dict[int, Window],
    ) -> list[int]:
        wanted: list[TargetKey] = []
        pending: dict[TargetKey, ProbeEvent] = {}
        for probe in probes:
            key: TargetKey = (keys[probe.container_id], probe.ip, probe.port, probe.protocol)
            wanted.append(key)
            if key in pending:
                continue
            if key not in self._targets or (
                probe.vantage is not None and self._vantages.get(key) != probe.vantage
            ):
                pending[key] = probe
        found: dict[TargetKey, int] = {}
        if pending:
            ordered = sorted(
                pending.items(),
                key=lambda item: (item[0][0], item[0][1], item[0][2] or 0, item[0][3]),
            )
            cursor = await conn.execute(
                sql("upsert_targets"),
                {
                    "container_keys": [k[0] for k, _ in ordered],
                    "ips": [k[1] for k, _ in ordered],
                    "ports": [k[2] for k, _ in ordered],
                    "protocols": [k[3] for k, _ in ordered],
                    "networks": [p.network for _, p in ordered],
                    "vantages": [
                        None if p.vantage is None else VANTAGE_CODES[p.vantage] for _, p in ordered
                    ],
                    "intervals": [_window(p)[0] for _, p in ordered],
                    "timeouts": [_window(p)[1] for _, p in ordered],
                },
            )
            made_vantages.update((k, p.vantage) for k, p in ordered if p.vantage is not None)
            for container_key, ip, port, protocol, target_id in await cursor.fetchall():
                found[(container_key, ip, port, protocol)] = target_id
        # The database writes an IPv6 address in its canonical form; match on that form too.
        canonical = {(k[0], canonical_ip(k[1]), k[2], k[3]): v for k, v in found.items()}
        made.update(found)
        for key, probe in pending.items():
            interval, timeout = _window(probe)
            if interval is not None and timeout is not None:
                target_id = found.get(key) or canonical[(key[0], canonical_ip(key[1]), *key[2:])]
                made_windows[target_id] = (interval, timeout)
        ids: list[int] = []
        for key in wanted:
            target_id = self._targets.get(key) or found.get(key)
            if target_id is None:
                target_id = canonical[(key[0], canonical_ip(key[1]), key[2], key[3])]
                made[key] = target_id
            ids.append(target_id)
        return ids

    async def _append_probes(
        self,
        conn: psycopg.AsyncConnection,
        agent_id: int,
        agent: str,
        probes: list[ProbeEvent],
        target_ids: list[int],
        *,
        notify: bool,
    ) -> tuple[int, set[int]]:
        """Append probe events and fold them into their targets' state (append_probes);
        return the events appended and the targets they changed."""
        probes, target_ids, times = self._unknown(probes, target_ids, [p.time for p in probes])
        if not probes:
            return 0, set()
        params = {
            "agent_id": agent_id,
            "agent": agent,
            "log_minutes": self.backend == "postgres",
            "notify": notify,
            **_probe_arrays(probes, target_ids, times),
        }
        try:
            cursor = await conn.execute(sql("append_probes"), params, prepare=True)
        except psycopg.errors.UniqueViolation as exc:
            # An event newer than its target's state is stored already: the fold never
            # leaves that, a hand edit can. The batch is refused (and kept by its agent).
            raise ProjectionBehind(
                "target_state is behind the stored probe events; run `dockping rebuild`"
            ) from exc
        row = await cursor.fetchone()
        assert row is not None
        accepted, changed = row
        return accepted, set(target_ids if changed is None else changed)

    async def _append_lifecycle(
        self, conn: psycopg.AsyncConnection, events: list[ContainerEvent], keys: dict[str, int]
    ) -> tuple[int, set[int]]:
        if not events:
            return 0, set()
        cursor = await conn.execute(
            sql("insert_container_events"),
            {
                "times": [e.time for e in events],
                "container_keys": [keys[e.container_id] for e in events],
                "actions": [e.action for e in events],
                "exit_codes": [e.exit_code for e in events],
                "details": [_detail(e) for e in events],
            },
        )
        rows = await cursor.fetchall()
        if not rows:
            return 0, set()
        await conn.execute(
            sql("update_container_state"),
            {
                "times": [r[0] for r in rows],
                "container_keys": [r[1] for r in rows],
                "actions": [r[2] for r in rows],
                "exit_codes": [r[3] for r in rows],
            },
        )
        detached = [r for r in rows if r[2] == "network_disconnect" and (r[4] or {}).get("network")]
        if detached:
            await conn.execute(
                sql("update_network_state"),
                {
                    "times": [r[0] for r in detached],
                    "container_keys": [r[1] for r in detached],
                    "networks": [r[4]["network"] for r in detached],
                },
            )
        health = [r for r in rows if r[2] == "health_status"]
        if health:
            await conn.execute(
                sql("update_container_health"),
                {
                    "times": [r[0] for r in health],
                    "container_keys": [r[1] for r in health],
                    "healths": [(r[4] or {}).get("health") for r in health],
                },
            )
        return len(rows), {r[1] for r in rows}

    async def _append_heartbeats(
        self, conn: psycopg.AsyncConnection, agent_id: int, beats: list[HeartbeatEvent]
    ) -> int:
        if not beats:
            return 0
        cursor = await conn.execute(
            sql("insert_heartbeats"),
            {
                "agent_id": agent_id,
                "times": [b.time for b in beats],
                "versions": [b.version for b in beats],
                "docker_ok": [b.docker_ok for b in beats],
                "targets": [b.targets for b in beats],
                "spool_bytes": [b.spool_bytes for b in beats],
                "dropped": [b.dropped for b in beats],
            },
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _append_inventories(
        self,
        conn: psycopg.AsyncConnection,
        agent_id: int,
        inventories: list[InventoryEvent],
        keys: dict[str, int],
        changed: set[int],
    ) -> int:
        """Append inventories, oldest first, and fold the newest; note the containers whose
        absence changed."""
        accepted = 0
        for inventory in sorted(inventories, key=lambda e: e.time):
            cursor = await conn.execute(
                sql("append_inventory"),
                {
                    "agent_id": agent_id,
                    "time": inventory.time,
                    "container_keys": Int4Array.of([keys[i] for i in inventory.container_ids]),
                },
            )
            row = await cursor.fetchone()
            assert row is not None
            accepted += bool(row[0])
            changed.update(row[1] or ())
        return accepted


@dataclass(frozen=True)
class _Others:
    """A batch's events other than probes."""

    lifecycle: list[ContainerEvent]
    heartbeats: list[HeartbeatEvent]
    inventories: list[InventoryEvent]


async def _write_windows(conn: psycopg.AsyncConnection, windows: dict[int, Window]) -> None:
    """Store targets' probe intervals and timeouts."""
    await conn.execute(sql("update_target_windows"), by_target(windows, "intervals", "timeouts"))


def _window(probe: ProbeEvent) -> tuple[int | None, int | None]:
    """A probe's window as stored: its interval and timeout, or neither."""
    if probe.interval_ms is None or probe.timeout_ms is None:
        return None, None
    return probe.interval_ms, probe.timeout_ms


def _probe_keys(agent_id: int, probes: list[ProbeEvent]) -> list[ProbeKey]:
    return [(agent_id, p.container_id, p.ip, p.port, p.protocol, p.vantage) for p in probes]


def _probe_arrays(
    probes: list[ProbeEvent], target_ids: list[int], times: list[datetime]
) -> dict[str, object]:
    """Probe events as the three arrays the append statements read."""
    return {
        "times": times,
        "target_ids": Int4Array.of(target_ids),
        "latencies": Int4Array.of([encode_latency(p.ok, p.latency_ms, p.error) for p in probes]),
    }


async def _append_details(
    conn: psycopg.AsyncConnection, probes: list[ProbeEvent], target_ids: list[int]
) -> None:
    """Store the changes among the http and https probes' details (see append_probe_details).

    Every such probe is passed, with a detail or not: one without an answer changes the
    status to none.
    """
    rows = [(p, t) for p, t in zip(probes, target_ids, strict=True) if p.protocol in _DETAILED]
    await conn.execute(
        sql("append_probe_details"),
        {
            "times": [p.time for p, _ in rows],
            "target_ids": [t for _, t in rows],
            "http_statuses": [p.http_status for p, _ in rows],
            "tls_not_after": [p.tls_not_after for p, _ in rows],
        },
    )


def _detail(event: ContainerEvent) -> Jsonb | None:
    detail: dict[str, object] = {}
    if event.health is not None:
        detail["health"] = event.health
    if event.network is not None:
        detail["network"] = event.network
    if event.action == "rename" and event.name:
        detail["name"] = event.name
    if event.note:
        detail["note"] = event.note  # why the container has no probe
    if event.labels:
        detail["labels"] = event.labels  # read by notification rules (dockping.notify=...)
    return Jsonb(detail) if detail else None
