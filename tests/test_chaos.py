"""Chaos under load: six faults, one after another, with every probe accounted for by identity.

Over 200 targets (busybox containers with httpd on 55 ports each) are probed every second
by a real agent, through a round-robin proxy, into real ingest processes and an embedded
PostgreSQL that the test restarts. The faults run in order; after each, the store holds
no duplicate and its projection equals a rebuild from events. At the end, every probe in
the agent's identity log is stored exactly once, or counted as dropped by a full spool.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos_support import PORTS_PER_CONTAINER, TARGET_CONTAINERS, ChaosRig
from tests.services import wait_for

pytestmark = pytest.mark.docker
# Large enough that no 10 s outage fills it; the agent restarted by fault 4 gets the small one.
ROOMY_SPOOL = 64 * 1024 * 1024
SMALL_SPOOL = 256 * 1024


@pytest.fixture
def rig(busybox_image: str, tmp_path: Path) -> Iterator[ChaosRig]:
    """The whole system as processes, torn down afterwards."""
    rig = ChaosRig(tmp_path, busybox_image, uuid.uuid4().hex[:8])
    try:
        yield rig
    finally:
        rig.close()
        report = tmp_path / "chaos-report.txt"
        report.write_text("\n".join(repr(r) for r in rig.reports))


@pytest.mark.timeout(900)
def test_every_probe_survives_six_faults_under_load(rig: ChaosRig) -> None:
    """Through six faults, each probe is stored once or counted as dropped, and the projection holds."""
    rig.start(ROOMY_SPOOL)
    expected_targets = TARGET_CONTAINERS * PORTS_PER_CONTAINER
    wait_for(lambda: rig.targets() >= expected_targets, 120, f"{expected_targets} targets stored")
    rate = rig.rate()
    print(f"\nchaos: {rig.targets()} targets, {rate:.0f} events/s stored")

    faults = os.environ.get("DOCKPING_CHAOS_FAULTS", "1,2,3,4,5,6").split(",")
    for fault in faults:
        if fault == "1":
            report = rig.fault_kill_ingest()
        elif fault == "2":
            report = rig.fault_restart_postgres()
        elif fault == "3":
            report = rig.fault_restart_dockerd()
        elif fault == "4":
            report = rig.fault_kill_agent(SMALL_SPOOL)
        elif fault == "5":
            report = rig.fault_fill_spool()
        elif fault == "6":
            report = rig.fault_replica()
        else:
            raise AssertionError(f"DOCKPING_CHAOS_FAULTS: unknown fault {fault!r}")
        print(
            f"chaos: {report.name}: away {report.outage_s:.1f} s, events flowing again"
            f" {report.recovery_s:.1f} s later, duplicates {report.duplicates},"
            f" projection equal to rebuild: {report.projection_equal}"
        )
        assert report.duplicates == 0, report
        assert report.projection_equal, report

    accounting = rig.finish()
    print(
        f"chaos: performed {accounting.performed}, stored {accounting.stored},"
        f" dropped by a full spool {accounting.dropped} (reported {accounting.reported_dropped}),"
        f" lost {len(accounting.missing)}"
    )
    assert accounting.performed > 0
    assert accounting.missing[:20] == []
    assert accounting.unexpected[:20] == []
    assert accounting.duplicates == 0
    # The agent's heartbeats count drops of every event type: probes, container events, heartbeats.
    assert accounting.dropped_all_types == accounting.reported_dropped
    if "5" in faults:
        assert accounting.dropped > 0
    assert accounting.performed - accounting.dropped <= accounting.stored
