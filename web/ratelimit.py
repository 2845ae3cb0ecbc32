"""Failed authentication attempts, limited per client address: past the limit, 429.

The one limiter of every place a secret is checked: ingest's token, query's bearer token
and /login, and the silences API. The address is the peer's, or what X-Forwarded-For says
only when the peer is a configured proxy (the services' trusted_proxies settings).

Each address has a bucket of `burst` failures that refills at `per_second`. An address
whose bucket is empty gets 429 with Retry-After for every request, a right token
included: otherwise a guesser would still learn, from the 202, when a guess was right.
Tokens are 256-bit random, so this bounds log noise and work more than it stops
guessing; a real agent only meets it if it shares an address with a guesser, and it
retries a 429 from its spool, so nothing is lost.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from web.errors import ApiError

# Enough for an operator fixing a token by hand; far too few to guess one.
BURST = 10
PER_SECOND = 0.2
# Memory stays bounded whoever floods us: past this many addresses the least recent goes.
MAX_ADDRESSES = 10_000


class FailureLimiter:
    """A token bucket of failed attempts per client address."""

    def __init__(
        self,
        burst: int = BURST,
        per_second: float = PER_SECOND,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_addresses = max_addresses
        self.clock = clock
        # address -> (failures still allowed, when that was computed)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, address: str, now: float) -> float:
        allowed, since = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), allowed + (now - since) * self.per_second)

    def retry_after(self, address: str) -> int:
        """Seconds this address must wait before it may try again; 0 when it may now."""
        now = self.clock()
        level = self._level(address, now)
        if level >= 1.0:
            return 0
        return max(1, math.ceil((1.0 - level) / self.per_second))

    def failed(self, address: str) -> None:
        """Count one failed attempt of this address."""
        now = self.clock()
        level = self._level(address, now)
        self._buckets[address] = (max(0.0, level - 1.0), now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)

    def check(self, address: str) -> None:
        """Raise 429 with Retry-After when this address has failed too often of late."""
        wait = self.retry_after(address)
        if wait:
            raise ApiError(
                429,
                "too_many_failures",
                f"too many failed authentication attempts from this address; retry in {wait}s",
                headers={"Retry-After": str(wait)},
            )

    def attempt(self, address: str, check: Callable[[], bool]) -> bool:
        """Check a secret for an address: 429 once it failed too often, else count a failure."""
        self.check(address)
        if check():
            return True
        self.failed(address)
        return False


def client_address(request: Any) -> str:
    """The address a request came from, as the server (and its trusted proxies) tell it."""
    client = request.client
    return str(client.host) if client else ""
