"""Parts a test may skip without (Docker, a browser, TimescaleDB), unless CI requires them."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(part: str, reason: str) -> NoReturn:
    """Skip, saying why, or fail where DOCKPING_REQUIRE_<PART>=1 says the part must be there."""
    variable = f"DOCKPING_REQUIRE_{part.upper()}"
    if os.environ.get(variable) == "1":
        pytest.fail(f"{reason} ({variable}=1)")
    pytest.skip(f"{reason}; set {variable}=1 to make this a failure")
