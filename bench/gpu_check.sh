#!/usr/bin/env bash
# One run on a CUDA machine, at most 8 minutes in all, one markdown report:
#   bash bench/gpu_check.sh [REPORT.md]
# 1. the CUDA tests: the Triton kernel tests on the GPU, opcheck and torch.compile on the real op;
# 2. every workload of the model's baseline table timed with CUDA events, beside the prediction
#    (bench/gpu_model_current.jsonl, made by `python -m bench.gpu_model --json`; GPU_CHECK_MODEL
#    names other records, e.g. bench/gpu_model_baseline.jsonl, the kernels before the redesign);
# 3. fwd+bwd of redge at 4096 x 32768, n = 5 against the authors' eager redge and its
#    torch.compile (targets: >= 10x eager, >= 4x compiled, >= 5x less peak memory);
# 4. fused sample-and-embed against the unfused composition at (R, K, D) = (4096, 131072, 4096)
#    (bench/embed_bench.py --gpu: time and peak memory).
# Each stage has its own time limit; a failing stage is reported and the next one still runs.
#
#   bash bench/gpu_check.sh --dry-run [REPORT.md]
# checks the script without a GPU (a few minutes of CPU): the tests are collected, not run; the
# timing stage runs bench.gpu_check --dry-run (CPU, Triton interpreter, shapes cut to a few rows,
# the first 3 model records); the sample-and-embed stage parses its arguments only.
set -uo pipefail
cd "$(dirname "$0")/.."
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
report=${1:-gpu-check-report.md}
model=${GPU_CHECK_MODEL:-bench/gpu_model_current.jsonl}
status=0
if [ ! -s "$model" ]; then
  echo "model records $model missing or empty (make them: python -m bench.gpu_model --json $model)" >&2
  exit 2
fi
tmp=$(mktemp -d)
if [ $dry -eq 1 ]; then
  tests_mode=(--collect-only); timing_args=(--dry-run --limit 3); embed_args=(--help)
  export GPU_CHECK_DRY_RUN=1 TRITON_INTERPRET=1
else
  tests_mode=(-x); timing_args=(); embed_args=(--gpu --reps 3)
fi

{
  echo "# GPU check ($(date -u '+%Y-%m-%d %H:%M UTC'))$([ $dry -eq 1 ] && echo ' (dry run, no GPU)')"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm,memory.total,driver_version --format=csv 2>&1 | head -5
  python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)"
  echo '```'
} >"$tmp/head.md"

echo "== CUDA tests (limit 180 s)"
timeout 180 python -m pytest -q "${tests_mode[@]}" -p no:cacheprovider tests/test_triton_kernels.py \
  tests/test_triton_opcheck.py tests/test_compile.py >"$tmp/tests.txt" 2>&1
rc=$?; [ $rc -eq 0 ] || status=1
tail -5 "$tmp/tests.txt"

echo "== measured beside the model, and against the authors' redge (limit 240 s)"
timeout 240 python -m bench.gpu_check --model "$model" --report "$tmp/timing.md" --budget-s 180 \
  "${timing_args[@]}"
rc2=$?; [ $rc2 -eq 0 ] || status=1

echo "== sample-and-embed, 4096 x 131072 x 4096 (limit 60 s)"
timeout 60 python bench/embed_bench.py "${embed_args[@]}" >"$tmp/embed.txt" 2>&1
rc3=$?; [ $rc3 -eq 0 ] || status=1
tail -8 "$tmp/embed.txt"
echo "== NCCL: sharded vs unsharded on every visible GPU (limit 120 s)"; timeout 120 python bench/nccl_check.py 2>&1 | tail -12; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1

{
  cat "$tmp/head.md"
  echo
  echo "## CUDA tests (exit $rc)"
  echo
  echo '```'
  tail -15 "$tmp/tests.txt"
  echo '```'
  echo
  if [ -f "$tmp/timing.md" ]; then tail -n +2 "$tmp/timing.md"; else echo "timing stage failed (exit $rc2)"; fi
  echo
  echo "## Sample-and-embed, fused vs unfused (exit $rc3)"
  echo
  echo '```'
  tail -15 "$tmp/embed.txt"
  echo '```'
} >"$report"
echo "report: $report (status $status)"
rm -rf "$tmp"
exit $status
