#!/usr/bin/env bash
# Set up a fresh machine, then run the main job: a short optimisation with every estimator.
set -euo pipefail
cd "$(dirname "$0")/.."
REDGE_SETUP_APPS=0 bash scripts/setup.sh
python -m redge_kernels.demo "$@"
