# Each target sets up .venv first (scripts/setup.sh: idempotent, torch==2.13.0 first).
PY := .venv/bin/python
ARGS ?=

.PHONY: setup browser sweep test test-fast test-slow lint docs

setup:
	@bash scripts/setup.sh

## Debian's chromium for the browser test (installed with apt-get when missing).
browser:
	@bash scripts/setup_browser.sh

## Run the default study (LoRA on the embedded MiniLM + VADER tweets); ARGS='...' adds overrides.
## Its set-up installs what a sweep needs (the dev tools come with make setup / make test).
sweep:
	@bash scripts/setup.sh run
	$(PY) -m harness.sweep +sweep=lora $(ARGS)

## The test suite CI runs (under 10 minutes on 2 CPU cores): two pytest workers (pytest-xdist),
## each test file on one of them; most of a test's time is single-threaded (start-up, imports).
test: setup browser lint
	$(PY) -m pytest -m "not slow" -n 2 --dist loadfile $(ARGS)

## The fast tier (about 2 minutes): unit tests and the study's logic on the scripted fake
## fine-tune (tests/helpers/fake_finetune.py); no end-to-end sweep, no service (marked integration).
test-fast: setup
	$(PY) -m pytest -m "not slow and not integration" -n 2 --dist loadfile $(ARGS)

## Slow tests (the rest of the family x method grid, more samplers and pruners, a real sweep).
test-slow: setup
	$(PY) -m pytest -m slow -n 2 --dist loadfile $(ARGS)

## The toolchain (also run by `make test` before the tests, and by pre-commit): ruff's linter and
## formatter, mypy (strict, over harness/), yamllint over conf/, the docs site built with --strict.
lint: setup
	$(PY) -m ruff check harness tests scripts benchmarks
	$(PY) -m ruff format --check harness tests scripts benchmarks
	$(PY) -m mypy
	$(PY) -m yamllint --strict conf/
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

## The docs site (mkdocs.yml, pages in docs/), built with --strict into site/ (also run by lint).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site
