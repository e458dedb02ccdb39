# The two commands of the README, plus the benchmarks. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pip -q, without setuptools' note on every editable install ("Editable installation. Please be
# careful with folders ... with the same name as your package"), which is meant for packagers.
PIP_INSTALL := PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet

.PHONY: run test load bench lint schema

# The first install says what it does in one line; then only what pip -q shows.
$(VENV)/.installed: pyproject.toml
	@echo "installing Conductor-E and its test tools into $(VENV) ..."
	@$(PYTHON) -m venv $(VENV)
	@$(PIP_INSTALL) --upgrade pip
	@$(PIP_INSTALL) -e '.[test]'
	@touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[test,bench]'
	touch $@

## run: install, then run Conductor-E on the embedded PostgreSQL (API on :8080)
run: $(VENV)/.installed
	@$(VENV)/bin/conductor-e run

## test: install what the tests need, then run all of them (what CI runs)
test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m mypy store bot cogs
	$(PY) -m pytest

## load: the sustained load test (50 clients for 60 s against the real API; see README)
load: $(VENV)/.installed
	$(PY) -m pytest -m load -s tests/load

## bench: the benchmarks under bench/ (print figures; not tests)
bench: $(VENV)/.bench-installed
	$(PY) bench/event_store.py

## schema: regenerate store/schema.sql (the current schema in one file) after changing the schema
schema: $(VENV)/.installed
	$(PY) -m store.schema

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
