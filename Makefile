# Nuru Yield — every target creates or reuses .venv with the exact pins of requirements.txt.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-deps lint lock clean airflow airflow-cli fuzz-api

setup: $(STAMP)

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode is compiled at install time: this environment sets PYTHONDONTWRITEBYTECODE, and
# without .pyc files every process (each Airflow task, each CLI call) recompiles its imports
# (measured: `import pandas, sklearn, mlflow` 10.1 s -> 3.7 s; the install takes ~47 s longer).
$(STAMP): requirements.txt pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# `make demo PORT=8001` when :8000 is taken (checked before the pipeline runs);
# `make demo STALL_MINUTES=30` waits longer for a DAG run that makes no progress (default 10).
demo: setup
	$(BIN)/nuru-yield demo$(if $(PORT), --port $(PORT))$(if $(STALL_MINUTES), --stall-minutes $(STALL_MINUTES))

# lint-imports: the import contracts of pyproject.toml ([tool.importlinter]): what may import
# what, and no import cycles (docs/DESIGN.md, "Layout").
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo

test: lint test-deps
	$(BIN)/python -m pytest

# schemathesis against a real API server (every check, both modes, the stateful phase) with
# 1,000 examples per operation; prints the summary (requests, statuses, 5xx). Minutes.
fuzz-api: setup
	API_FUZZ_EXAMPLES=1000 $(BIN)/python -m pytest tests/reliability/test_api_schemathesis.py -s -q

# System packages the tests need beyond Python: Chromium (the drift report is opened in a
# headless browser) and Redis (the Celery broker of the distributed end-to-end test, started
# by the test itself). Installed with apt when missing and running as root (CI); PostgreSQL
# 15 (initdb, pg_ctl) is expected on PATH.
APT_INSTALL = apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

test-deps:
	@command -v chromium >/dev/null || command -v google-chrome >/dev/null || { [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null && ($(APT_INSTALL) chromium >/dev/null) \
		|| echo "note: chromium not installed; the browser test of the drift report needs it"; }
	@command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null && ($(APT_INSTALL) redis-server >/dev/null) \
		|| echo "note: redis-server not installed; the Celery end-to-end test needs it"; }

# Airflow standalone with the project's DAGs and airflow_settings.yaml applied, in the Airflow
# home `make demo` used (the demo leaves its DAGs paused). On 127.0.0.1:8080 unless
# AIRFLOW_HOST / AIRFLOW_PORT say otherwise; sized for a 2-core machine (one API server
# worker, one DAG parsing process, at most 4 tasks at a time, and a task's calls to the API
# server wait up to 60 s and are retried 10 times: a busy machine slows the night down
# instead of failing tasks before they run, as the demo's Airflow does). `make airflow
# NURU_SCHEDULES=manual` keeps the cron schedules off, as in the demo.
AIRFLOW_HOST ?= 127.0.0.1
AIRFLOW_PORT ?= 8080
AIRFLOW_ENV = PATH="$(CURDIR)/$(BIN):$$PATH" AIRFLOW_HOME="$(CURDIR)/.nuru/airflow" \
	AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/dags" AIRFLOW__CORE__PLUGINS_FOLDER="$(CURDIR)/plugins" \
	AIRFLOW__CORE__LOAD_EXAMPLES=False NURU_HOME="$(CURDIR)/.nuru" \
	AIRFLOW__API__HOST=$(AIRFLOW_HOST) AIRFLOW__API__PORT=$(AIRFLOW_PORT) AIRFLOW__API__WORKERS=1 \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/ \
	AIRFLOW__CORE__PARALLELISM=4 AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=1 \
	AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT=60 AIRFLOW__WORKERS__EXECUTION_API_RETRIES=10 \
	AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN=2 AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX=30 \
	NURU_SCHEDULES="$(NURU_SCHEDULES)"

# The demo's home is a scratch space: its own lake, registry and database, whatever LAKE_URL,
# MLFLOW_TRACKING_URI or PREDICTIONS_DB_URL say in this shell (include/nuru_yield/dev/scratch.py).
SCRATCH = $(BIN)/python -m nuru_yield.dev.scratch --home "$(CURDIR)/.nuru" --purpose "make airflow" --

airflow: setup
	$(AIRFLOW_ENV) $(SCRATCH) airflow db migrate
	$(AIRFLOW_ENV) $(SCRATCH) python -m nuru_yield.airflow_settings airflow_settings.yaml --print-login
	$(AIRFLOW_ENV) $(SCRATCH) airflow standalone

# Any `airflow` command against that Airflow, e.g. (with `make airflow` running):
#   make airflow-cli ARGS="backfill create --dag-id feature_materialization --from-date 2025-06-10 --to-date 2025-06-14"
airflow-cli: setup
	$(AIRFLOW_ENV) $(SCRATCH) airflow $(ARGS)

# Recompile the exact pins after editing requirements.in.
lock: | $(BIN)/uv
	$(BIN)/uv pip compile requirements.in --python-version 3.11 --no-header --no-annotate -o requirements.txt

clean:
	rm -rf $(VENV) .nuru .pytest_cache .ruff_cache
