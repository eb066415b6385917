# esvpn — external VPN forwarder for top-of-rack switches.
# `make test` is the one command CI and newcomers run: it builds the venv,
# installs the Debian peers the tests use, lints, type-checks, tests.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TARGET ?= soft
P4C ?= $(shell command -v p4c-bm2-ss 2>/dev/null || ls /opt/p4/bin/p4c-bm2-ss 2>/dev/null)
BMV2 ?= $(shell command -v simple_switch_grpc 2>/dev/null || ls /opt/p4/bin/simple_switch_grpc 2>/dev/null)
export SIMPLE_SWITCH_GRPC := $(BMV2)
P4SRC := p4src
P4BUILD := $(P4SRC)/build
PYTEST_ARGS ?=

.PHONY: all venv apt-deps lint format typecheck test test-unit test-packet test-system \
        test-chaos demo demo-check demo-stop p4 p4-check bench clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP)

apt-deps:
	bash scripts/apt-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict

# The whole suite; packet tests run on the embedded target, and once more on
# bmv2 (simple_switch_grpc) when it is installed.
test: $(STAMP) apt-deps lint typecheck p4-check
	$(PY) -m pytest tests $(PYTEST_ARGS)
	@if [ -n "$(BMV2)" ]; then \
	  $(PY) -m pytest tests/packet --target=bmv2 $(PYTEST_ARGS); \
	else echo "test: simple_switch_grpc not on this machine; packet suite ran on the embedded target only"; fi
	$(PY) -m lab check

# The chaos suite alone (it is part of `make test` too).
test-chaos: $(STAMP) apt-deps
	$(PY) -m pytest tests/system/test_chaos.py $(PYTEST_ARGS)

# The whole system in network namespaces with live traffic and a live view
# (Ctrl-C tears it down); TARGET=bmv2 runs the switches on simple_switch_grpc.
demo: $(STAMP) apt-deps
	$(PY) -m lab demo --target $(TARGET)

# The same scenario headless: exit 0 when traffic crossed both ways in both
# VPNs, nothing leaked and the state is exact (CI runs it in `make test`).
demo-check: $(STAMP) apt-deps
	$(PY) -m lab check --target $(TARGET)

# Remove a demo left behind (processes, namespaces, links).
demo-stop:
	$(PY) -m lab down

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-packet: $(STAMP)
	$(PY) -m pytest tests/packet --target=$(TARGET) $(PYTEST_ARGS)

test-system: $(STAMP) apt-deps
	$(PY) -m pytest tests/system $(PYTEST_ARGS)

# Compile the data plane with p4c (path from P4C or PATH) into p4src/build/.
p4:
	@test -n "$(P4C)" || { echo "p4c-bm2-ss not found: set P4C=/path/to/p4c-bm2-ss"; exit 1; }
	bash bmv2/p4compile.sh "$(P4C)" $(P4BUILD)

# When p4c is here, the committed artifacts must be what it produces.
p4-check:
	@if [ -n "$(P4C)" ]; then \
	  tmp=$$(mktemp -d) && bash bmv2/p4compile.sh "$(P4C)" $$tmp && \
	  diff -r -q $(P4BUILD) $$tmp && echo "p4-check: committed artifacts match $(P4C)"; \
	else echo "p4-check: p4c-bm2-ss not on this machine; using committed p4src/build/"; fi

bench: $(STAMP)
	bash scripts/apt-deps.sh bench
	$(PY) -m bench --out bench/results

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
