"""Local stand-ins for the images the compose stack names, built from Debian's packages.

No image can be pulled here, so `make up` runs on images built from what is reachable: a
`debootstrap --variant=minbase bookworm` root from Debian's mirror, Debian's packages on it,
and the static busybox. Each stand-in is tagged exactly as docker-compose.yml, the Dockerfile
and deploy/agent-socket-proxy.yml name the real image, and labelled with a hash of its recipe:
a tag that holds the same recipe already is not built again (a second run takes seconds), and
a tag that holds an image which is no stand-in (the real one, pulled) is used as it is.

    python -m tests.stack_images      # build (or find) them all, and print what each one is
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.docker_support import static_busybox

RECIPE_LABEL = "dockping.stand-in.recipe"
MIRROR = "http://deb.debian.org/debian"
DEBIAN = "dockping-stand-in/debian:bookworm"
PYTHON = "python:3.11-slim-bookworm"
DATABASE = "timescale/timescaledb:2.29.2-pg16"
NGINX = "nginx:1.27-alpine"
SOCKET_PROXY = "tecnativa/docker-socket-proxy:0.3.0"
PG_MAJOR = "15"  # bookworm's PostgreSQL
_DEBOOTSTRAP = ["--variant=minbase", "bookworm"]
_TIMESCALEDB_FILES = (
    (f"/usr/lib/postgresql/{PG_MAJOR}/lib", "timescaledb*.so"),
    (f"/usr/share/postgresql/{PG_MAJOR}/extension", "timescaledb*"),
)


class Unavailable(Exception):
    """A tool the stand-ins are built with is not installed here."""


@dataclass(frozen=True)
class Recipe:
    """A Dockerfile and the files beside it; FROM the stand-in `parent` when it names one."""

    tag: str
    dockerfile: str
    files: dict[str, bytes] = field(default_factory=dict)
    parent: str | None = None


def _apt(packages: str) -> str:
    return (
        "RUN apt-get update"
        f" && apt-get install -y --no-install-recommends {packages}"
        " && rm -rf /var/lib/apt/lists/*\n"
    )


_PYTHON = Recipe(
    PYTHON,
    f"FROM {DEBIAN}\n"
    + _apt("python3 python3-pip python3-venv ca-certificates")
    # Where the official image has its interpreter (the Dockerfile's UV_PYTHON), and `python`
    # for the healthchecks; pip may install beside Debian's packages, as the official one's may.
    + "RUN ln -s /usr/bin/python3 /usr/local/bin/python3"
    " && ln -s /usr/bin/python3 /usr/local/bin/python\n"
    "ENV PIP_BREAK_SYSTEM_PACKAGES=1\n"
    'CMD ["python3"]\n',
    parent=DEBIAN,
)

# As the official postgres image does: a cluster on the first start only, with the
# superuser's password from POSTGRES_PASSWORD and the database POSTGRES_DB; connections from
# other containers with that password; the server in the foreground as PID 1.
_ENTRYPOINT = b"""#!/bin/sh
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
db="${POSTGRES_DB:-postgres}"
mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile="$(mktemp)"
    printf '%s\\n' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --encoding=UTF8 --locale=C \\
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    if [ -e /usr/lib/postgresql/15/lib/timescaledb.so ]; then
        echo "shared_preload_libraries = 'timescaledb'" >> "$PGDATA/postgresql.conf"
        echo "timescaledb.telemetry_level = off" >> "$PGDATA/postgresql.conf"
    fi
    if [ "$db" != postgres ]; then
        echo "CREATE DATABASE \\"$db\\"" | as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
    fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
"""


def _database() -> Recipe:
    """PostgreSQL from Debian; with this machine's TimescaleDB library where it has one."""
    files = {"docker-entrypoint.sh": _ENTRYPOINT}
    copies = ""
    for directory, pattern in _TIMESCALEDB_FILES:
        for path in sorted(Path(directory).glob(pattern)):
            files[f"timescaledb/{path.name}"] = path.read_bytes()
            copies += f"COPY timescaledb/{path.name} {directory}/{path.name}\n"
    return Recipe(
        DATABASE,
        f"FROM {DEBIAN}\n"
        # Debian's package would make a cluster of its own; the entrypoint makes the one used.
        "RUN mkdir -p /etc/postgresql-common/createcluster.d"
        " && echo 'create_main_cluster = false'"
        " > /etc/postgresql-common/createcluster.d/stand-in.conf\n"
        + _apt(f"postgresql-{PG_MAJOR}")
        + copies
        + "COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n"
        "RUN chmod 755 /usr/local/bin/docker-entrypoint.sh\n"
        f"ENV PATH=/usr/lib/postgresql/{PG_MAJOR}/bin:$PATH PGDATA=/var/lib/postgresql/data\n"
        "STOPSIGNAL SIGINT\n"
        'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]\n'
        'CMD ["postgres"]\n',
        files,
        parent=DEBIAN,
    )


def _nginx(busybox: bytes) -> Recipe:
    """busybox httpd on port 80, as nginx serves; killed at once on stop (httpd ignores TERM)."""
    return Recipe(
        NGINX,
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        "COPY index.html /usr/share/nginx/html/index.html\n"
        "STOPSIGNAL SIGKILL\n"
        'CMD ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"]\n',
        {"busybox": busybox, "index.html": b"<h1>a stand-in for nginx</h1>\n"},
    )


# What Tecnativa's proxy does with the same variables: each API section is allowed when its
# variable is 1; _ping, version and events are allowed unless turned off; anything but GET
# and HEAD needs POST=1; the rest is a 403.
_HAPROXY_CFG = b"""global
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 10s
    timeout client 10m
    timeout server 10m

frontend docker
    bind :2375
    http-request deny unless METH_GET || { env(POST) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\\d\\.]+)?/containers } { env(CONTAINERS) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\\d\\.]+)?/events } { env(EVENTS) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\\d\\.]+)?/networks } { env(NETWORKS) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\\d\\.]+)?/info } { env(INFO) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\\d\\.]+)?/_ping } { env(PING) -m bool }
    http-request allow if { path,url_dec -m reg -i ^(/v[\\d\\.]+)?/version } { env(VERSION) -m bool }
    http-request deny
    default_backend socket

backend socket
    server docker /var/run/docker.sock
"""

_SOCKET_PROXY = Recipe(
    SOCKET_PROXY,
    f"FROM {DEBIAN}\n" + _apt("haproxy") + "COPY haproxy.cfg /usr/local/etc/haproxy/haproxy.cfg\n"
    "ENV CONTAINERS=0 EVENTS=1 INFO=0 NETWORKS=0 PING=1 POST=0 VERSION=1\n"
    "EXPOSE 2375\n"
    'CMD ["haproxy", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]\n',
    {"haproxy.cfg": _HAPROXY_CFG},
    parent=DEBIAN,
)


def recipe_hash(recipe: Recipe) -> str:
    """A hash of everything the image is made from, its parent's recipe included."""
    digest = hashlib.sha256(recipe.dockerfile.encode())
    for name, content in sorted(recipe.files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    if recipe.parent == DEBIAN:
        digest.update(debian_hash().encode())
    return digest.hexdigest()[:32]


def debian_hash() -> str:
    """A hash of the debootstrap command the base is made with."""
    return hashlib.sha256(" ".join([*_DEBOOTSTRAP, MIRROR]).encode()).hexdigest()[:32]


def label_of(tag: str) -> str | None:
    """The recipe label of the image under a tag: "" for an image that is no stand-in, None when absent."""
    done = subprocess.run(
        [
            "docker",
            "image",
            "inspect",
            "--format",
            f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}',
            tag,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return None
    label = done.stdout.strip()
    return "" if label == "<no value>" else label


def _build_debian(wanted: str) -> None:
    """debootstrap a minbase bookworm root and import it as the base of the other stand-ins."""
    if shutil.which("debootstrap") is None:
        raise Unavailable(
            "no debootstrap to build the stand-in images (apt-get install debootstrap)"
        )
    with tempfile.TemporaryDirectory(prefix="dockping-debootstrap-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        done = subprocess.run(
            ["debootstrap", *_DEBOOTSTRAP, str(root), MIRROR],
            capture_output=True,
            timeout=1200,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap: {done.stdout.decode(errors='replace')[-2000:]}")
        # The downloaded packages and lists are no part of an image (nor of the official ones).
        for leftover in [
            *(root / "var/cache/apt/archives").glob("*.deb"),
            *(root / "var/lib/apt/lists").glob("*_*"),
        ]:
            leftover.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            [
                "docker",
                "import",
                "--change",
                f"LABEL {RECIPE_LABEL}={wanted}",
                "--change",
                'CMD ["bash"]',
                "-",
                DEBIAN,
            ],
            stdin=tar.stdout,
            capture_output=True,
            timeout=600,
            check=True,
        )
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrap root failed")


def _build(recipe: Recipe, wanted: str) -> None:
    """docker build a recipe from a context made in memory, labelled with its hash."""
    context = io.BytesIO()
    dockerfile = recipe.dockerfile + f"LABEL {RECIPE_LABEL}={wanted}\n"
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, content in {"Dockerfile": dockerfile.encode(), **recipe.files}.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(content))
    done = subprocess.run(
        ["docker", "build", "--quiet", "-t", recipe.tag, "-"],
        input=context.getvalue(),
        capture_output=True,
        timeout=1200,
        check=False,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"building {recipe.tag}: {done.stderr.decode(errors='replace')[-2000:]}")


def recipes() -> list[Recipe]:
    """Every stand-in's recipe, parents first."""
    busybox = static_busybox()
    if busybox is None:
        raise Unavailable(
            "no static busybox for the nginx stand-in (apt-get install busybox-static)"
        )
    return [_PYTHON, _database(), _nginx(busybox.read_bytes()), _SOCKET_PROXY]


def ensure() -> dict[str, str]:
    """Build what is missing or out of date; return each tag with what it holds."""
    found: dict[str, str] = {}
    for recipe in recipes():
        wanted = recipe_hash(recipe)
        have = label_of(recipe.tag)
        if have == "":
            found[recipe.tag] = "the real image"
        elif have == wanted:
            found[recipe.tag] = "cached stand-in"
        else:
            if recipe.parent == DEBIAN and label_of(DEBIAN) != debian_hash():
                _build_debian(debian_hash())
            _build(recipe, wanted)
            found[recipe.tag] = "built stand-in"
    return found


def has_timescaledb() -> bool:
    """Whether the database stand-in carries TimescaleDB (this machine has its library)."""
    directory, pattern = _TIMESCALEDB_FILES[0]
    return any(Path(directory).glob(pattern))


if __name__ == "__main__":
    for tag, what in ensure().items():
        print(f"{tag}: {what}")
