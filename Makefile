# Nuru Yield — every target creates or reuses .venv with the exact pins of requirements.txt.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint lock clean

setup: $(STAMP)

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): requirements.txt pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/nuru-yield demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

# Recompile the exact pins after editing requirements.in.
lock: | $(BIN)/uv
	$(BIN)/uv pip compile requirements.in --python-version 3.11 --no-header --no-annotate -o requirements.txt

clean:
	rm -rf $(VENV) .nuru .pytest_cache .ruff_cache
