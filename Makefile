# datazones — `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(EXTRAS)
export RUNTIME__DLTHUB_TELEMETRY := false

.DEFAULT_GOAL := help

## help: list the targets
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'

# Install with uv when it is there (or can be pip-installed), else with plain pip.
$(STAMP): pyproject.toml
	@set -e; \
	if command -v uv >/dev/null 2>&1; then UV="uv"; \
	elif $(PY) -m uv --version >/dev/null 2>&1; then UV="$(PY) -m uv"; \
	elif $(PY) -m pip install -q uv >/dev/null 2>&1 && $(PY) -m uv --version >/dev/null 2>&1; then UV="$(PY) -m uv"; \
	else UV=""; fi; \
	if [ -n "$$UV" ]; then \
	  echo "installing with $$UV"; \
	  [ -x $(BIN)/python ] || $$UV venv -q $(VENV) --python $(PY); \
	  $$UV pip install -q --compile-bytecode --python $(BIN)/python -e ".[$(EXTRAS)]"; \
	else \
	  echo "uv unavailable: installing with pip"; \
	  [ -x $(BIN)/python ] || $(PY) -m venv $(VENV); \
	  $(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"; \
	fi
	@touch $@

## install: create .venv and install datazones with the dev tools
install: $(STAMP)

## demo: seed the embedded SQLite demo agency, promote to warm, query it, archive old periods, audit, print a receipt
demo: $(STAMP)
	@set -euo pipefail; mkdir -p .datazones; \
	if [ -z "$${DATAZONES_PSEUDONYM_KEY:-}" ]; then \
	  if [ ! -f .datazones/demo.env ]; then umask 077; \
	    echo "export DATAZONES_PSEUDONYM_KEY=$$($(BIN)/python -c 'import secrets;print(secrets.token_hex(32))')" > .datazones/demo.env; \
	    echo "export DATAZONES_SEAL_KEY=$$($(BIN)/python -c 'import secrets;print(secrets.token_hex(32))')" >> .datazones/demo.env; \
	    echo "demo: made throwaway keys in .datazones/demo.env (git-ignored); real keys come from your secret backend"; fi; \
	  source .datazones/demo.env; fi; \
	export COLUMNS=$${COLUMNS:-120}; \
	if [ ! -f .datazones/hot.db ]; then $(BIN)/zones demo seed --scale 2 --as-of "$$(date -u -d '-1 hour' +%FT%T+00:00)"; fi; \
	$(BIN)/zones validate; \
	$(BIN)/zones promote --all; \
	$(BIN)/zones demo churn --as-of "$$(date -u -d '-30 minutes' +%FT%T+00:00)"; \
	$(BIN)/zones promote --all; \
	$(BIN)/zones status; \
	$(BIN)/zones quarantine list; \
	echo "quality Data Docs: $$($(BIN)/zones quality docs)"; \
	$(BIN)/zones demo query; \
	$(BIN)/zones archive --all --execute; \
	$(BIN)/zones purge --all --execute; \
	$(BIN)/zones packages; \
	$(BIN)/zones audit; \
	$(BIN)/zones verify "$$($(BIN)/zones packages --json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)[0]["package_id"])')"; \
	$(BIN)/zones ledger verify

## test: run the whole test suite (SQLite + the PostgreSQL on 127.0.0.1:5432)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## lint: ruff + mypy
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true
	$(BIN)/mypy zones lifecycle quality lineage catalog

## bench: promote 5M rows from PostgreSQL next to dlt and the COPY limit, 5 runs a case (installs the bench extra)
BENCH_ARGS ?= --repeat 5
bench:
	@$(MAKE) --no-print-directory install EXTRAS=dev,bench
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

## clean: remove the demo state (.datazones/)
clean:
	rm -rf .datazones
