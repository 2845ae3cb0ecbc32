"""The agent's healthcheck: the file the running agent writes, and `dockping agent --check`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agent import health
from tests.services import Process, free_port, service_env, wait_for


def check(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`dockping agent --check` on a data dir, as the compose healthcheck runs it."""
    return subprocess.run(
        [sys.executable, "-m", "dockping", "agent", "--check"],
        env=service_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def written(
    data_dir: Path, *, age: float = 0.0, docker_ok: bool = True, ingest_ok: bool = True
) -> Path:
    """A health file as the agent writes it, `age` seconds ago."""
    data_dir.mkdir(parents=True, exist_ok=True)
    health.write(data_dir, health.Health(time.time() - age, docker_ok, ingest_ok, spool_bytes=42))
    return data_dir


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({}, None),
        ({"docker_ok": False}, "Docker does not answer"),
        ({"ingest_ok": False}, "ingest does not take the agent's events (42 bytes spooled)"),
        ({"age": health.STALE_AFTER + 5}, "the agent is stuck or stopped"),
    ],
)
def test_the_health_file_says_what_is_wrong(
    tmp_path: Path, state: dict[str, float | bool], expected: str | None
) -> None:
    """A fresh file with Docker and ingest answering is healthy; otherwise the problem is named."""
    found = health.problem(written(tmp_path, **state))  # type: ignore[arg-type]
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert expected in found


def test_a_missing_or_broken_file_is_unhealthy(tmp_path: Path) -> None:
    """No file (the agent never ran here) and a garbled one are both problems, named."""
    assert "has not started" in (health.problem(tmp_path) or "")
    (tmp_path / health.FILE_NAME).write_text("{not json", encoding="utf-8")
    assert str(tmp_path / health.FILE_NAME) in (health.problem(tmp_path) or "")


def test_the_check_command_exits_by_the_file(tmp_path: Path) -> None:
    """`dockping agent --check` exits 0 on a healthy file and 1, saying why, on another."""
    assert check(written(tmp_path / "good")).returncode == 0
    bad = check(written(tmp_path / "bad", docker_ok=False))
    assert bad.returncode == 1
    assert "unhealthy: Docker does not answer the agent" in bad.stderr
    assert check(tmp_path / "never").returncode == 1


def _nothing_answers(tmp_path: Path) -> dict[str, str]:
    """An agent's environment whose Docker and ingest are free ports: nothing listens there."""
    return service_env(
        tmp_path,
        DOCKPING_AGENT__DOCKER_URL=f"tcp://127.0.0.1:{free_port()}",
        DOCKPING_AGENT__INGEST_URL=f"http://127.0.0.1:{free_port()}",
        DOCKPING_INGEST__TOKEN="t",
    )


def test_a_running_agent_without_docker_or_ingest_is_unhealthy(tmp_path: Path) -> None:
    """An agent that reaches neither Docker nor ingest writes so, and the check fails on it."""
    env = _nothing_answers(tmp_path)
    agent = Process(["agent"], env, tmp_path / "agent.log")
    try:
        wait_for(lambda: (tmp_path / health.FILE_NAME).exists(), 30, "the health file")
        found = wait_for(lambda: health.problem(tmp_path), 30, "a problem")
        assert "Docker does not answer" in found
    finally:
        agent.stop()
    assert "Traceback" not in agent.output()


@pytest.mark.docker
def test_a_running_agent_that_reaches_docker_and_ingest_is_healthy(
    docker_engine: str, database_url: str, tmp_path: Path
) -> None:
    """With the local engine and a live ingest, the running agent's check passes."""
    env = service_env(tmp_path, DOCKPING_DATABASE__URL=database_url, DOCKPING_INGEST__TOKEN="t")
    ingest = Process(["ingest"], env, tmp_path / "ingest.log")
    url = f"http://127.0.0.1:{env['DOCKPING_INGEST__PORT']}/healthz"
    agent = None
    try:
        wait_for(lambda: httpx.get(url, timeout=2).status_code == 200, 60, "ingest /healthz")
        agent = Process(["agent"], env, tmp_path / "agent.log")
        wait_for(lambda: health.problem(tmp_path) is None, 60, "a healthy agent")
        assert check(tmp_path).returncode == 0
    finally:
        if agent is not None:
            agent.stop()
        ingest.stop()


def test_an_unwritable_health_file_leaves_the_agent_running(tmp_path: Path) -> None:
    """Where the health file cannot be written, the agent says so once and keeps running."""
    (tmp_path / health.FILE_NAME).mkdir(parents=True)
    env = _nothing_answers(tmp_path)
    agent = Process(["agent"], env, tmp_path / "agent.log")
    try:
        wait_for(lambda: "health.unwritable" in agent.output(), 30, "health.unwritable logged")
        time.sleep(health.EVERY + 1)
        assert agent.process.poll() is None
    finally:
        agent.stop()
    assert agent.output().count("health.unwritable") == 1
    assert "Traceback" not in agent.output()
