"""Prometheus exposition of target state. Labels: agent, container, ip, port, protocol.

Cardinality is one series per current target per metric; gone containers drop out. A stale
target (nothing vouches for its last probe any more) has no dockping_target_up series and no
latency: dockping_target_stale says so instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from typing import Any


def _label(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# The families of a scrape, in the order they are written: a header, then every series.
HEADERS = (
    "# HELP dockping_target_up Whether the last probe of the target succeeded.\n"
    "# TYPE dockping_target_up gauge\n",
    "# HELP dockping_target_stale Whether no recent probe vouches for the target's status.\n"
    "# TYPE dockping_target_stale gauge\n",
    "# HELP dockping_target_latency_seconds Connect time of the last successful probe.\n"
    "# TYPE dockping_target_latency_seconds gauge\n",
    "# HELP dockping_target_http_status HTTP status code of the last HTTP(S) probe.\n"
    "# TYPE dockping_target_http_status gauge\n",
    "# HELP dockping_target_tls_not_after_seconds When the target's TLS certificate expires"
    " (Unix time).\n"
    "# TYPE dockping_target_tls_not_after_seconds gauge\n",
)
UP, STALE, LATENCY, HTTP_STATUS, TLS_NOT_AFTER = range(len(HEADERS))
# A family's lines are buffered this many at a time, and spooled to disk past SPILL_AFTER bytes.
FLUSH_EVERY = 4096
SPILL_AFTER = 1 << 20
CHUNK = 1 << 16


class Exposition:
    """A scrape being written: each family's series spooled as the rows arrive (the text format
    wants a family's lines together, the rows come a target at a time), so that a fleet's scrape
    holds a bounded amount in memory and is streamed out afterwards."""

    def __init__(self) -> None:
        # Open past this call: chunks() or close() closes them.
        self.spools = [
            tempfile.SpooledTemporaryFile(max_size=SPILL_AFTER)  # noqa: SIM115
            for _ in HEADERS
        ]
        self.pending: list[list[str]] = [[] for _ in HEADERS]

    def add(self, row: Mapping[str, Any]) -> None:
        """Add one dockping_latest row's series."""
        labels = ",".join(
            f'{name}="{_label(row[key])}"'
            for name, key in (
                ("agent", "agent"),
                ("container", "container_name"),
                ("ip", "ip"),
                ("port", "port"),
                ("protocol", "protocol"),
            )
        )
        is_stale = row["status"] == "stale"
        self._line(STALE, f"dockping_target_stale{{{labels}}} {1 if is_stale else 0}")
        if is_stale:
            return
        is_up = row["status"] == "up"
        self._line(UP, f"dockping_target_up{{{labels}}} {1 if is_up else 0}")
        if row["latency_ms"] is not None:
            seconds = float(row["latency_ms"]) / 1000
            self._line(LATENCY, f"dockping_target_latency_seconds{{{labels}}} {seconds:.6f}")
        if row.get("http_status") is not None:
            code = int(row["http_status"])
            self._line(HTTP_STATUS, f"dockping_target_http_status{{{labels}}} {code}")
        if row.get("tls_not_after") is not None:
            expiry = float(row["tls_not_after"])
            self._line(
                TLS_NOT_AFTER, f"dockping_target_tls_not_after_seconds{{{labels}}} {expiry:.0f}"
            )

    def _line(self, family: int, line: str) -> None:
        pending = self.pending[family]
        pending.append(line)
        if len(pending) >= FLUSH_EVERY:
            self._flush(family)

    def _flush(self, family: int) -> None:
        pending = self.pending[family]
        if pending:
            self.spools[family].write(("\n".join(pending) + "\n").encode())
            pending.clear()

    def chunks(self) -> Iterator[bytes]:
        """The text format, a family after the other, in chunks; then the spools are gone."""
        try:
            for family, header in enumerate(HEADERS):
                self._flush(family)
                spool = self.spools[family]
                yield header.encode()
                spool.seek(0)
                while chunk := spool.read(CHUNK):
                    yield chunk
        finally:
            self.close()

    def close(self) -> None:
        """Drop the spools (and their files, if they spilled)."""
        for spool in self.spools:
            spool.close()
