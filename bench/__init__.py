"""Benchmarks: each figure is printed as a ratio to a baseline measured in the same run."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

import httpx


def wait_healthy(
    base_url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60
) -> None:
    """Wait until a service answers 200 on /healthz; fail if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base_url} did not become healthy")


@dataclass(frozen=True)
class Figure:
    """One measured figure, its baseline from the same run, and the target ratio."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    """What the issue asks, in words (for example ">= 0.5 of raw COPY")."""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        """value / baseline, when there is a baseline."""
        if not self.baseline:
            return None
        return self.value / self.baseline

    def line(self) -> str:
        """One printed line."""
        text = f"{self.name:48} {self.value:12.3f} {self.unit:10}"
        if self.ratio is not None:
            text += f" ratio {self.ratio:6.3f} of {self.baseline_name} ({self.baseline:.3f})"
        if self.target:
            verdict = "" if self.met is None else (" MET" if self.met else " NOT MET")
            text += f"  target {self.target}{verdict}"
        return text
