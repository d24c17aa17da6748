# crmsync — every target creates .venv and installs from pyproject.toml when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: connectors shipped as separate packages: installed beside crmsync, tested with the kit
PLUGINS := plugins/crmsync-pipedrive

.DEFAULT_GOAL := help
.PHONY: help install test test-slow lint format demo bench bench-big clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(PLUGINS:%=%/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' $(PLUGINS:%=-e './%[test]')
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install crmsync, its dev tools and the plug-in connectors

test: $(STAMP) ## run the test suite (SQLite and PostgreSQL; Redis; the sandbox; the plug-ins' own)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider --durations=15
	@for plugin in $(PLUGINS); do \
		echo "$$plugin: its own tests, with crmsync's contract kit"; \
		(cd $$plugin && $(CURDIR)/$(BIN)/python -m pytest -q -p no:cacheprovider) || exit 1; \
	done

test-slow: $(STAMP) ## the whole suite with the long variants (full-size reliability tests, SQLite engine variants, long hypothesis profiles)
	$(BIN)/lint-imports
	CRMSYNC_HYPOTHESIS_PROFILE=slow $(BIN)/python -m pytest -q -p no:cacheprovider --timeout 3600 --durations=30
	@for plugin in $(PLUGINS); do \
		echo "$$plugin: its own tests, with crmsync's contract kit"; \
		(cd $$plugin && $(CURDIR)/$(BIN)/python -m pytest -q -p no:cacheprovider) || exit 1; \
	done

lint: $(STAMP) ## ruff, mypy and the import layers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --strict plugins/crmsync-pipedrive/crmsync_pipedrive
	$(BIN)/lint-imports

format: $(STAMP) ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP) ## run the main job on the embedded default (SQLite, no Redis) with the sandbox; CONSOLE=1 keeps the console up
	$(BIN)/python -m cli.demo

bench: $(STAMP) ## the benchmark figures, side by side with the open extractors (~30 min)
	$(BIN)/python -m bench.run

bench-big: $(STAMP) ## the backfill at 1,000,000 records: memory flat, time in proportion
	$(BIN)/python -m bench.run --big

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
