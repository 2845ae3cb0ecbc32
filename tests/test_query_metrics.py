"""The /metrics text built from many rows: whole families, in bounded memory."""

from __future__ import annotations

from typing import Any

from query.metrics import HEADERS, SPILL_AFTER, Exposition


def _rows(count: int) -> list[dict[str, Any]]:
    """Targets of a fleet: every third down, every tenth stale, every fifth over HTTP."""
    return [
        {
            "agent": "host-a",
            "container_name": f"web-{n}",
            "ip": f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
            "port": 80,
            "protocol": "http" if n % 5 == 0 else "tcp",
            "status": "stale" if n % 10 == 0 else ("down" if n % 3 == 0 else "up"),
            "latency_ms": None if n % 3 == 0 else 1.5,
            "http_status": 200 if n % 5 == 0 else None,
            "tls_not_after": None,
        }
        for n in range(count)
    ]


def test_a_large_scrape_spools_to_disk_and_keeps_each_family_whole() -> None:
    """Past SPILL_AFTER bytes a family's series go to disk, and the text still lists each family once, all its series together."""
    rows = _rows(30_000)
    scrape = Exposition()
    for row in rows:
        scrape.add(row)
    scrape._flush(1)
    assert scrape.spools[1]._rolled  # type: ignore[attr-defined]
    assert scrape.spools[1].tell() > SPILL_AFTER
    text = b"".join(scrape.chunks()).decode()
    lines = text.splitlines()
    families = [line.split("{")[0] for line in lines if not line.startswith("#")]
    # Each family's series in one run, in the order of HEADERS.
    runs = [name for i, name in enumerate(families) if i == 0 or families[i - 1] != name]
    assert runs == [
        "dockping_target_up",
        "dockping_target_stale",
        "dockping_target_latency_seconds",
        "dockping_target_http_status",
    ]
    assert families.count("dockping_target_stale") == len(rows)
    assert families.count("dockping_target_up") == sum(r["status"] != "stale" for r in rows)
    assert sum(line.startswith("# TYPE") for line in lines) == len(HEADERS)
    assert all(spool.closed for spool in scrape.spools)
