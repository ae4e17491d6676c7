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

.PHONY: setup browser train test bench mesh watch lint audit clean help docs docs-serve

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(PY_STAMP) $(if $(wildcard package.json),$(NPM_STAMP)) $(if $(wildcard contracts/foundry.toml),$(CONTRACTS_STAMP)) browser  ## create .venv, install the package with [dev,marl], npm ci, build contracts, chromium

# Debian's chromium for the dashboard's browser tests (playwright drives it; `playwright install` is never run).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:  ## install Debian's chromium package if it is missing (headless browser of the dashboard tests)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium; }

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

test: setup  ## ruff, forge test (unit, fuzz, invariants), pytest (including the chain tests on anvil, the docs build and its code blocks)
	$(PY) -m ruff check .
	@if [ -f contracts/foundry.toml ]; then cd contracts && forge test; fi
	$(PY) -m pytest -q -n 2 --timeout=600 --durations=15

bench: setup  ## benchmarks, each against a reference measured in the same run
	$(PY) -m eval.bench all --json eval/results/bench.json

# The shipped learned policy when it exists, else the origin's heuristic (say which in the log).
MESH_POLICY ?= $(if $(wildcard checkpoints/default/manifest.json),checkpoints/default,seed)
DASHBOARD_PORT ?= 8765
# The shipped scenario the live mesh plays (resized to MESH_NODES processes), and the episode's seed.
MESH_SCENARIO ?= default
MESH_NODES ?= 16
MESH_SEED ?= 0
mesh: setup  ## play one episode of a shipped scenario live on a local anvil (16 nodes), the simulation beside it
	@echo "mesh policy: $(MESH_POLICY), scenario $(MESH_SCENARIO) at $(MESH_NODES) nodes, seed $(MESH_SEED)"
	@echo "dashboard: http://127.0.0.1:$(DASHBOARD_PORT)/ (stays up 60 s after the report)"
	$(PY) -m runtime.mesh --scenario $(MESH_SCENARIO) --nodes $(MESH_NODES) --seed $(MESH_SEED) \
		--policy $(MESH_POLICY) --json runs/mesh.json --dashboard $(DASHBOARD_PORT) --dashboard-hold 60
	$(PY) -m eval.sim2real --beside runs/mesh.json --scenario $(MESH_SCENARIO) --nodes $(MESH_NODES) \
		--seed-base $(MESH_SEED) --policy $(MESH_POLICY)

watch: setup  ## watch checkpoints/default and seed play one blackholes episode side by side in the dashboard
	$(PY) -m eval.watch --scenario blackholes --policy $(MESH_POLICY) $(if $(filter seed,$(MESH_POLICY)),,--policy seed)

# The documentation site (mkdocs.yml, docs/): strict, so a warning or a broken link fails; the reference
# pages are generated from the code by docs/hooks/reference.py. `make test` runs the same build (tests/docs/).
DOCS_PORT ?= 8000
docs: setup  ## build the documentation site strictly into site/ (a warning or a broken link fails)
	NO_MKDOCS_2_WARNING=1 PYTHONPATH=$(CURDIR) $(PY) -m mkdocs build --strict

docs-serve: setup  ## serve the documentation on http://127.0.0.1:$(DOCS_PORT)/ while you edit it
	NO_MKDOCS_2_WARNING=1 PYTHONPATH=$(CURDIR) $(PY) -m mkdocs serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)

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
	rm -rf runs outputs multirun site contracts/out contracts/cache contracts/out-audit contracts/cache-audit .pytest_cache
