#!/usr/bin/env bash
# The GPU check in one command (benchmarks/gpu_check.py says what it runs); < 10 minutes on one H100-class GPU.
#   bash benchmarks/gpu_check.sh [--device cuda] [--out summary.json]   # a CUDA machine, no network needed
#   bash benchmarks/gpu_check.sh --device cpu --tiny                     # the dry mode (CPU, tiny model)
# Python: .venv when it exists (make setup); else python3 with the project's wheels installed from .whl/
# (on a machine without network: bash ../shared/scripts/gpu-wheels.sh .venv, carried there as .whl/).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  py=python3
  if [ -d .whl ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/kuavo_site .whl/*.whl
    export PYTHONPATH="/tmp/kuavo_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec "$py" benchmarks/gpu_check.py "$@"
