# Two commands for a fresh machine with Python 3.11: `make book` and `make test`.
# Both create .venv in the repo if missing and install the pins of environment.yml into it.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed

# The venv first on PATH, so Jupyter kernels started by nbval and the book build use it.
export PATH := $(BIN):$(PATH)
# JAX's persistent compilation cache: a second run of the tests or the book skips most XLA
# compilation (it roughly halves notebook time here).
export JAX_COMPILATION_CACHE_DIR := $(CURDIR)/.cache/jax
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS := 0.2
# Generated data (MNIST-1D) are cached next to it.
export UDL_JAX_CACHE := $(CURDIR)/.cache/data

.PHONY: book browser-test test lint pytest nbval test-perturbed robustness test-latest gpu-check bench clean

$(STAMP): environment.yml pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed, found " + sys.version'
	sed -n 's/^ *- \([A-Za-z0-9_.-]*==[^ ]*\) *$$/\1/p' environment.yml > $(VENV)/pins.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(VENV)/pins.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# Warns loudly (before and after the build, which still passes) while _config.yml's repository
# URL is the placeholder: the Colab buttons and install cells need the real one
# (python tools/set_repository.py URL [BRANCH]).
book: $(STAMP)
	@$(BIN)/python tools/set_repository.py --check
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going
	@$(BIN)/python tools/set_repository.py --check
	@echo "The book: $(CURDIR)/_build/html/index.html"

# The built site in headless Chromium (Debian's `chromium`, driven by Playwright), offline: every
# chapter's math typeset by the site's own MathJax, images loaded, no console errors, figures
# within the column at 1280 px, no sideways scrolling at 400 px, search finds chapters.
# Screenshots go to _build/screenshots. Prints "browser test skipped" where chromium is missing.
browser-test: book
	$(BIN)/python tools/browser_check.py

lint: $(STAMP)
	$(BIN)/ruff check .

# Tests and notebooks run on JOBS workers (pytest-xdist; one notebook per worker): XLA compiles
# on one thread, so two workers on two cores cut the suite's time by about a third. JOBS=0 runs
# everything in this process. Per-cell durations printed by nbval are then measured under load.
JOBS ?= 2
XDIST = $(if $(filter 0,$(JOBS)),,-n $(JOBS))
NBVAL = --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg $(XDIST) $(if $(XDIST),--dist loadfile)

pytest: $(STAMP)
	$(BIN)/python -m pytest tests -q $(XDIST)

nbval: $(STAMP)
	$(BIN)/python -m pytest $(NBVAL) --durations=20 -q notebooks

test: lint pytest nbval

# pytest and nbval once more under another XLA CPU code path (AVX instead of AVX-512 here),
# which changes float rounding: a check or a checked output tied to one machine's rounding
# fails here, not in a reader's hands. CI runs it after `make test`.
PERTURBED_XLA_FLAGS := --xla_cpu_max_isa=AVX
test-perturbed: $(STAMP)
	@if [ "$$(uname -m)" != x86_64 ]; then \
		echo "test-perturbed: skipped, --xla_cpu_max_isa=AVX needs an x86-64 CPU"; exit 0; fi; \
	echo "test-perturbed: XLA_FLAGS=$(PERTURBED_XLA_FLAGS)"; \
	XLA_FLAGS=$(PERTURBED_XLA_FLAGS) $(BIN)/python -m pytest tests -q $(XDIST) && \
	XLA_FLAGS=$(PERTURBED_XLA_FLAGS) $(BIN)/python -m pytest $(NBVAL) -q notebooks

# Every chapter under seeds 0, 1000 and 2000 (papermill); prints chapter x check x seed and
# writes the book's page book/robustness.md. About 15 minutes on 2 cores.
robustness: $(STAMP)
	$(BIN)/python tools/robustness.py

# The suite against the newest releases pyproject.toml allows, on Python 3.12 (.venv-latest).
test-latest:
	bash tools/test_latest.sh

# The whole book on a CUDA machine (installs jax[cuda12] into .venv-gpu): per-chapter runtime
# and checks.
gpu-check:
	bash tools/gpu_check.sh

# All four speed tables; the bench extra adds PyTorch for the rows that compare with it.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	for b in train hessian ntk sweep; do $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf _build .pytest_cache .ruff_cache
