"""Make uv available in .tools/bin without needing pip or venv on the machine.

Uses `uv` from PATH when there is one. Otherwise it downloads the uv wheel for this
platform from PyPI (the one registry a fresh machine is sure to reach), checks its
SHA-256 against PyPI's record, and unpacks the uv binary from it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import stat
import sys
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

INDEX = os.environ.get("DOCKPING_PYPI_JSON", "https://pypi.org/pypi/uv/json")
TAGS = {
    "x86_64": ("manylinux", "x86_64"),
    "aarch64": ("manylinux", "aarch64"),
    "arm64": ("macosx", "arm64"),
}


def main() -> int:
    """Place a uv binary at .tools/bin/uv; print its path."""
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".tools") / "bin" / "uv"
    if target.exists():
        print(target)
        return 0
    found = shutil.which("uv")
    target.parent.mkdir(parents=True, exist_ok=True)
    if found:
        target.symlink_to(found)
        print(target)
        return 0
    machine = platform.machine().lower()
    if machine not in TAGS:
        print(f"bootstrap_uv: no uv wheel known for {machine}; install uv by hand", file=sys.stderr)
        return 1
    system, arch = TAGS[machine]
    with urllib.request.urlopen(INDEX, timeout=60) as response:  # noqa: S310 - fixed https URL
        release = json.load(response)
    wheels = [
        f
        for f in release["urls"]
        if f["filename"].endswith(".whl")
        and system in f["filename"]
        and arch in f["filename"]
        and "musl" not in f["filename"]
    ]
    if not wheels:
        print(f"bootstrap_uv: PyPI lists no uv wheel for {system}/{arch}", file=sys.stderr)
        return 1
    wheel = wheels[0]
    # Mirrors may list the file relative to the index.
    url = urllib.parse.urljoin(INDEX, wheel["url"])
    with urllib.request.urlopen(url, timeout=300) as response:  # noqa: S310
        data = response.read()
    if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
        print("bootstrap_uv: the downloaded wheel does not match PyPI's checksum", file=sys.stderr)
        return 1
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        member = next(n for n in archive.namelist() if n.endswith("/scripts/uv"))
        target.write_bytes(archive.read(member))
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
