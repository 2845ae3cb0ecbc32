"""Soak (`make soak`, about an hour): the chaos rig under load, then RSS growth of each process.

The system of tests/test_chaos.py (over 200 targets probed every second, two ingest replicas
behind a proxy, an embedded PostgreSQL, a real dockerd) goes through the six faults once,
then runs for DOCKPING_SOAK_SECONDS (default 3600) with a PostgreSQL restart every ten
minutes, sampling each process's resident memory every 30 s. The figure per process is its
memory at the end over its memory once warm (the median of its first five minutes): the
target is flat, within 10 %. At the end every probe is accounted for by identity.

`make bench` skips it (run() returns no figures): it is far too long for a benchmark pass.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import Figure

WARM_SECONDS = 300
SAMPLE_SECONDS = 30
POSTGRES_EVERY = 600


def run() -> list[Figure]:
    """No figures under `make bench`; `make soak` runs soak() instead."""
    return []


def soak(seconds: float) -> tuple[list[Figure], bool]:
    """Run the soak for `seconds` of steady load; return the figures and whether all held."""
    from tests.chaos_support import ChaosRig, build_busybox_image, restart_postgres

    workdir = Path(tempfile.mkdtemp(prefix="dockping-soak-"))
    rig = ChaosRig(workdir, build_busybox_image(), uuid.uuid4().hex[:8])
    samples: dict[str, list[tuple[float, int]]] = {}
    figures: list[Figure] = []
    try:
        rig.start(64 * 1024 * 1024)
        time.sleep(10)
        for report in (
            rig.fault_kill_ingest(),
            rig.fault_restart_postgres(),
            rig.fault_restart_dockerd(),
            rig.fault_kill_agent(256 * 1024),
            rig.fault_fill_spool(),
            rig.fault_replica(),
        ):
            print(f"   {report}", flush=True)
            figures.append(Figure(f"recovery: {report.name}", report.recovery_s, "s"))
        rig.start_ingest(0)  # both replicas for the steady hour
        started = time.monotonic()
        next_restart = started + POSTGRES_EVERY
        while (elapsed := time.monotonic() - started) < seconds:
            for name, kib in rig.rss().items():
                if name != "postgres":  # restarted every ten minutes on purpose
                    samples.setdefault(name, []).append((elapsed, kib))
            if time.monotonic() >= next_restart:
                restart_postgres(rig.postgres, 10)
                next_restart += POSTGRES_EVERY
            time.sleep(SAMPLE_SECONDS)
        accounting = rig.finish()
    finally:
        rig.close()
    held = not accounting.missing and not accounting.unexpected and not accounting.duplicates
    figures.append(Figure("probes performed", accounting.performed, "events"))
    figures.append(Figure("probes lost", len(accounting.missing), "events", target="0", met=held))
    for name, series in sorted(samples.items()):
        warm = [kib for at, kib in series if at <= min(WARM_SECONDS, seconds / 4)] or [series[0][1]]
        baseline = statistics.median(warm)
        final = statistics.median(kib for _, kib in series[-4:])
        met = final <= baseline * 1.10
        held = held and met
        figures.append(
            Figure(
                f"RSS of {name} at the end",
                final / 1024,
                "MiB",
                baseline=baseline / 1024,
                baseline_name="once warm",
                target="<= 1.10 of once warm",
                met=met,
            )
        )
    return figures, held


def main() -> int:
    """`make soak`: print the figures; exit 1 when an event was lost or memory grew."""
    seconds = float(os.environ.get("DOCKPING_SOAK_SECONDS", "3600"))
    print(f"== soak: {seconds:.0f} s of load after the six faults", flush=True)
    figures, held = soak(seconds)
    for figure in figures:
        print(f"   {figure.line()}", flush=True)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
