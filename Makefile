# normbook: two targets do everything.
#   make book   set up .venv and the data, then build the HTML book (every chapter executed in full) into _build/html;
#               executions are cached, so a second build re-executes only the chapters whose code changed
#   make test   the same set-up, then ruff, unit tests, nbval over every chapter (FAST mode, as the Colab edition: myst_nb
#               hidden), a strict FAST book build from nbval's executions, chapter 6's claims and the browser test (axe
#               included) against that build, and the editions test against nbval's executions. Each chapter executes
#               once, under nbval: the book build reads those executions from its cache
#               (`grep -E 'normbook-execution:|Executing notebook' log` counts executions).
#               Then the course kit (student/instructor editions, the autograder on fixture submissions).
#               `make -j3 test` runs independent parts side by side (.ci/run does).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
JB     := $(VENV)/bin/jupyter-book
# Re-install only when what is installed changes: the stamp's name carries a hash of the requirement files.
REQ_HASH := $(shell cat requirements.txt requirements-d2l.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP    := $(VENV)/.installed-$(REQ_HASH)
# TORCH_INDEX_URL: where torch and torchvision come from when set (CI without a GPU uses PyTorch's CPU wheels,
# https://download.pytorch.org/whl/cpu); unset, pip's own configuration decides (a local build stays as it is).
TORCH_INDEX_URL ?=
# axe-core, the accessibility engine the browser test injects into every page (npm, into the git-ignored .node/).
AXE_VERSION := 4.14.1
AXE_STAMP   := .node/.axe-core-$(AXE_VERSION)
# nbval's mode: fast in `make test`, full in `make gpu-check`.
NBVAL_MODE ?= fast
# chapters that nbval executes side by side (make test: 2, see there; a GPU run keeps one at a time)
NBVAL_JOBS ?= 1
JB_BUILD    := $(JB) build . --all -W -n --keep-going
FAST_SITE   := _build/fast/_build/html
SITE_TEST   := $(PY) -m pytest tests/test_site_browser.py -q -p no:cacheprovider

.PHONY: help setup data book book-force book-check test lint unit nbval claims-fast book-fast browser editions axe \
        gpu-check require-cuda colab student pdf lab clean clean-all binder-check

help:
	@echo "make book   build the book (full mode) into _build/html/index.html"
	@echo "make test   unit tests + nbval over every chapter (NORMBOOK_FAST=1) + strict fast book build and its checks"
	@echo "make book-force   re-execute every chapter (drops the execution cache), then build the book"
	@echo "make book-check   the full book, then the browser test (links, stderr blocks, axe, ...) on it"
	@echo "make gpu-check    on a GPU: unit tests (CUDA ones included), nbval in full mode, the full book checked"
	@echo "make colab   the Colab/Jupyter edition (no MyST markup) into _build/colab/chapters/"
	@echo "make student the course edition for students (no solutions, answer cells, a PDF) into _build/student/"
	@echo "make instructor  solutions, rubrics, a guide per chapter and the autograders into _build/instructor/"
	@echo "make grade SUBMISSIONS=dir/  grade submitted student notebooks into _build/grades/grades.csv"
	@echo "make pdf     the whole book as one PDF, _build/pdf/normbook.pdf (needs chromium)"
	@echo "make lab     JupyterLab on chapters/ with the project's kernel"
	@echo "make book-zh the bilingual site (English + 中文) into _build/site/; make i18n-update, po-check, pdf-zh, colab-zh"
	@echo "make data   find or fetch Fashion-MNIST into data/;  make clean   remove build outputs"

# NORMBOOK_NO_SETUP=1 skips the install step (a second checkout that shares another checkout's .venv, with its
# own src/ on PYTHONPATH, must not re-install the shared environment).
ifdef NORMBOOK_NO_SETUP
setup: ;
else
setup: $(STAMP)
endif

# tools/install.py installs with uv where it can (pip's configuration passed on; about 3x faster than pip here),
# else with pip; NORMBOOK_INSTALLER=pip forces pip.
INSTALL := $(PY) tools/install.py
$(STAMP): requirements.txt requirements-d2l.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX_URL),$(INSTALL) torch torchvision --index-url $(TORCH_INDEX_URL))
	$(INSTALL) -r requirements.txt
	@# d2l without its pins (requirements-d2l.txt says why; requirements.txt lists what d2l.torch imports).
	$(INSTALL) --no-deps -r requirements-d2l.txt -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

data: setup
	$(PY) -m normbook.data

# The published book: every chapter executed in full mode; warnings are errors. Executions are cached in
# _build/.jupyter_cache/full-<package hash> (the fast build's in _build/fast/_build/.jupyter_cache/fast-<hash>;
# tools/site_ext.py): a chapter re-executes when its code cells or the normbook package change.
book: data
	env -u NORMBOOK_FAST $(JB_BUILD)
	@echo "Book: $(CURDIR)/_build/html/index.html"

book-force: data
	rm -rf _build/.jupyter_cache/full-*
	$(MAKE) book

# pyflakes + bugbear over the Python sources ([tool.ruff] in pyproject.toml)
lint: setup
	$(VENV)/bin/ruff check src tests benchmarks tools

# The full book as the reader gets it: the browser test (links, no stderr block, console, math, images, phone
# width, dropdowns, axe) on _build/html. The publishing workflows run it before they deploy.
book-check: book axe
	NORMBOOK_SITE=_build/html $(SITE_TEST)

unit: data
	$(PY) -m pytest tests/ -q -p no:cacheprovider \
	  --ignore=tests/test_site_browser.py --ignore=tests/test_editions.py $(UNIT_FLAGS)

# nbval over every chapter's Colab edition (the same code cells) in a kernel without myst_nb, in NBVAL_MODE
# (tools/nbval_run.py); the executed editions are kept in _build/nbval/<mode>/executed/ for the editions test, and
# each chapter that passed goes into the execution cache of that mode's book build, which then executes nothing.
nbval: data
	$(PY) tools/nbval_run.py --mode $(NBVAL_MODE) --jobs $(NBVAL_JOBS)

# The strict FAST book build, from nbval's executions (after nbval, which fills its cache; a chapter nbval did not
# pass through is executed here).
book-fast: data nbval
	NORMBOOK_FAST=1 $(JB_BUILD) --path-output _build/fast

# Chapter 6's fixed sentences against the verdicts of the FAST build's execution (the unit tests check them against
# the committed, full-mode execution): FAST mode may show less than the full run, never the opposite of the prose.
claims-fast: book-fast
	NORMBOOK_CLAIMS_EXECUTED=$$(ls _build/fast/_build/jupyter_execute/chapters/06_*.ipynb) \
	  $(PY) -m pytest tests/test_ch06_claims.py -q -p no:cacheprovider

# The built FAST site in headless Chromium with axe-core (tests/test_site_browser.py; skips locally without
# chromium or axe-core, fails in CI).
browser: book-fast axe
	NORMBOOK_SITE=$(FAST_SITE) $(SITE_TEST)

axe: $(AXE_STAMP)
$(AXE_STAMP):
	@if command -v npm >/dev/null; then \
	  echo "npm install axe-core@$(AXE_VERSION) into .node/"; \
	  npm install --prefix .node --no-save --no-audit --no-fund --loglevel=error axe-core@$(AXE_VERSION) && touch $@; \
	else echo "npm not found: the browser test's axe check skips (in CI it fails)"; fi

# The Colab/Jupyter and student editions: generated from the chapters; the Colab edition's execution is nbval's.
editions: nbval
	$(PY) -m pytest tests/test_editions.py -q -p no:cacheprovider

test: lint nbval book-fast unit claims-fast browser editions
test: coursekit
# `make -j3 test` (.ci/run) runs three parts side by side on two cores: one intra-op thread per process (torch's
# OpenMP pool) keeps them from oversubscribing the cores (warm .ci/run, quiet machine: 552 s with torch's default
# of one thread per core, 490 s with one). Chapters that set their own thread count keep it; TEST_THREADS=0 leaves
# torch's default.
TEST_THREADS ?= 1
ifneq ($(TEST_THREADS),0)
test: export OMP_NUM_THREADS = $(TEST_THREADS)
endif
# nbval is the critical path of `make test` (the book build, the sites and their browser tests wait for it), so it
# executes two chapters at a time, each in its own kernel, the longest first.
test: NBVAL_JOBS = 2

# What a GPU run checks (.github/workflows/gpu-book.yml): every unit test (the CUDA ones run instead of skipping;
# -rs lists what still skipped), nbval over every chapter in full mode, on the GPU, and the full book built from
# those executions (nbval puts them into the build's cache, replacing any CPU execution of the same code), with its
# browser test. `make test` runs the same
# targets in FAST mode on the CPU (unit, nbval, the book build, the browser test), and tests/test_ci.py checks that
# this target still expands to them, so that no part of it rots unseen.
gpu-check: require-cuda
	$(MAKE) unit UNIT_FLAGS=-rs
	$(MAKE) nbval NBVAL_MODE=full
	$(MAKE) book-check

require-cuda: setup
	@$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: make gpu-check runs on a GPU')"
	@$(PY) -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"

# The Chinese edition (tools/i18n.py; one catalog per page in locales/zh_CN/LC_MESSAGES; README: "Translations").
#   i18n-update    extract the English messages (nothing executed) and merge them into the catalogs (msgmerge)
#   i18n-current   fail if i18n-update changes locales/ (the catalogs are current; the lead adds it to `test`)
#   po-check       every translation keeps its message's roles, math and code spans; msgfmt -c; progress per page
#   book-zh        the bilingual site from the executions of `make book`: English with language links at
#                  _build/site/, Chinese at _build/site/zh/, a root page that sends readers to their language
#   book-zh-fast   the same from the executions of `make book-fast`, into _build/fast/site/
#   browser-zh     the browser test on the Chinese fast site, and its language links
#   colab-zh       the Chinese Colab/Jupyter edition into _build/colab/zh/chapters/ (published with the English one
#                  on the Colab branch, where the Chinese pages' Colab button opens it)
#   pdf-zh         the Chinese edition as one PDF, _build/pdf-zh/normbook-zh.pdf (a CJK font: fonts-wqy-microhei)
.PHONY: i18n-update i18n-current po-check book-zh book-zh-fast browser-zh browser-zh-pages browser-zh-links \
        colab-zh pdf-zh
i18n-update: setup
	$(PY) tools/i18n.py update

i18n-current: i18n-update
	@test -z "$$(git status --porcelain -- locales)" || { git status --short -- locales; \
	  echo "locales/ is not current: run make i18n-update and commit the catalogs"; exit 1; }

po-check: setup
	$(PY) tools/po_check.py

# after the English build, whose executions (jupyter-cache) it reads: run beside it (make -j), it would execute
# the chapters that build has not cached yet a second time
book-zh: book
	$(PY) tools/i18n.py site

book-zh-fast: book-fast
	$(PY) tools/i18n.py site --fast

# two processes, two Chromiums: under make -j they run side by side (the zh site is the last thing make test waits for)
browser-zh: browser-zh-pages browser-zh-links
browser-zh-pages: book-zh-fast axe
	NORMBOOK_SITE=_build/fast/site/zh $(SITE_TEST)
browser-zh-links: book-zh-fast
	NORMBOOK_SITE=_build/fast/site/zh $(PY) -m pytest tests/test_site_browser_zh.py -q -p no:cacheprovider

colab-zh: data
	$(PY) tools/colab_edition.py --lang zh_CN --out _build/colab/zh chapters/[0-9][0-9]_*.ipynb

pdf-zh: data
	$(PY) tools/make_pdf.py --lang zh_CN $(PDF_FLAGS)

test: po-check i18n-current browser-zh

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
	rm -rf $(VENV) data .node

# Binder builds from binder/ (the same requirements.txt, then d2l and normbook): install it into a fresh venv.
binder-check:
	bash tools/check_binder.sh
