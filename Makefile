# Cryptlet Fabric - the two README commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: setup run demo test test-unit lint bench clean

## setup: create or update .venv with the pinned dependencies, and `npm ci` (nothing else)
setup: $(STAMP_PY) $(STAMP_NODE)

$(STAMP_PY): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## run: Azurite + dev host + demo, then keep serving until Ctrl-C
run: setup
	$(PY) -m cryptlet_cli.demo --serve

## demo: the non-interactive demo; exits 0 only if the envelope verified
demo: setup
	$(PY) -m cryptlet_cli.demo

## test: the whole test suite against a fresh Azurite on free loopback ports
test: setup
	$(PY) -m devhost.azurite --fresh --data .devdata/azurite-test -- $(PY) -m pytest $(PYTEST_ARGS)

## test-unit: the unit tier only (tests/unit: no processes, no storage, no network; no Azurite)
test-unit: setup
	$(PY) -m pytest tests/unit -q

## lint: ruff (lint and format check) and a bare mypy (strict for shared/), as CI runs them
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

## bench: every benchmark under bench/ (each starts and stops what it needs)
bench: setup
	@set -e; for script in bench/*.py; do [ -e "$$script" ] || continue; echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf .devdata .pytest_cache .ruff_cache .mypy_cache
