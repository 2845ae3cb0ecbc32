"""One definition of status: dockping_target_status decides, against a reference model, and
nothing else in the code or the schema writes a status word."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).parent.parent
T0 = datetime(2026, 11, 1, tzinfo=UTC)
ACTIONS = [
    None,
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
]
STOPPING = {"stop", "die", "kill", "oom", "destroy"}
STATUS_WORD = re.compile(r"'(up|down|stale|stopped|unknown|gone)'")
# The status function and the two that read its word (the sort order, since when).
STATUS_FUNCTIONS = {"dockping_target_status", "dockping_status_rank", "dockping_status_since"}
# The roll-up of address statuses into container and project statuses (migration 18): it reads
# the address statuses by name, and decides only a group's (tests/test_query_groups.py holds it
# to its own reference model).
ROLLUP_FUNCTIONS = {
    "dockping_rollup_status",
    "dockping_status_severity",
    "dockping_worst_status",
    "dockping_container_status",
}
ROLLUP_FILES = {"0018_groups.sql", "groups.sql"}

times = st.one_of(st.none(), st.integers(0, 100).map(lambda s: T0 + timedelta(seconds=s)))


def reference(
    action: str | None,
    action_at: datetime | None,
    detached_at: datetime | None,
    absent: bool,
    inventory_at: datetime | None,
    last_probe_at: datetime | None,
    latency_us: int | None,
    fresh_until: datetime | None,
    agent_silent: bool,
    as_of: datetime,
) -> str:
    """The status rules of the README's table, one after the other."""
    never = datetime.min.replace(tzinfo=UTC)
    probed = last_probe_at or never
    stopping = action in STOPPING
    if action == "destroy":
        return "gone"
    # Missing from an inventory (every container the engine holds) newer than its last probe
    # and lifecycle event, whatever that event was.
    if absent and inventory_at is not None and inventory_at > max(probed, action_at or never):
        return "gone"
    if not stopping and detached_at is not None and detached_at >= probed:
        return "gone"
    if agent_silent:
        return "stale"
    if stopping and (last_probe_at is None or (action_at is not None and action_at >= probed)):
        return "stopped"
    if last_probe_at is None:
        return "unknown"
    if fresh_until is not None and fresh_until < as_of:
        return "stale"
    if action == "pause":
        return "down"
    return "up" if latency_us is not None and latency_us >= 0 else "down"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    action=st.sampled_from(ACTIONS),
    action_at=times,
    detached_at=times,
    absent=st.booleans(),
    inventory_at=times,
    probe=st.one_of(st.none(), st.tuples(times.filter(bool), st.sampled_from([-2, -1, 0, 900]))),
    fresh_until=times,
    agent_silent=st.booleans(),
    as_of=times.filter(bool),
)
def test_the_status_function_agrees_with_the_reference_model(
    template_url: str,
    action: str | None,
    action_at: datetime | None,
    detached_at: datetime | None,
    absent: bool,
    inventory_at: datetime | None,
    probe: tuple[datetime, int] | None,
    fresh_until: datetime | None,
    agent_silent: bool,
    as_of: datetime,
) -> None:
    """For any lifecycle, probe, inventory, freshness and agent, the SQL status is the model's."""
    if action is not None and action_at is None:
        action_at = T0  # a lifecycle row always has its time
    last_probe_at, latency_us = probe if probe is not None else (None, None)
    if last_probe_at is None:
        fresh_until = None  # the freshness of no probe is null
    args = (
        action,
        action_at,
        detached_at,
        absent,
        inventory_at,
        last_probe_at,
        latency_us,
        fresh_until,
        agent_silent,
        as_of,
    )
    with psycopg.connect(template_url) as conn:
        row = conn.execute(
            "SELECT dockping_target_status(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", args
        ).fetchone()
    assert row is not None
    assert reference(*args) == row[0]  # type: ignore[arg-type]


def test_no_other_function_or_view_writes_a_status_word(template_url: str) -> None:
    """In the migrated schema, only the status function and its two readers hold a status word,
    besides the roll-up of group statuses."""
    with psycopg.connect(template_url) as conn:
        functions = conn.execute(
            "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = current_schema()"
        ).fetchall()
        views = conn.execute(
            "SELECT viewname, definition FROM pg_views WHERE schemaname = current_schema()"
        ).fetchall()
    holders = {name for name, text in [*functions, *views] if STATUS_WORD.search(text or "")}
    assert holders == STATUS_FUNCTIONS | ROLLUP_FUNCTIONS


def _status_section(text: str) -> str:
    """Migration 13 without its status section."""
    before, _, rest = text.partition("-- status: begin")
    _, _, after = rest.partition("-- status: end")
    return before + after


def test_no_query_or_module_writes_a_status_word() -> None:
    """Outside the status section of migration 13, no query, migration since or module (SQL in a
    Python string included) holds a status word as an SQL literal, but the group roll-up's."""
    found = []
    newer = [p for p in (ROOT / "db" / "migrations").glob("*.sql") if int(p.name[:4]) >= 13]
    files = [*(ROOT / "db" / "queries").glob("*.sql"), *newer]
    for part in ("agent", "ingest", "query", "notify", "db", "dockping", "bench"):
        files += (ROOT / part).rglob("*.py")
    for path in files:
        if path.name in ROLLUP_FILES:
            continue
        text = path.read_text(encoding="utf-8")
        if path.name.startswith("0013_"):
            text = _status_section(text)
        found += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in STATUS_WORD.finditer(text)]
    assert found == []
