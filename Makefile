# One named command per task. Each target installs what it needs into the
# project's virtual environment (.venv), so it works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup run test lint typecheck bench images functions-zip clean

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## setup: install system packages and the virtual environment
setup: $(STAMP)

## run: render the example animation to spinning.mp4 on the local stack
run: $(STAMP)
	cd examples/spinning && ../../$(BIN)/povstorm render spinning.ini -o ../../spinning.mp4

## test: lint, static checks, unit, integration and end-to-end tests
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

## lint: ruff and mypy
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: farm overhead, orchestration latency, cold start, ledger throughput
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .mypy_cache
