# normbook: two targets do everything.
#   make book   set up .venv and the data, then build the HTML book (every chapter executed in full) into _build/html;
#               executions are cached, so a second build re-executes only the chapters whose code changed
#   make test   the same set-up, then ruff (pyflakes + bugbear), unit tests, nbval over every chapter (FAST mode),
#               chapter 6's claims against a fresh FAST execution, a strict fast book build, the browser test of that
#               site, and the Colab/student editions executed in FAST mode
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

.PHONY: help setup data book book-force test lint unit nbval claims-fast book-fast browser editions colab student pdf \
        lab clean clean-all binder-check

help:
	@echo "make book   build the book (full mode) into _build/html/index.html"
	@echo "make test   unit tests + nbval over every chapter (NORMBOOK_FAST=1) + strict fast book build"
	@echo "make book-force   re-execute every chapter (drops the execution cache), then build the book"
	@echo "make colab   the Colab/Jupyter edition (no MyST markup) into _build/colab/chapters/"
	@echo "make student the course edition for students (no solutions, answer cells, a PDF) into _build/student/"
	@echo "make instructor  solutions, rubrics, a guide per chapter and the autograders into _build/instructor/"
	@echo "make grade SUBMISSIONS=dir/  grade submitted student notebooks into _build/grades/grades.csv"
	@echo "make pdf     the whole book as one PDF, _build/pdf/normbook.pdf (needs chromium)"
	@echo "make lab     JupyterLab on chapters/ with the project's kernel"
	@echo "make data   find or fetch Fashion-MNIST into data/;  make clean   remove build outputs"

# NORMBOOK_NO_SETUP=1 skips the install step (a second checkout that shares another checkout's .venv, with its
# own src/ on PYTHONPATH, must not re-install the shared environment).
ifdef NORMBOOK_NO_SETUP
setup: ;
else
setup: $(STAMP)
endif

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

# The published book: every chapter executed in full mode; warnings are errors. Executions are cached in
# _build/.jupyter_cache/full-<package hash> (the fast build's in _build/fast/_build/.jupyter_cache/fast-<hash>;
# tools/site_ext.py): a chapter re-executes when its code cells or the normbook package change.
book: data
	env -u NORMBOOK_FAST $(JB) build . --all -W -n --keep-going
	@echo "Book: $(CURDIR)/_build/html/index.html"

book-force: data
	rm -rf _build/.jupyter_cache/full-*
	$(MAKE) book

# pyflakes + bugbear over the Python sources ([tool.ruff] in pyproject.toml)
lint: setup
	$(VENV)/bin/ruff check src tests benchmarks tools

unit: data
	$(PY) -m pytest tests/ -q -p no:cacheprovider \
	  --ignore=tests/test_site_browser.py --ignore=tests/test_editions.py

nbval: data
	NORMBOOK_FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env chapters/[0-9][0-9]_*.ipynb -q -p no:cacheprovider

# Chapter 6's fixed sentences against the verdicts of a fresh FAST execution (the unit tests check them against the
# committed, full-mode execution): FAST mode may show less than the full run, never the opposite of the prose.
claims-fast: data
	NORMBOOK_CLAIMS_EXECUTE=1 $(PY) -m pytest tests/test_ch06_claims.py -q -p no:cacheprovider

book-fast: data
	NORMBOOK_FAST=1 $(JB) build . --all -W -n --keep-going --path-output _build/fast

# The built FAST site in headless Chromium (tests/test_site_browser.py; skips locally without chromium, fails in CI).
browser: book-fast
	NORMBOOK_SITE=_build/fast/_build/html $(PY) -m pytest tests/test_site_browser.py -q -p no:cacheprovider

# The Colab/Jupyter and student editions, generated from the chapters and executed once each in FAST mode.
editions: data
	$(PY) -m pytest tests/test_editions.py -q -p no:cacheprovider

test: lint unit nbval claims-fast book-fast browser editions
test: coursekit

# The Colab/Jupyter edition: MyST markup rewritten as plain Markdown, glued values filled in from the executed
# chapters (tools/colab_edition.py).
colab: data
	$(PY) tools/colab_edition.py --out _build/colab chapters/[0-9][0-9]_*.ipynb

# The course kit (README.md, "Course kit"). The student edition: the chapters in the Colab edition's form without
# solutions, each exercise followed by its answer cell, and a solution-free PDF (from the stored outputs; skipped
# with a message where chromium or poppler-utils is missing, except in CI).
student: data
	$(PY) tools/student_edition.py --out _build/student chapters/[0-9][0-9]_*.ipynb
	$(PY) tools/make_pdf.py --student --stored --optional --out _build/student/normbook-student.pdf

# The instructor edition: a guide per chapter (assessment, times, common wrong answers, solutions, rubrics), the
# solutions notebooks and the Otter autograders.
instructor: data
	$(PY) tools/instructor_edition.py --out _build/instructor chapters/[0-9][0-9]_*.ipynb

# Grade a folder of submitted student-edition notebooks offline (Otter-Grader, no Docker) into one CSV.
SUBMISSIONS ?=
GRADES ?= _build/grades/grades.csv
grade: data
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=dir/ [GRADES=file.csv]"; exit 2; }
	$(PY) tools/grade.py $(SUBMISSIONS) --out $(GRADES)

# make test: both editions built, the fixture submissions of chapter 4 and the instructor's solutions graded, and
# the artifacts checked (tests/test_coursekit_built.py).
coursekit: student instructor
	rm -rf _build/grades/ch04 && mkdir -p _build/grades && cp -r tests/fixtures/submissions/ch04 _build/grades/ch04
	cp _build/instructor/solutions/04_inference_mode.ipynb _build/grades/ch04/solutions.ipynb
	$(MAKE) grade SUBMISSIONS=_build/grades/ch04 GRADES=_build/grades/ch04.csv
	NORMBOOK_COURSEKIT=_build $(PY) -m pytest tests/test_coursekit_built.py -q -p no:cacheprovider

# One PDF of the whole book: a single-page HTML build printed by the system Chromium after MathJax has typeset.
# It reuses the executions cached by `make book`; PDF_FLAGS=--stored prints the outputs stored in the chapters
# without executing anything, PDF_FLAGS=--fast uses the fast build's executions.
PDF_FLAGS ?=
pdf: data
	$(PY) tools/make_pdf.py $(PDF_FLAGS)

# JupyterLab (with jupyterlab-myst) on the chapters, with this environment registered as the kernel "normbook".
lab: data
	$(PY) -m ipykernel install --sys-prefix --name normbook --display-name "normbook (.venv)"
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) chapters/

.PHONY: instructor grade coursekit

clean:
	rm -rf _build .pytest_cache .hypothesis
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

clean-all: clean
	rm -rf $(VENV) data

# Binder builds from binder/ (the same requirements.txt, then d2l and normbook): install it into a fresh venv.
binder-check:
	bash tools/check_binder.sh
