"""The compose files as tests read them, and the compose tool that runs them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.docker_support import unavailable

ROOT = Path(__file__).parent.parent
STACK = ROOT / "docker-compose.yml"
STACK_ENV = ROOT / ".env.example"
AGENT_ENV = ROOT / "deploy" / "agent.env.example"
SOCKET_PROXY = ROOT / "deploy" / "agent-socket-proxy.yml"
NO_LOCAL_AGENT = ROOT / "deploy" / "no-local-agent.yml"


def compose_tool() -> list[str]:
    """The compose plugin, or Debian's docker-compose; skips (or fails) where neither is."""
    if shutil.which("docker"):
        plugin = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False, timeout=30
        )
        if plugin.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    unavailable("no compose tool (the docker compose plugin or Debian's docker-compose)")
    raise AssertionError("unreachable")


def env_file(path: Path) -> dict[str, str]:
    """The variables of an env file, as compose reads the simple ones the examples hold."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip().strip("'\"")
    return found


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Write an env file, quoting what compose would otherwise split (AGENT_TOKENS' TOML)."""
    lines = [
        f"{name}='{value}'" if " " in value else f"{name}={value}" for name, value in values.items()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def services(path: Path) -> dict[str, dict[str, Any]]:
    """The services of a compose file, as YAML (anchors and merge keys resolved)."""
    found: dict[str, dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["services"]
    return found
