# dockping: `make run` starts everything; `make test` runs the tests.
# Needs only python3 (3.11+) and make; uv is fetched from PyPI into .tools when missing.

PYTHON ?= python3
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
# Trust the system's certificate store (as pip and curl do), e.g. behind a TLS-inspecting proxy.
export UV_SYSTEM_CERTS := true
PYTEST_ARGS ?=

.PHONY: run test lint bench up down soak clean help

help:
	@echo "make run    - the whole system on an embedded PostgreSQL (http://127.0.0.1:8081/addresses)"
	@echo "make test   - every test (Docker tests skip, with the reason, where no engine runs)"
	@echo "make lint   - ruff, mypy and the import layers (import-linter)"
	@echo "make bench  - benchmarks, each as a ratio to a baseline measured in the same run"
	@echo "make soak   - an hour of load after the chaos faults: memory growth of each process"
	@echo "make up     - the docker compose deployment on TimescaleDB, with the demo targets"

$(UV):
	@$(PYTHON) scripts/bootstrap_uv.py .tools >/dev/null

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

run: .venv/.synced
	.venv/bin/dockping up

test: .venv/.synced
	.venv/bin/python -m pytest $(PYTEST_ARGS)

lint: .venv/.synced
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports --no-cache

bench: .venv/.synced
	.venv/bin/python -m bench

# About an hour, not in CI: the chaos rig under load, then memory growth of each process.
soak: .venv/.synced
	.venv/bin/python -m bench.soak

# The compose plugin where there is one, else Debian's docker-compose.
COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

up: .env
	$(COMPOSE) --profile demo up -d --build

down:
	$(COMPOSE) --profile demo down

.env:
	@echo "make up: no .env yet: cp .env.example .env, then set its secrets" >&2
	@exit 1

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
