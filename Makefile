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

.PHONY: setup system-packages venv test lint typecheck pytest demo bench chaos component audit clean help

help:
	@echo "make demo    - set up and run the whole system locally on bundled sample data"
	@echo "make test    - set up and run ruff, mypy and the test suite"
	@echo "make bench   - benchmarks, printed as tables of ratios"
	@echo "make component - build the Greengrass component under greengrass-build/"

setup: system-packages venv

# apt-get only when something is missing, so a second run is instant and needs no network.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(SETUP_STAMP)

$(SETUP_STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[device,cloud,export,openvino,dev]'
	@rm -f $(VENV)/.setup-*; touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || { echo "run: $(VENV)/bin/ruff format ."; exit 1; }

typecheck: setup
	$(VENV)/bin/mypy model edge_component cloud_lambda simulator bench

pytest: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: setup
	$(PY) -m simulator.demo $(if $(ONCE),--once) $(if $(WEBCAM),--webcam $(WEBCAM))

bench: setup
	$(PY) -m bench $(BENCH_ARGS)

chaos: setup
	$(PY) -m simulator.chaos $(CHAOS_ARGS)

# Known advisories for the exact pins; a report, not a gate (it needs the network to fetch advisories).
audit: setup
	-$(VENV)/bin/pip-audit -r requirements/constraints.txt --no-deps --progress-spinner off

component: setup
	$(PY) -m edge_component.packaging.build $(if $(VERSION),--version $(VERSION)) $(if $(MODEL),--model $(MODEL))

clean:
	rm -rf greengrass-build $(STATE) .pytest_cache .mypy_cache .ruff_cache test-artifacts
