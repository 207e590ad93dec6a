# Two entry points, both self-installing on a fresh machine with Python 3.11+:
#   make run    install, then build `all` on the default config (stub model, offline judge)
#   make test   install (with dev extras), then run the test suite
# torch is installed first and pinned (TORCH=...) so pip takes the local CPU wheel instead of
# downloading a CUDA build; on a GPU node pass e.g. TORCH='torch==2.13.0' from your index.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
CORES ?= 2
BIN := $(VENV)/bin

.PHONY: run test install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/snakemake --cores $(CORES) all

test: install
	$(BIN)/pytest
