# The two commands of the README, plus the benchmarks. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test load bench lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

## run: install, then run Conductor-E on the embedded PostgreSQL (API on :8080)
run: $(VENV)/.installed
	$(VENV)/bin/conductor-e run

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

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
