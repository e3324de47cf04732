# payment-service. `make help` lists the targets.
# Needs only Python 3.11+ and make: the targets create .venv and install what they need.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8002
HOST ?= 127.0.0.1

# `make token USER=123`: only a USER given on the command line counts, not the login name.
TOKEN_USER := $(if $(filter command line,$(origin USER)),$(USER),)

.DEFAULT_GOAL := help
.PHONY: help install install-dev run serve relay migrate test lint format typecheck token db-url db-stop docker-up docker-down clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-19s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-test: requirements.txt requirements-dev.txt requirements-test.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed-test ## Create .venv with everything (runtime, dev and test)

install-dev: $(VENV)/.installed-dev

run: install-dev ## Install, start PostgreSQL if DATABASE_URL is unset, migrate, serve on :8002
	$(BIN)/python -m scripts.serve --host $(HOST) --port $(PORT)

relay: install-dev ## Publish the outbox's events to RabbitMQ (EVENTS_BROKER_URL; DATABASE_URL, else the embedded PostgreSQL)
	$(BIN)/python -m scripts.serve --relay

migrate: install-dev ## Apply migrations (embedded PostgreSQL when DATABASE_URL is unset)
	$(BIN)/python -m scripts.serve --migrate-only

test: install ## Run the whole suite on real PostgreSQL (TEST_DATABASE_URL, else an embedded one)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app scripts alembic tests

format: install ## Format and fix imports
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: bench bench-smoke bench-instructions
bench: install ## Benchmark vs a bare Starlette+asyncpg baseline with wrk: make bench BENCH_ARGS="--duration 20"
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-smoke: install ## The benchmark on tiny data, a few seconds per scenario (for CI)
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench.run --smoke

bench-instructions: install ## Instructions per request (valgrind): GET by id, list, create, PATCH status, POST refund; service vs baseline
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench.instructions $(BENCH_ARGS)

token: install-dev ## Mint a dev JWT: make token USER=123 [SERVICE=1 | ADMIN=1]
	@$(BIN)/python -m scripts.mint_token "$(TOKEN_USER)" $(if $(filter 1 true yes,$(ADMIN)),--admin,) $(if $(filter 1 true yes,$(SERVICE)),--service,)

db-url: install-dev ## Print the embedded PostgreSQL's URL (starting it if needed)
	@$(BIN)/python -m scripts.embedded_postgres

db-stop: install-dev ## Stop the embedded PostgreSQL
	$(BIN)/python -m scripts.embedded_postgres --stop

docker-up: ## Start the service, its relay, PostgreSQL and RabbitMQ with docker compose
	docker compose up --build -d

docker-down: ## Stop the compose stack
	docker compose down

clean: ## Remove .venv and caches (keeps .data, the embedded database)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
