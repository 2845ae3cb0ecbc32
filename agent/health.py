"""The agent's health for a container healthcheck: a file the agent rewrites, and its check.

The agent runs without an HTTP port, so it writes its state (does Docker answer, does ingest
take what it sends) to a small file in its data dir every few seconds; `dockping agent
--check` reads it and exits 0 only when the file is fresh and both answer.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

FILE_NAME = "agent-health.json"
EVERY = 5.0
"""Seconds between two writes of the file."""
STALE_AFTER = 30.0
"""A file older than this is from an agent that hangs or has stopped."""


class Health(msgspec.Struct, frozen=True):
    """What the agent last knew: wall-clock time of writing, and whether each part answers."""

    time: float
    docker_ok: bool
    ingest_ok: bool
    spool_bytes: int


def write(data_path: Path, health: Health) -> None:
    """Replace the file at once, so that a reader never sees half of it."""
    path = data_path / FILE_NAME
    partial = path.with_suffix(".tmp")
    partial.write_bytes(msgspec.json.encode(health))
    partial.replace(path)


def problem(data_path: Path, now: float | None = None) -> str | None:
    """What is wrong with the agent, or None when it reaches Docker and ingest."""
    path = data_path / FILE_NAME
    try:
        health = msgspec.json.decode(path.read_bytes(), type=Health)
    except FileNotFoundError:
        return f"no {path}: the agent has not started (or has another data dir)"
    except msgspec.DecodeError as exc:
        return f"{path}: {exc}"
    age = (time.time() if now is None else now) - health.time
    if age > STALE_AFTER:
        return f"{path} is {age:.0f} s old: the agent is stuck or stopped"
    if not health.docker_ok:
        return "Docker does not answer the agent"
    if not health.ingest_ok:
        return f"ingest does not take the agent's events ({health.spool_bytes} bytes spooled)"
    return None
