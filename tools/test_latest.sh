#!/usr/bin/env bash
# `make test-latest`: the test suite against the newest releases that pyproject.toml's ranges
# allow, on Python 3.12 where available (as in Colab), in a venv of its own (.venv-latest).
# It answers "does the book still work for a reader who installs today?", which the pinned
# .venv cannot. Prints the versions it resolved, then runs pytest and nbval.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/find_python312.sh
source tools/find_python312.sh
if [ -n "${PYTHON_LATEST:-}" ]; then PY=$PYTHON_LATEST; else find_python312; fi
VENV=.venv-latest
rm -rf "$VENV"
"$PY" -m venv "$VENV"
BIN=$PWD/$VENV/bin
"$BIN/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# Every dependency at its newest allowed release (the ranges in pyproject.toml), no pins.
"$BIN/python" -m pip install --quiet --disable-pip-version-check --upgrade \
  -e '.[test,book]'
echo "test-latest: resolved versions"
"$BIN/python" -m pip list --disable-pip-version-check 2>/dev/null \
  | grep -i -E '^(jax|jaxlib|flax|optax|numpy|scipy|matplotlib|scikit-learn|mnist1d|nbval|pytest|papermill|ipykernel) '
"$BIN/python" --version
export PATH=$BIN:$PATH
export JAX_COMPILATION_CACHE_DIR=$PWD/.cache/jax-latest
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.2
export UDL_JAX_CACHE=$PWD/.cache/data
"$BIN/python" -m pytest tests -q -n 2 -p no:cacheprovider
"$BIN/python" -m pytest --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg \
  -n 2 --dist loadfile -q -p no:cacheprovider notebooks
