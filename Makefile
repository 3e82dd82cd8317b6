# `make demo` and `make test` set everything up in .venv on a machine with
# Python 3.11, gcc and make, then run the demo or the test suite.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# What .venv holds besides distgrad: its build requirements (pyproject.toml),
# the tests' and the demo's (scikit-learn ships the demo's data set).
# Reinstalled when this file changes.
PACKAGES := torch==2.13.0 setuptools wheel ninja pytest expecttest scikit-learn
REQUIREMENTS := $(VENV)/.requirements-installed
# Rebuilt whenever a source of the extension or the package changes.
SOURCES := setup.py pyproject.toml $(shell find operators python -name '*.cpp' -o -name '*.h' -o -name '*.py' 2>/dev/null)
INSTALLED := $(VENV)/.distgrad-installed
MAX_JOBS ?= 2

.PHONY: demo test test-slow bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(REQUIREMENTS): $(PY) Makefile
	$(PY) -m pip install --quiet $(PACKAGES)
	touch $@

$(INSTALLED): $(REQUIREMENTS) $(SOURCES)
	MAX_JOBS=$(MAX_JOBS) $(PY) -m pip install --quiet --no-build-isolation -e .
	touch $@

# A digit classifier trained by 3 worker processes, with distgrad and then
# with torch.distributed.rpc (python -m distgrad.examples.train --help).
demo: $(INSTALLED)
	$(PY) -m distgrad.examples.train --backend both

# Tests marked slow (building a wheel in a fresh venv, minutes) run with make test-slow.
test: $(INSTALLED)
	$(PY) -m pytest -q -m "not slow" jit_tests tests

test-slow: $(INSTALLED)
	$(PY) -m pytest -q -m slow tests

bench: $(INSTALLED)
	$(PY) tools/bench.py

clean:
	rm -rf build python/distgrad/*.so python/*.egg-info $(VENV)
