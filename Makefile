# StreamFlow feature platform. `make` alone lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Rebuilt whenever pyproject.toml changes, so every target runs on the pinned stack.
STAMP := $(VENV)/.installed

# Fill PG* from scripts/settings.py (the one place that knows the defaults)
# before calling dbt or Feast, which read them from the environment.
PG_ENV = eval "$$($(PY) -m scripts.settings)"

# The instant the platform treats as "now" (TTL checks, materialization end).
# Empty means the wall clock. The course data ends on 2024-02-29, so the demo
# replays the platform as of the next day; against today's clock every
# monthly snapshot is past its TTL and nothing would be served.
NOW ?=
DEMO_NOW ?= 2024-03-01T00:00:00+00:00
ifneq ($(NOW),)
export STREAMFLOW_NOW := $(NOW)
endif

HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
export HOST PORT WORKERS

.PHONY: help
help: ## Show this list of targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing the pinned stack"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

.PHONY: setup
setup: $(STAMP) ## Create .venv and install the project with its dev tools

.PHONY: env
env: $(STAMP) ## Print PG* exports for running dbt or feast by hand (see README)
	@$(PY) -m scripts.settings

.PHONY: db-up
db-up: $(STAMP) ## Start the project-local PostgreSQL (no-op when PGHOST points at a server)
	@$(PY) -m scripts.local_db up

.PHONY: db-down
db-down: $(STAMP) ## Stop the project-local PostgreSQL
	@$(PY) -m scripts.local_db down

.PHONY: ingest
ingest: db-up ## Load every month of data/manifest.csv into raw.* (or one: MONTH=month_001)
	@$(PY) -m scripts.ingest $(if $(MONTH),--month $(MONTH))

.PHONY: dbt
dbt: db-up ## Build and test the dbt models (dbt build)
	@$(PG_ENV); cd dbt_project && ../$(BIN)/dbt build

.PHONY: dbt-docs
dbt-docs: db-up ## Generate the dbt documentation site into dbt_project/target
	@$(PG_ENV); cd dbt_project && ../$(BIN)/dbt docs generate

.PHONY: apply
apply: db-up ## Register the Feast definitions (feast apply) in the PostgreSQL registry
	@$(PY) -m scripts.apply_definitions

.PHONY: features
features: db-up ## Build the point-in-time training set (or one month: AS_OF=2024-01-31)
	@$(PY) -m scripts.build_training_set $(if $(AS_OF),--as-of $(AS_OF))

.PHONY: materialize
materialize: db-up ## Load the online store incrementally up to now (or END=...)
	@$(PY) -m scripts.materialize $(if $(END),--end $(END))

.PHONY: skew-check
skew-check: db-up ## Compare online features with offline ones at the latest as_of
	@$(PY) -m scripts.skew_check

.PHONY: serve
serve: db-up ## Run the feature service in the foreground on HOST:PORT with WORKERS
	@$(PY) -m serving

.PHONY: demo
demo: export STREAMFLOW_NOW := $(DEMO_NOW)
demo: ingest dbt apply features materialize ## Run the whole chain, then serve in the background
	@$(PY) -m serving.background start
	@echo "try: curl localhost:$(PORT)/features/7590-VHVEG   (stop with: make stop)"

.PHONY: stop
stop: $(STAMP) ## Stop the service that `make demo` left running
	@$(PY) -m serving.background stop

.PHONY: bench-serve
bench-serve: db-up ## Benchmark this service against `feast serve`; writes BENCHMARKS.md
	@$(PY) -m scripts.bench_serve

.PHONY: test
test: db-up ## Run the test suite against a real PostgreSQL
	@$(BIN)/pytest

.PHONY: lint
lint: db-up ## Lint Python (ruff) and SQL (sqlfluff; its dbt templater asks the database)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@$(PG_ENV); $(BIN)/sqlfluff lint dbt_project

.PHONY: format
format: db-up ## Rewrite Python and SQL in the house style
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	@$(PG_ENV); $(BIN)/sqlfluff fix dbt_project

.PHONY: clean
clean: ## Remove build output (keeps .venv and the database)
	rm -rf dbt_project/target dbt_project/logs data/processed .pytest_cache .ruff_cache
