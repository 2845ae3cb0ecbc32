"""A real Podman for tests: its own root, its own API socket, a busybox image FROM scratch.

Everything lives under one temporary directory (storage on vfs, so no mounts outlive it,
network configuration, events log), served by `podman system service` on a socket there.
CONTAINERS_CONF sets the rlimits where a sandbox refuses Podman's defaults.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from tests import required
from tests.docker_support import static_busybox

IMAGE = "localhost/dockping-test-busybox:latest"
CONTAINERFILE = (
    "FROM scratch\nCOPY busybox /bin/busybox\n"
    'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    'ENTRYPOINT ["/bin/busybox"]\n'
)


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail where DOCKPING_REQUIRE_PODMAN=1 says Podman must be there."""
    required.unavailable("podman", reason)


class Podman:
    """One Podman of our own: the CLI on its root, and its API service."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "podman.sock"
        conf = directory / "containers.conf"
        conf.write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            "[network]\n"
            f'network_config_dir = "{directory}/net"\n'
            "[engine]\n"
            'events_logger = "file"\n'
            f'events_logfile_path = "{directory}/events.log"\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.flags = [
            "--root",
            str(directory / "root"),
            "--runroot",
            str(directory / "run"),
            "--tmpdir",
            str(directory / "tmp"),
            "--storage-driver",
            "vfs",
        ]
        self.session = uuid.uuid4().hex[:8]
        self.service: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The Docker URL of its API."""
        return f"unix://{self.socket}"

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        """Run the podman CLI on this root; return its output."""
        done = subprocess.run(
            ["podman", *self.flags, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def start(self) -> None:
        """Build the image and serve the API."""
        busybox = static_busybox()
        if busybox is None:
            unavailable("no static busybox (Debian package busybox-static) to build the image")
        context = self.directory / "context"
        context.mkdir()
        shutil.copy(busybox, context / "busybox")
        (context / "Containerfile").write_text(CONTAINERFILE)
        self("build", "-q", "-t", IMAGE, str(context), timeout=300)
        log = (self.directory / "service.log").open("wb")
        self.service = subprocess.Popen(
            ["podman", *self.flags, "system", "service", "--time", "0", self.url],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        transport = httpx.HTTPTransport(uds=str(self.socket))
        while time.monotonic() < deadline:
            try:
                with httpx.Client(transport=transport, base_url="http://podman") as client:
                    if client.get("/v1.41/version").status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("podman system service did not answer within 30 s")

    def name(self, stem: str) -> str:
        """A unique name."""
        return f"dpp-{stem}-{self.session}-{uuid.uuid4().hex[:4]}"

    def run(self, stem: str, *args: str) -> str:
        """Start a busybox httpd on :8000 with extra `podman run` arguments; return its name."""
        name = self.name(stem)
        self("run", "-d", "--name", name, *args, IMAGE, "httpd", "-f", "-p", "8000")
        return name

    def ip(self, name: str, network: str = "podman") -> str:
        """A container's IP on a network, asked of Podman."""
        return self(
            "inspect",
            "-f",
            f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
            name,
        )

    def clear(self) -> None:
        """Remove every pod, container and network a test made."""
        self("pod", "rm", "-af", "-t", "0", check=False)
        self("rm", "-af", "-t", "0", check=False)
        self("network", "prune", "-f", check=False)

    def close(self) -> None:
        """Stop the service and remove everything under the directory."""
        self.clear()
        if self.service is not None:
            self.service.terminate()
            try:
                self.service.wait(30)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait()
        self("system", "reset", "-f", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_engine() -> Iterator[Podman]:
    """A Podman serving its API on a socket of its own; skips (or fails) where none can run."""
    if shutil.which("podman") is None:
        unavailable("no podman on PATH (Debian packages podman and catatonit)")
    engine = Podman(Path(tempfile.mkdtemp(prefix="dpp-", dir="/tmp")))
    try:
        engine.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        engine.close()
        unavailable(f"Podman cannot run here: {exc}")
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def podman(podman_engine: Podman) -> Iterator[Podman]:
    """The Podman, cleared of what the test made afterwards."""
    try:
        yield podman_engine
    finally:
        podman_engine.clear()
