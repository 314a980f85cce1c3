#!/usr/bin/env bash
# `make gpu-check`: run the whole book on a CUDA machine and print, per chapter, the runtime
# and the result of every check (seed 0, as committed). It makes a venv of its own
# (.venv-gpu) with the package's ranges and JAX's CUDA 12 wheels, refuses to run if JAX does
# not see a GPU (set REQUIRE_GPU=0 to try the script on a CPU), then executes every chapter
# with papermill through tools/robustness.py, which also prints each run's wall time.
#
#   make gpu-check                           # all chapters
#   NOTEBOOKS="notebooks/08_*.ipynb" make gpu-check
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/find_python312.sh
source tools/find_python312.sh
if [ -n "${PYTHON_GPU:-}" ]; then PY=$PYTHON_GPU; else find_python312; fi
JAX_SPEC=${JAX_SPEC:-jax[cuda12]}
VENV=.venv-gpu
if [ ! -x "$VENV/bin/python" ]; then "$PY" -m venv "$VENV"; fi
BIN=$PWD/$VENV/bin
"$BIN/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$BIN/python" -m pip install --quiet --disable-pip-version-check -e '.[test]' "$JAX_SPEC"
export PATH=$BIN:$PATH
export JAX_COMPILATION_CACHE_DIR=$PWD/.cache/jax-gpu
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.2
export UDL_JAX_CACHE=$PWD/.cache/data
"$BIN/python" - <<'PY'
import os, sys
import jax
print(f"gpu-check: jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
if jax.default_backend() != "gpu" and os.environ.get("REQUIRE_GPU", "1") != "0":
    sys.exit("gpu-check: JAX sees no GPU (is this a CUDA machine with a driver?); "
             "REQUIRE_GPU=0 runs the book on the CPU instead")
PY
# shellcheck disable=SC2086  # NOTEBOOKS is a list of globs
"$BIN/python" tools/robustness.py ${NOTEBOOKS:-} --seeds 0 --jobs 1 --no-page
