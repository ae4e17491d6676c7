# OpenStreaming — every target bootstraps what it needs and is safe to run again.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
CONTRACTS_STAMP := contracts/out/.built
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

AUDIT_STAMP := $(VENV)/.audit-installed

.PHONY: setup train test bench mesh lint audit clean help

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(PY_STAMP) $(if $(wildcard package.json),$(NPM_STAMP)) $(if $(wildcard contracts/foundry.toml),$(CONTRACTS_STAMP))  ## create .venv, install the package with [dev,marl], npm ci, build contracts

$(PY_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,marl]'
	@touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Offline compile through solc-js (contracts/solc-js.sh); Python reads ABI + bytecode from contracts/out.
$(CONTRACTS_STAMP): $(NPM_STAMP) contracts/foundry.toml $(wildcard contracts/src/*.sol)
	cd contracts && forge build --skip test --skip script
	@touch $@

train: setup  ## train on the default scenario mix, export, evaluate against the seed heuristic
	$(PY) -m training.make_train

test: setup  ## ruff, forge test (unit, fuzz, invariants), pytest (including the chain tests on anvil)
	$(PY) -m ruff check .
	@if [ -f contracts/foundry.toml ]; then cd contracts && forge test; fi
	$(PY) -m pytest -q -n 2 --timeout=600

bench: setup  ## benchmarks, each against a reference measured in the same run
	$(PY) -m eval.bench all --json eval/results/bench.json

# The shipped learned policy when it exists, else the origin's heuristic (say which in the log).
MESH_POLICY ?= $(if $(wildcard checkpoints/default/manifest.json),checkpoints/default,seed)
mesh: setup  ## run a small live mesh on a local anvil chain (8 nodes, 30 s, one of each cheat)
	@echo "mesh policy: $(MESH_POLICY)"
	$(PY) -m runtime.mesh --nodes 8 --duration 30 --policy $(MESH_POLICY) --json runs/mesh.json

lint: setup  ## ruff only
	$(PY) -m ruff check .

$(AUDIT_STAMP): $(PY_STAMP) pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[audit]'
	@touch $@

# slither on contracts/src through crytic-compile's foundry framework (contracts/slither.config.json).
# The build goes to its own out-audit/ and cache-audit/ so the artifacts Python reads stay untouched;
# every finding is fixed or triaged inline (`// slither-disable-next-line DETECTOR` with the reason).
audit: $(AUDIT_STAMP) $(NPM_STAMP)  ## slither on contracts/src: exits non-zero on any untriaged finding
	cd contracts && forge build --build-info --skip test --skip script --out out-audit --cache-path cache-audit
	cd contracts && ../$(VENV)/bin/slither .

clean:  ## remove build outputs (keeps .venv and node_modules)
	rm -rf runs outputs multirun contracts/out contracts/cache contracts/out-audit contracts/cache-audit .pytest_cache
