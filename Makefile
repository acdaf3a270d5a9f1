# Each target sets up .venv first (scripts/setup.sh: idempotent, torch==2.13.0 first).
PY := .venv/bin/python
ARGS ?=

.PHONY: setup sweep test test-slow lint

setup:
	@bash scripts/setup.sh

## Run the default study (LoRA on the embedded MiniLM + VADER tweets); ARGS='...' adds overrides.
sweep: setup
	$(PY) -m harness.sweep +sweep=lora $(ARGS)

## The test suite CI runs (under 10 minutes on 2 CPU cores).
test: setup
	$(PY) -m pytest -m "not slow" $(ARGS)

## Slow tests (a real sweep on the embedded model).
test-slow: setup
	$(PY) -m pytest -m slow $(ARGS)

lint: setup
	$(PY) -m ruff check harness tests
