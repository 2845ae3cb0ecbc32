"""A real Docker engine for tests: availability, a busybox image FROM scratch, containers."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests import required

IMAGE = "dockping-test-busybox:latest"
LABEL = "dockping.test"
_BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox")


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail where DOCKPING_REQUIRE_DOCKER=1 says Docker must be there."""
    required.unavailable("docker", reason)


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    """Run the docker CLI and return its output."""
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def static_busybox() -> Path | None:
    """A statically linked busybox (Debian's busybox-static), or None."""
    for candidate in _BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.exists():
            # A dynamic binary names its loader (PT_INTERP) in its first few hundred bytes.
            with path.open("rb") as binary:
                head = binary.read(4096)
            if head.startswith(b"\x7fELF") and b"ld-linux" not in head and b"ld-musl" not in head:
                return path
    return None


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The Docker engine's version; skips (or fails) where none is reachable."""
    if shutil.which("docker") is None:
        unavailable("no docker CLI on PATH")
    try:
        version = docker("version", "--format", "{{.Server.Version}}", timeout=20)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        unavailable(f"no Docker engine reachable: {exc}")
    return version


def build_image(busybox: Path) -> str:
    """Build the image FROM scratch holding a static busybox; return its name."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = (
            b"FROM scratch\nCOPY busybox /bin/busybox\n"
            b'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            b'ENTRYPOINT ["/bin/busybox"]\n'
        )
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(str(busybox), arcname="busybox")
    done = subprocess.run(
        ["docker", "build", "-q", "-t", IMAGE, "-"],
        input=context.getvalue(),
        capture_output=True,
        timeout=300,
        check=False,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"building the test image failed: {done.stderr.decode()}")
    return IMAGE


@pytest.fixture(scope="session")
def busybox_image(docker_engine: str) -> str:
    """An image FROM scratch holding the static busybox, built once per session."""
    busybox = static_busybox()
    if busybox is None:
        unavailable("no static busybox (Debian package busybox-static) to build the test image")
    return build_image(busybox)


class Containers:
    """Starts labelled test containers and removes them all afterwards."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.session = uuid.uuid4().hex[:8]
        self.names: list[str] = []

    def name(self, stem: str) -> str:
        """A unique container name."""
        return f"dpt-{stem}-{self.session}-{len(self.names)}"

    def run(
        self,
        stem: str,
        *command: str,
        expose: tuple[int, ...] = (),
        labels: dict[str, str] | None = None,
        network: str | None = None,
        options: tuple[str, ...] = (),
    ) -> str:
        """Start a container (with more `docker run` options, if any); return its name."""
        name = self.name(stem)
        args = ["run", "-d", "--name", name, "--label", f"{LABEL}={self.session}"]
        for port in expose:
            args += ["--expose", str(port)]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        if network:
            args += ["--network", network]
        docker(*args, *options, self.image, *command)
        self.names.append(name)
        return name

    def ip(self, name: str, network: str = "bridge") -> str:
        """A container's IP on a network, asked of Docker."""
        return docker(
            "inspect",
            "-f",
            f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
            name,
        )

    def cleanup(self) -> None:
        """Remove every container this session made."""
        ids = docker("ps", "-aq", "--filter", f"label={LABEL}={self.session}", check=False).split()
        if ids:
            docker("rm", "-f", *ids, check=False)


@pytest.fixture
def containers(busybox_image: str) -> Iterator[Containers]:
    """A factory of test containers, removed after the test."""
    made = Containers(busybox_image)
    try:
        yield made
    finally:
        made.cleanup()
