"""Ingest's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    """The counters ingest keeps, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batches = Counter(
            "dockping_ingest_batches_total", "Batches stored.", registry=self.registry
        )
        self.events = Counter(
            "dockping_ingest_events_total",
            "Events received, by result.",
            ["result"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "dockping_ingest_rejected_total",
            "Requests rejected, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.write_seconds = Histogram(
            "dockping_ingest_write_seconds",
            "Time to store one batch.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.pool_size = Gauge(
            "dockping_ingest_pool_connections",
            "Pool connections, by state.",
            ["state"],
            registry=self.registry,
        )
