# hhperc: two commands on a fresh machine.
#   make reproduce   create .venv, install, regenerate every paper table (default profile)
#   make test        same install, then notebooks<->library sync, notebook tests, pytest
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hhperc-installed
PROFILE ?= default
EXTRAS ?= dev,lab
export PYTHONUNBUFFERED := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install reproduce test sync nbtest browser pytest bench clean-outputs help

help:
	@echo "make reproduce | make test | make bench"

# Idempotent: reuses .venv when the stamp is newer than pyproject.toml.
$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

reproduce: install
	$(BIN)/hhperc reproduce --profile $(PROFILE) --keep-going
	@echo "Report: $(CURDIR)/outputs/$(PROFILE)/report.html"

# Notebooks are the source: exporting must not change the committed library.
sync: install
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	@for f in nbs/paper/*.ipynb; do $(BIN)/nbdev-clean --fname "$$f"; done
	@if [ -n "$$(git status --porcelain -- hhperc nbs)" ]; then \
	  echo "nbdev-export / nbdev-clean changed files: notebooks and library are out of sync (commit the result):"; \
	  git status --porcelain -- hhperc nbs; exit 1; fi

nbtest: install
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2 --timing --skip-folder-re '^(paper|[._])'

pytest: install
	$(BIN)/pytest tests/ -q

# The report's browser test needs Debian's chromium; install it when we can (root + apt-get), else the test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the browser test will be skipped"; }

test: sync nbtest browser pytest

bench: install
	$(BIN)/python bench/run.py $(BENCH)

clean-outputs:
	rm -rf outputs/smoke outputs/default
