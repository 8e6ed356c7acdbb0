// Interface between the tensor-level step ops (step_ops_cpu.cpp) and their per-row kernels,
// compiled once per CPU capability (step_kernels_cap_*.cpp) from step_kernels_impl.h. The ops are
// the per-step entry points of the vocabulary-parallel path (redge_kernels/step_ops.py documents
// every argument and output; docs/SPEC.md "Vocabulary-parallel"). Plain data only.
#pragma once

#include <cstdint>

namespace redge_kernels {

/// The step ops, index into StepTable::fn.
enum StepOp : int {
  kStepInit = 0, kStepStats, kStepNext, kStepSample, kStepOutput, kStepDot, kStepGrad, kNumStepOps
};

/// One call of a step op. Every float array is contiguous T (float, or double for fp64):
/// [rows, K] row-major, stats [rows, n_slots, 2], coefs [n, 5], dots [rows, n_dots].
/// Optional inputs (x, g, gphi, gmu, glam, index, kinds, dots) are null where unused.
struct StepArgs {
  int op = kStepInit, method = 0, k = 0;
  bool hard = true;
  double tau = 1.0;
  int64_t rows = 0, K = 0, n_slots = 0, n_dots = 1, n_soft = 1;
  uint32_t key0 = 0, key1 = 0;  // Philox key (seed lo, seed hi)
  int64_t col_start = 0, row_start = 0;
  const void *phi = nullptr, *x = nullptr, *coefs = nullptr, *stats = nullptr;
  const void *g = nullptr, *dots = nullptr, *gphi = nullptr, *gmu = nullptr, *glam = nullptr;
  const int64_t* index = nullptr;  // [rows] global columns
  const bool* kinds = nullptr;     // [rows, 2] (poisoned, empty)
  // Outputs: out[0..3] float arrays (which ones: step_ops.py), out_index / out_kinds of
  // step_sample, out_best its best scores.
  void* out[4] = {nullptr, nullptr, nullptr, nullptr};
  int64_t* out_index = nullptr;
  bool* out_kinds = nullptr;
};

using StepRowsFn = void (*)(const StepArgs& a, int64_t row_begin, int64_t row_end);

/// The row-range kernels of one capability: fn[op][0] float, fn[op][1] double.
struct StepTable {
  StepRowsFn fn[kNumStepOps][2];
  const char* name;
};

const StepTable& step_kernels_default();  // portable (ATen DEFAULT vectors)
const StepTable& step_kernels_avx2();     // x86-64 AVX2 + FMA (the portable ones where not built)

}  // namespace redge_kernels
