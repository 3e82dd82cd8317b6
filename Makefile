# `make demo` and `make test` set everything up in .venv on a machine with
# Python 3.11, gcc and make, then run the demo or the whole test suite.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Rebuilt whenever a source of the extension or the package changes.
SOURCES := setup.py $(shell find operators python -name '*.cpp' -o -name '*.h' -o -name '*.py' 2>/dev/null)
INSTALLED := $(VENV)/.distgrad-installed
MAX_JOBS ?= 2

.PHONY: demo test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 pytest expecttest ninja numpy setuptools wheel

$(INSTALLED): $(PY) $(SOURCES)
	MAX_JOBS=$(MAX_JOBS) $(PY) -m pip install --quiet --no-build-isolation -e .
	touch $@

demo: $(INSTALLED)
	$(PY) tools/demo.py

test: $(INSTALLED)
	$(PY) -m pytest -q jit_tests tests

bench: $(INSTALLED)
	$(PY) tools/bench.py

clean:
	rm -rf build python/distgrad/*.so python/*.egg-info $(VENV)
