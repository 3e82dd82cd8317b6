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
# Rebuilt whenever a source of the extensions changes. The Python package is
# installed in place (editable): a change to a .py file needs no rebuild.
SOURCES := setup.py pyproject.toml $(shell find operators -name '*.cpp' -o -name '*.h' 2>/dev/null)
INSTALLED := $(VENV)/.distgrad-installed
MAX_JOBS ?= 2

.PHONY: demo test test-slow test-unit test-asan bench clean

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

# The C++ units alone, through the test-only module distgrad._unit (seconds).
test-unit: $(INSTALLED)
	$(PY) -m pytest -q tests/unit

# The extensions built with AddressSanitizer and UBSan into $(ASAN_LIB) (the
# normal build is left alone), then the unit tests and ASAN_TESTS run there.
# The sanitizer runtime must be loaded before Python allocates anything, hence
# LD_PRELOAD (libstdc++ too, or ASAN cannot intercept C++ throws); the
# interpreter's own leaks at exit are not ours. See docs/testing.md.
ASAN_BUILD := build/asan
ASAN_LIB := $(ASAN_BUILD)/lib
# About 2.5 minutes on two cores; ASAN_TESTS="tests jit_tests" runs everything.
ASAN_TESTS ?= $(addprefix tests/rpc/test_,$(addsuffix .py,\
	rpc_funcs rpc_tensors rpc_shared_memory rpc_handshake rpc_message_limit rpc_errors \
	rpc_async rpc_nested rpc_sparse rpc_shutdown rpc_timeouts rpc_peer_death rref_remote \
	rpc_results_in_place)) \
	$(addprefix tests/autograd/test_,$(addsuffix .py,\
	autograd_graphs autograd_unused_results autograd_errors autograd_release autograd_context \
	autograd_nested autograd_remote_leaves autograd_retain_graph autograd_hooks \
	autograd_concurrency autograd_faults)) \
	tests/optim_nn/test_optim_native.py
# Reports go to files (pytest's capture would lose those of a process that aborts).
ASAN_REPORTS := $(CURDIR)/$(ASAN_BUILD)/reports
ASAN_ENV := LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" \
	ASAN_OPTIONS=detect_leaks=0:log_path=$(ASAN_REPORTS)/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(ASAN_REPORTS)/ubsan \
	PYTHONPATH=$(ASAN_LIB)

test-asan: $(REQUIREMENTS)
	DISTGRAD_SANITIZE=1 MAX_JOBS=$(MAX_JOBS) $(PY) setup.py -q build --build-base $(ASAN_BUILD) --build-lib $(ASAN_LIB)
	rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	$(ASAN_ENV) $(PY) -m pytest -q tests/unit $(ASAN_TESTS) || { cat $(ASAN_REPORTS)/* 2>/dev/null; exit 1; }
	@if ls $(ASAN_REPORTS)/* >/dev/null 2>&1; then cat $(ASAN_REPORTS)/*; exit 1; fi

bench: $(INSTALLED)
	$(PY) tools/bench.py

clean:
	rm -rf build python/distgrad/*.so python/*.egg-info $(VENV)
