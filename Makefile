# normbook: two targets do everything.
#   make book   set up .venv and the data, then build the HTML book (every chapter executed in full) into _build/html
#   make test   the same set-up, then unit tests, nbval over every chapter (FAST mode), a strict fast book build
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
JB     := $(VENV)/bin/jupyter-book
# Re-install only when what is installed changes: the stamp's name carries a hash of the requirement files.
REQ_HASH := $(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP    := $(VENV)/.installed-$(REQ_HASH)
D2L      := d2l==1.0.3

.PHONY: help setup data book test unit nbval book-fast clean clean-all binder-check

help:
	@echo "make book   build the book (full mode) into _build/html/index.html"
	@echo "make test   unit tests + nbval over every chapter (NORMBOOK_FAST=1) + strict fast book build"
	@echo "make data   find or fetch Fashion-MNIST into data/;  make clean   remove build outputs"

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -r requirements.txt
	@# d2l 1.0.3 pins numpy==1.23.5, which has no wheel for Python >= 3.12: install it without its pins
	@# (requirements.txt lists what d2l.torch imports).
	$(PY) -m pip install --no-deps $(D2L)
	$(PY) -m pip install --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

data: setup
	$(PY) -m normbook.data

# The published book: every chapter executed in full mode; warnings are errors.
book: data
	env -u NORMBOOK_FAST $(JB) build . --all -W -n --keep-going
	@echo "Book: $(CURDIR)/_build/html/index.html"

unit: data
	$(PY) -m pytest tests/ -q -p no:cacheprovider

nbval: data
	NORMBOOK_FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env chapters/[0-9][0-9]_*.ipynb -q -p no:cacheprovider

book-fast: data
	NORMBOOK_FAST=1 $(JB) build . --all -W -n --keep-going --path-output _build/fast

test: unit nbval book-fast

clean:
	rm -rf _build .pytest_cache .hypothesis
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

clean-all: clean
	rm -rf $(VENV) data

# Binder builds from binder/ (the same requirements.txt, then d2l and normbook): install it into a fresh venv.
binder-check:
	bash tools/check_binder.sh
