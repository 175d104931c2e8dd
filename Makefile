# The two commands: `make demo` and `make test`. Both set up what they need, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STATE ?= .state
APT_PACKAGES := mosquitto mosquitto-clients redis-server opencv-doc dataset-fashion-mnist chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SETUP_STAMP := $(VENV)/.setup-$(shell cat pyproject.toml requirements/constraints.txt | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: setup system-packages venv test lint typecheck pytest demo bench chaos mutation component audit clean help

# `make help` lists every target that has a "## what it does" comment (a test checks that all of them do).
help: ## this list
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: make demo ONCE=1 | WEBCAM=0 | ADAPT=first|no · make pytest PYTEST_ARGS='-k stack' · make bench BENCH_ARGS=..."
	@echo "The visual-search command (README's hand commands) is in $(VENV)/bin: run 'source $(VENV)/bin/activate' once per shell, or call $(VENV)/bin/visual-search"

setup: system-packages venv ## apt packages + the .venv with pinned versions (idempotent)

# apt-get only when something is missing, so a second run is instant and needs no network.
system-packages: ## apt-get the system packages that are missing (mosquitto, redis, chromium, sample data)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(SETUP_STAMP) ## the .venv with the pins of requirements/constraints.txt

$(SETUP_STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[device,cloud,export,openvino,dev]'
	@rm -f $(VENV)/.setup-*; touch $@

lint: setup ## ruff check + ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || { echo "run: $(VENV)/bin/ruff format ."; exit 1; }

typecheck: setup ## mypy
	$(VENV)/bin/mypy model edge_component cloud_lambda simulator bench

pytest: setup ## the test suite only (PYTEST_ARGS=...)
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest ## lint, typecheck and the test suite (what CI runs)

demo: setup ## the whole system on sample data until Ctrl-C (ONCE=1: play once, summary; WEBCAM=0: a camera; ADAPT=first|no)
	$(PY) -m simulator.demo $(if $(ONCE),--once) $(if $(WEBCAM),--webcam $(WEBCAM)) $(if $(ADAPT),--adapt $(ADAPT))

bench: setup ## benchmarks, printed as tables of ratios (BENCH_ARGS=...)
	$(PY) -m bench $(BENCH_ARGS)

chaos: setup ## fault injection: kill/restart services while publishing, per-message accounting
	$(PY) -m simulator.chaos $(CHAOS_ARGS)

# CPU-heavy (minutes per module): MUTATION_ARGS="wire matches" runs only those (names: python -m tests.mutation -h).
mutation: setup ## mutation testing (mutmut) of the critical modules, each with its targeted tests; score >= 85 %
	$(PY) -m tests.mutation $(MUTATION_ARGS)

# Known advisories for the exact pins; a report, not a gate (it needs the network to fetch advisories).
audit: setup ## pip-audit report over the pins (needs the network)
	-$(VENV)/bin/pip-audit -r requirements/constraints.txt --no-deps --progress-spinner off

component: setup ## the Greengrass component under greengrass-build/ (VERSION=1.0.1, MODEL=X.onnx, WHEELHOUSE=1, WHEELHOUSE_PYTHONS=3.10)
	$(PY) -m edge_component.packaging.build $(if $(VERSION),--version $(VERSION)) $(if $(MODEL),--model $(MODEL)) \
	  $(if $(WHEELHOUSE),--wheelhouse $(if $(filter 1,$(WHEELHOUSE)),openvino,$(WHEELHOUSE))) \
	  $(if $(WHEELHOUSE_PYTHONS),--wheelhouse-pythons $(WHEELHOUSE_PYTHONS))

clean: ## remove .state, greengrass-build, caches and test artifacts
	rm -rf greengrass-build $(STATE) .pytest_cache .mypy_cache .ruff_cache test-artifacts .mutation
