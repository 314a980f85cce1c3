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

.PHONY: book test lint pytest nbval bench clean

$(STAMP): environment.yml pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed, found " + sys.version'
	sed -n 's/^ *- \([A-Za-z0-9_.-]*==[^ ]*\) *$$/\1/p' environment.yml > $(VENV)/pins.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(VENV)/pins.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

book: $(STAMP)
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going
	@echo "The book: $(CURDIR)/_build/html/index.html"

lint: $(STAMP)
	$(BIN)/ruff check .

pytest: $(STAMP)
	$(BIN)/python -m pytest tests -q

nbval: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--durations=0 -q notebooks

test: lint pytest nbval

# All four speed tables; the bench extra adds PyTorch for the rows that compare with it.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	for b in train hessian ntk sweep; do $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf _build .pytest_cache .ruff_cache
