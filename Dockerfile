# One image for every part: ingest, query, notify, agent and migrate are `dockping <subcommand>` in it.
# Build it with `make up` (docker compose), or `docker build -t dockping .`.
# Plain Dockerfile syntax only, so that the classic builder of older engines builds it too.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Behind a TLS-inspecting proxy, pip and uv must trust its CA as well: EXTRA_CA_CERT holds it
# as PEM text (`--build-arg EXTRA_CA_CERT="$(cat proxy-ca.pem)"`; compose passes the shell's
# EXTRA_CA_CERT). It is added to a bundle for this build stage only, never to the image run.
ARG EXTRA_CA_CERT=
RUN cat /etc/ssl/certs/ca-certificates.crt > /etc/ssl/build-ca.pem \
 && printf '%s\n' "$EXTRA_CA_CERT" >> /etc/ssl/build-ca.pem
ENV PIP_CERT=/etc/ssl/build-ca.pem \
    SSL_CERT_FILE=/etc/ssl/build-ca.pem
# uv from PyPI, the same tool (and lock) that `make test` installs with.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/dockping
WORKDIR /src
# Dependencies first, in a layer of their own, so that a code change does not reinstall them
# (nor an edit of the README, which only the project's own wheel needs).
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-editable --no-install-project
COPY README.md ./
COPY dockping ./dockping
COPY agent ./agent
COPY ingest ./ingest
COPY query ./query
COPY db ./db
COPY notify ./notify
COPY web ./web
COPY launcher ./launcher
# --no-editable: the project goes into the environment as a wheel, so /src is not needed later.
RUN uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/dockping --create-home dockping
COPY --from=build /opt/dockping /opt/dockping
# Settings come from DOCKPING_* variables; JSON logs, since a container's output is read by
# machines (docker logs, log shippers). The spool and any generated token live in the data dir.
ENV PATH=/opt/dockping/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DOCKPING_DATA_DIR=/var/lib/dockping \
    DOCKPING_LOG__FORMAT=json
USER dockping
WORKDIR /var/lib/dockping
ENTRYPOINT ["dockping"]
CMD ["--help"]
