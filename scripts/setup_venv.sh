#!/usr/bin/env bash
# Build .venv with a Python >= 3.12 (lerobot 0.6.1 needs it): PATH first, then ~/.pyenv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
[ -f "$STAMP" ] && exit 0

is_py312() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
find_python() {
  for cand in python3.13 python3.12 python3 python; do
    p=$(command -v "$cand" 2>/dev/null) || continue
    is_py312 "$p" && { echo "$p"; return; }
  done
  for p in "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3; do
    [ -x "$p" ] && is_py312 "$p" && { echo "$p"; return; }
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ] || ! is_py312 "$VENV/bin/python"; then
  PY=$(find_python) || { echo "error: no Python >= 3.12 found on PATH or in ~/.pyenv/versions; install one (e.g. pyenv install 3.12) and rerun" >&2; exit 1; }
  echo "setup: creating $VENV with $PY"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[dev,sim,wandb]'
rm -f "$VENV"/.installed-*
touch "$STAMP"
echo "setup: $VENV ready"
