# Sourced by test_latest.sh and gpu_check.sh: sets PY to a working Python 3.12 if there is one
# (on PATH, or installed by pyenv but not selected), else to python3, with a note.
find_python312() {
  local c
  for c in "$(command -v python3.12 || true)" \
           "$(ls -d "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1)"; do
    if [ -n "$c" ] && "$c" --version >/dev/null 2>&1; then PY=$c; return; fi
  done
  PY=$(command -v python3)
  echo "note: no working python3.12 found; using $("$PY" --version)" >&2
}
