"""What the projection's property tests share: probe outcomes, events, a reference fold."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from dockping.contract import ProbeEvent

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
agent_numbers = itertools.count()

Outcome = tuple[bool, float | None, str | None]

# A success with a latency, or a failure with an error.
outcome = st.one_of(
    st.floats(0, 500, allow_nan=False).map(lambda ms: (True, round(ms, 3), None)),
    st.sampled_from(["refused", "timeout", "unreachable", "reset", "other"]).map(
        lambda e: (False, None, e)
    ),
)


def probe_events(data: list[tuple[int, int, Outcome]]) -> list[ProbeEvent]:
    """One probe of container c<target> at BASE + second seconds per drawn item."""
    return [
        ProbeEvent(
            time=BASE + timedelta(seconds=second),
            container_id=f"c{target}",
            ip="10.0.0.1",
            port=80,
            ok=ok,
            latency_ms=latency,
            error=error,  # type: ignore[arg-type]
        )
        for target, second, (ok, latency, error) in data
    ]


def resent_and_shuffled(
    events: list[ProbeEvent], rng: random.Random, share: float
) -> list[ProbeEvent]:
    """The events with about `share` of them sent twice, in a random order."""
    sent = events + [e for e in events if rng.random() < share]
    rng.shuffle(sent)
    return sent
